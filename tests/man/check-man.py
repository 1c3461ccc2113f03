#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the manual pages.

Usage: check-man.py SOURCE_DIR BUILD_DIR

1. man/meson.build lists every page in man/ and nothing else; its list of C
   function links is exactly the functions <xmem/xmem.h> declares, and each
   is in xmem_c(3)'s NAME.
2. Every page (man/*, kernel/man/*) renders with groff -t -man -ww without
   a warning.
3. Every public type of include/xmem/*.hpp (namespace xmem, not detail; the
   server's header aside, which another branch rewrites) is named in a page.
4. Every EXAMPLES program (an .EX block whose first line is a comment naming
   a .c or .cpp file) is built against the build tree with the flags of
   pkg-config libxmem (build/meson-uninstalled) and run; its output must be
   the page's "it prints" block. memfd_exclusive(2)'s example, on a kernel
   without the call, must exit 2 saying so.
Exit 0 when all holds.
"""
import os
import pathlib
import re
import subprocess
import sys
import tempfile


def unescape(text):
    return (text.replace("\\-", "-").replace("\\e", "\\").replace("\\(aq", "'")
            .replace("\\(dq", '"').replace("\\&", ""))


def ex_blocks(page):
    """The .EX/.EE blocks of the EXAMPLES section, unescaped."""
    text = page.read_text()
    m = re.search(r"^\.SH EXAMPLES\n(.*?)(?=^\.SH )", text, re.S | re.M)
    if not m:
        return []
    return [unescape(b) for b in re.findall(r"^\.EX\n(.*?)^\.EE$", m.group(1), re.S | re.M)]


def main():
    src, build = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).resolve()
    problems = []
    man = src / "man"
    listed = re.findall(r"'([a-z_-]+\.[1-8])'", (man / "meson.build").read_text())
    present = sorted(p.name for p in man.iterdir() if re.search(r"\.[1-8]$", p.name))
    listed = sorted(set(listed))
    if listed != present:
        problems.append(f"man/meson.build lists {listed}, man/ has {present}")

    header = (src / "include/xmem/xmem.h").read_text()
    declared = sorted(set(re.findall(r"^[a-z].*?\b(xmem_[a-z_]+)\(", header, re.M)))
    links = sorted(re.findall(r"'(xmem_[a-z_]+)'", (man / "meson.build").read_text()))
    links = [l for l in links if l != "xmem_c"]
    if declared != links:
        problems.append(f"C function links {links} differ from xmem.h's functions {declared}")
    c_name = (man / "xmem_c.3").read_text().split(".SH SYNOPSIS")[0]
    for f in declared:
        if not re.search(r"\b" + f + r"\b", c_name):
            problems.append(f"xmem_c(3) NAME lacks {f}")

    pages = sorted(man.glob("*.[1-8]")) + sorted((src / "kernel/man").glob("*.[1-8]"))
    for p in pages:
        r = subprocess.run(["groff", "-t", "-man", "-ww", "-z", str(p)], capture_output=True,
                           text=True)
        if r.returncode != 0 or r.stderr.strip():
            problems.append(f"{p.name}: groff: {r.stderr.strip()}")

    alltext = "\n".join(unescape(p.read_text()) for p in pages)
    types = set()
    for h in sorted((src / "include/xmem").glob("*.hpp")):
        if h.name in ("server.hpp", "xmem.hpp"):
            continue
        body = re.sub(r"namespace detail \{.*?\n\}", "", h.read_text(), flags=re.S)
        types |= set(re.findall(r"^(?:class|struct|enum class) ([a-z_]+)\b(?!;)", body, re.M))
    for t in sorted(types):
        if not re.search(r"\b" + t + r"\b", alltext):
            problems.append(f"public type {t} is in no manual page")

    env = dict(os.environ, PKG_CONFIG_PATH=str(build / "meson-uninstalled"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libxmem"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    has_exclusive = os.path.isdir("/sys/kernel/mm/memfd_exclusive")
    built = 0
    with tempfile.TemporaryDirectory(prefix="xmem-man-") as tmp:
        for p in pages:
            blocks = ex_blocks(p)
            for i, b in enumerate(blocks):
                m = re.match(r"\s*(?://|/\*)\s*([\w-]+\.(c|cpp))\b", b)
                if not m:
                    continue
                name, lang = m.group(1), m.group(2)
                expected = blocks[i + 1] if i + 1 < len(blocks) else None
                source = pathlib.Path(tmp) / name
                source.write_text(b)
                exe = pathlib.Path(tmp) / (name + ".bin")
                cc = (["c++", "-std=c++20"] if lang == "cpp" else ["cc", "-std=c11"])
                cmd = cc + ["-Wall", "-Wextra", "-Werror", str(source), "-o", str(exe)] + flags \
                    + ["-Wl,-rpath," + str(build / "userlib")]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    problems.append(f"{p.name}: {name} does not build: {r.stderr.strip()}")
                    continue
                built += 1
                r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
                out = r.stdout.strip()
                if p.name == "memfd_exclusive.2" and not has_exclusive:
                    if r.returncode != 2 or "not available" not in r.stderr:
                        problems.append(f"{name}: without the call: exit {r.returncode}, "
                                        f"{r.stderr.strip()!r}")
                    print(f"check-man: {name}: {r.stderr.strip()} (exit {r.returncode}): "
                          "this kernel has no memfd_exclusive")
                    continue
                if r.returncode != 0:
                    problems.append(f"{name}: exit {r.returncode}: {r.stderr.strip()}")
                elif expected is not None:
                    want = expected.strip()
                    if p.name == "libxmem.3" and has_exclusive:
                        want = want.replace("memfd_secret", "memfd_exclusive")
                    if out != want:
                        problems.append(f"{name}: printed {out!r}, the page says {want!r}")
                print(f"check-man: {name}: built and ran: {out}")
    if built < 2:
        problems.append(f"only {built} EXAMPLES programs found (want libxmem.3's and "
                        "memfd_exclusive.2's)")
    for pr in problems:
        print("check-man:", pr)
    print(f"check-man: {len(pages)} pages, {len(types)} public types, {len(declared)} C "
          f"functions, {built} example programs; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
