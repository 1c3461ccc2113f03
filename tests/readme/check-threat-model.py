#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the README's threat model and the attack table beside it.

Usage: check-threat-model.py README.md ATTACK_SUITE

- "## Threat model" has a "What is protected" and a "What is not protected"
  part, and the second names the known gaps: pidfd_getfd, seals (none on
  memfd_secret), root, the key file on disk and in the page cache.
- The table of "## Attack suite" names every attack that ATTACK_SUITE --list
  prints (as `name`), no attack it does not know, and has the three backend
  columns on every row.
Exit 0 when all holds; 1 listing what is missing.
"""
import re
import subprocess
import sys


def section(text, heading):
    start = text.find("\n" + heading + "\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start:end if end > 0 else len(text)]


def main():
    text = open(sys.argv[1]).read()
    suite = subprocess.run([sys.argv[2], "--list"], check=True, capture_output=True,
                           text=True).stdout.split()
    problems = []
    model = section(text, "## Threat model")
    if model is None:
        problems.append("no '## Threat model' section")
        model = ""
    if "What is protected" not in model or "What is not protected" not in model:
        problems.append("the threat model lacks 'What is protected' / 'What is not protected'")
    gaps = model.split("What is not protected", 1)[-1]
    for need in ("pidfd_getfd", "no seals", "Root", "page cache", "on disk", "memfd_exclusive",
                 "memfd_secret"):
        if need not in gaps and need not in model:
            problems.append(f"the threat model does not mention {need!r}")
    table = section(text, "## Attack suite") or ""
    rows = [l for l in table.splitlines() if l.startswith("| ") and not l.startswith("|---")]
    if len(rows) < 2:
        problems.append("no attack table in '## Attack suite'")
    named = set()
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 4 or not all(cells):
            problems.append(f"row without its three backend cells: {row}")
        named |= set(re.findall(r"`([a-z0-9_]+)`", cells[0]))
    for name in suite:
        if name not in named:
            problems.append(f"attack {name} of the suite is not in the README's table")
    for name in sorted(named - set(suite)):
        problems.append(f"the README's table names {name}, which the suite does not have")
    for p in problems:
        print("check-threat-model:", p)
    print(f"check-threat-model: {len(suite)} attacks in the suite, {len(named & set(suite))} "
          f"in the README's table ({len(rows) - 1} rows); {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
