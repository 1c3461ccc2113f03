#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the licence tags of the source tree.

Usage: check-spdx.py SOURCE_DIR

1. Every SPDX licence expression anywhere in the tree (kernel patches
   included) names only licences and exceptions shipped in LICENSES/ as
   <identifier>.txt, joined by WITH, AND or OR. As in the kernel, whose
   LICENSES/preferred/GPL-2.0 lists GPL-2.0, GPL-2.0-only, GPL-2.0+ and
   GPL-2.0-or-later as its valid identifiers, the -only and -or-later forms
   (and the older "+") of a licence name the same text (ALIASES), and a
   text's own "Valid-License-Identifier:" lines name it too.
2. Every source file carries one tag in its first 5 lines: C, C++, Python,
   shell, Rust and Go sources and headers, meson files, executable scripts,
   man pages, debian/rules. Data and upstream-format files are not sources
   (see EXEMPT).
Prints each problem and a summary; exit 0 when there is none.
"""
import os
import pathlib
import re
import subprocess
import sys

TAG = "SPDX-" + "License-Identifier:"  # split so this file's own text is not a tag
SOURCE_SUFFIXES = {".c", ".h", ".cpp", ".hpp", ".py", ".sh", ".rs", ".go",
                   ".1", ".2", ".3", ".7", ".8"}
SOURCE_NAMES = {"meson.build", "meson_options.txt", "meson.options", "rules"}
# Not sources: data, upstream formats that have no comment syntax or no tag by
# convention, and licence texts themselves.
EXEMPT = (
    re.compile(r"^LICENSES/"),
    re.compile(r"^COPYING$"),
    re.compile(r"^kernel/patches/.*\.patch$"),      # tags are checked inside, per file
    re.compile(r"^kernel/configs/"),                # Kconfig fragments
    re.compile(r"^kernel/tree/Documentation/ABI/"),  # upstream ABI files carry no tag
    re.compile(r"^tests/fuzz/corpus/"),             # fuzzer inputs
    re.compile(r"^abi/"),                           # abidw output
    re.compile(r"^debian/(changelog|control|copyright|source/|.*\.install$|"
               r".*\.lintian-overrides$|.*\.manpages$|.*\.docs$|watch$|"
               r".*\.symbols$|tests/control$)"),
    re.compile(r"\.(md|txt|json|png|svg)$"),
)
# Identifiers that name a text shipped under another name (the kernel's
# LICENSES/preferred/GPL-2.0: one text for the "only" and "or later" forms).
ALIASES = {
    "GPL-2.0-only": "GPL-2.0",
    "GPL-2.0+": "GPL-2.0",
    "GPL-2.0-or-later": "GPL-2.0",
}


def known_ids(root):
    """The identifiers LICENSES/ provides: its texts' names, their aliases and
    their Valid-License-Identifier lines."""
    known = set()
    for p in (root / "LICENSES").glob("*.txt"):
        known.add(p.stem)
        for line in p.read_text(errors="replace").splitlines()[:20]:
            if line.startswith("Valid-License-Identifier:"):
                known.add(line.split(":", 1)[1].strip())
    known |= {alias for alias, text in ALIASES.items() if text in known}
    return known


def files(root):
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True,
                             capture_output=True).stdout.decode()
        return [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        found = []
        for d, dirs, names in os.walk(root):
            dirs[:] = [x for x in dirs if x != ".git" and not x.startswith("build")]
            found += [os.path.relpath(os.path.join(d, n), root) for n in names]
        return found


def is_source(root, rel):
    if any(p.search(rel) for p in EXEMPT):
        return False
    p = pathlib.Path(rel)
    if p.suffix in SOURCE_SUFFIXES or p.name in SOURCE_NAMES:
        return True
    full = root / rel
    if os.access(full, os.X_OK) and full.is_file():
        with open(full, "rb") as f:
            return f.read(2) == b"#!"
    return False


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    known = known_ids(root)
    expr = re.compile(re.escape(TAG) + r"\s*([A-Za-z0-9.+() -]+?)\s*(\*/|-->|$)")
    problems, tags, sources = [], {}, 0
    for rel in sorted(files(root)):
        full = root / rel
        if not full.is_file():
            continue
        try:
            text = full.read_text(errors="replace")
        except OSError as e:
            problems.append(f"{rel}: unreadable: {e}")
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if TAG not in line:
                continue
            m = expr.search(line)
            if not m:
                problems.append(f"{rel}:{n}: malformed tag: {line.strip()}")
                continue
            ids = [t for t in re.split(r"\s+(?:WITH|AND|OR)\s+|[()]", m.group(1)) if t.strip()]
            for i in ids:
                tags[i.strip()] = tags.get(i.strip(), 0) + 1
                if i.strip() not in known:
                    problems.append(f"{rel}:{n}: {i.strip()} is not in LICENSES/")
        if is_source(root, rel):
            sources += 1
            head = text.splitlines()[:5]
            if not any(TAG in l for l in head):
                problems.append(f"{rel}: source file without an SPDX tag in its first 5 lines")
    for p in problems:
        print("check-spdx:", p)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(tags.items()))
    print(f"check-spdx: {sources} source files, tags: {summary}; "
          f"licences shipped: {', '.join(sorted(known))}; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
