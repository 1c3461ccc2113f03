#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs the README's "build a program against libxmem" line from the build tree.

Usage: build-with-pkgconfig.py README.md BUILD_DIR OWNER

Takes the first g++ line of the README's sh block (the build tree one), with
$XMEM/build replaced by BUILD_DIR and app.cpp by examples/readme/receiver.cpp,
runs it through sh with PKG_CONFIG_PATH as the README exports it, then runs
the program it built against OWNER (run-readme.py, 3 rounds). Exit 0 when
the compiler and the three rounds succeeded.
"""
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile


def main():
    readme, build, owner = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    src = readme.parent
    text = readme.read_text()
    start = text.find("Building a program against libxmem")
    block = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M).search(text, start).group(1)
    exports = [l for l in block.splitlines() if l.startswith("export PKG_CONFIG_PATH=")]
    line = next(l for l in block.splitlines() if l.startswith("g++ "))
    line = line.split("#")[0].strip()
    if len(exports) != 1 or "$XMEM/build" not in exports[0] or "$XMEM/build" not in line:
        print("build-with-pkgconfig: the README block no longer builds from $XMEM/build:", line)
        return 1
    with tempfile.TemporaryDirectory(prefix="xmem-readme-build-") as tmp:
        exe = pathlib.Path(tmp) / "receiver"
        cmd = (line.replace("$XMEM/build", shlex.quote(str(build.resolve())))
               .replace("app.cpp", shlex.quote(str(src / "examples/readme/receiver.cpp")))
               + " -o " + shlex.quote(str(exe)))
        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = exports[0].split("=", 1)[1].split("#")[0].strip() \
            .replace("$XMEM/build", str(build.resolve()))
        print("+", cmd)
        r = subprocess.run(["sh", "-c", cmd], env=env)
        if r.returncode != 0:
            print(f"build-with-pkgconfig: the README's g++ line failed (exit {r.returncode})")
            return 1
        return subprocess.run([sys.executable, str(src / "tests/readme/run-readme.py"),
                               owner, str(exe), "3"]).returncode


if __name__ == "__main__":
    sys.exit(main())
