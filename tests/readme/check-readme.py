#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks that the README's code blocks are the programs the tests run.

Usage: check-readme.py README.md

- The C++ block of "## The API in short" must equal the lines between the
  "// README begin" and "// README end" markers of examples/readme/owner.cpp
  followed by those of examples/readme/receiver.cpp (each region with its
  common indentation removed).
- The sh block that builds a program against libxmem must name app.cpp in
  g++ command lines that tests/readme/build-with-pkgconfig.sh runs (it reads
  the same block).
Exit 0 when they match; 1 with a unified diff otherwise.
"""
import difflib
import pathlib
import re
import sys


def regions(path):
    out, inside, block = [], False, []
    for line in path.read_text().splitlines():
        marker = line.strip()
        if marker == "// README begin":
            if inside:
                sys.exit(f"{path}: README begin inside a region")
            inside, block = True, []
        elif marker == "// README end":
            if not inside:
                sys.exit(f"{path}: README end outside a region")
            inside = False
            indents = [len(l) - len(l.lstrip("\t")) for l in block if l.strip()]
            cut = min(indents, default=0)
            out.extend(l[cut:] if l.strip() else "" for l in block)
        elif inside:
            block.append(line)
    if inside:
        sys.exit(f"{path}: region not closed")
    if not out:
        sys.exit(f"{path}: no README region")
    return out


def block_after(text, heading, lang):
    start = text.find(heading)
    if start < 0:
        sys.exit(f"README: no heading {heading!r}")
    m = re.compile(r"^```" + lang + r"\n(.*?)^```$", re.S | re.M).search(text, start)
    if not m:
        sys.exit(f"README: no ```{lang} block after {heading!r}")
    return m.group(1).splitlines()


def main():
    readme = pathlib.Path(sys.argv[1])
    examples = readme.parent / "examples" / "readme"
    text = readme.read_text()
    want = regions(examples / "owner.cpp") + regions(examples / "receiver.cpp")
    got = block_after(text, "## The API in short", "cpp")
    if got != want:
        sys.stdout.writelines(difflib.unified_diff(
            [l + "\n" for l in got], [l + "\n" for l in want],
            "README.md (The API in short)", "examples/readme/{owner,receiver}.cpp"))
        print("check-readme: the README's API block differs from examples/readme")
        return 1
    build = block_after(text, "Building a program against libxmem", "sh")
    gxx = [l for l in build if l.startswith("g++ ")]
    if len(gxx) != 2 or not all(" app.cpp " in l for l in gxx):
        print("check-readme: the build block should have two g++ lines on app.cpp:", gxx)
        return 1
    print(f"check-readme: the API block is examples/readme ({len(want)} lines), "
          f"{len(gxx)} build lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
