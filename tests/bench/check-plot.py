#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the benchmark plot the README shows, and the table beside it.

Usage: check-plot.py SOURCE_DIR

- Finds a python3 with matplotlib (scripts/install-deps installs
  python3-matplotlib for /usr/bin/python3), as scripts/bench does; none is a
  failure, since the set-up should have installed it.
- Runs scripts/lib/bench-report.py on the stored run docs/bench/directmap.json
  into a scratch directory: it must write a PNG.
- The README shows docs/bench/directmap.png (which exists), and its direct-map
  table has the stored run's numbers: DirectMap4k growth, flush_tlb_kernel_range
  per GiB and fault MiB/s of each backend.
Exit 0 when all holds.
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile


def python_with_matplotlib():
    for cand in ("python3", "/usr/bin/python3"):
        exe = shutil.which(cand)
        if exe and subprocess.run([exe, "-c", "import matplotlib"],
                                  capture_output=True).returncode == 0:
            return exe
    return None


def main():
    src = pathlib.Path(sys.argv[1])
    problems = []
    py = python_with_matplotlib()
    if not py:
        print("check-plot: no python3 with matplotlib (scripts/install-deps user)")
        return 1
    run = src / "docs/bench/directmap.json"
    with tempfile.TemporaryDirectory(prefix="xmem-plot-") as tmp:
        r = subprocess.run([py, str(src / "scripts/lib/bench-report.py"), str(run), tmp],
                           capture_output=True, text=True)
        png = pathlib.Path(tmp) / "directmap.png"
        if r.returncode != 0 or not png.exists() or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            problems.append(f"bench-report.py drew no PNG (exit {r.returncode}): {r.stderr.strip()}")
        else:
            print(f"check-plot: {py} drew {png.stat().st_size} bytes of PNG")

    readme = (src / "README.md").read_text()
    if "(docs/bench/directmap.png)" not in readme:
        problems.append("the README does not show docs/bench/directmap.png")
    if not (src / "docs/bench/directmap.png").exists():
        problems.append("docs/bench/directmap.png is missing")

    data = json.loads(run.read_text())
    gib = data["size_mib"] / 1024
    for b in data["backends"]:
        row = re.search(r"^\| " + re.escape(b["name"]) + r"\b[^|]*\|(.*)$", readme, re.M)
        if not row:
            problems.append(f"no README table row for {b['name']}")
            continue
        cells = [c.strip() for c in row.group(1).split("|")]
        growth = b["directmap_faulted"]["4k_kB"] - b["directmap_before"]["4k_kB"]
        flushes = b["flush_tlb_kernel_range"] / gib
        want = [str(growth), None, f"{flushes:.0f}", f"{b['fault_mib_s']}"]
        for i, w in enumerate(want):
            if w is not None and not cells[i].startswith(w):
                problems.append(f"README {b['name']} column {i + 1}: {cells[i]!r}, the run: {w}")
    for p in problems:
        print("check-plot:", p)
    print(f"check-plot: {len(data['backends'])} backends of the stored run checked against the "
          f"README; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
