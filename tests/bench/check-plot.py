#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the benchmark plots the README shows, and the tables beside them.

Usage: check-plot.py SOURCE_DIR

- Finds a python3 with matplotlib (scripts/install-deps installs
  python3-matplotlib for /usr/bin/python3), as scripts/bench does; none is a
  failure, since the set-up should have installed it.
- Runs scripts/lib/bench-report.py on the stored run docs/bench/directmap.json
  into a scratch directory: it must write a PNG.
- The README shows docs/bench/directmap.png (which exists), and its direct-map
  table has the stored run's numbers: DirectMap4k growth, flush_tlb_kernel_range
  per GiB and fault MiB/s of each backend.
- The same for the guest-memory benchmark (scripts/bench --gmem): the stored run
  docs/bench/gmem.json, drawn by scripts/lib/gmem-report.py, shown as
  docs/bench/gmem.png, its table's DirectMap4k growth, flush_tlb_kernel_range
  per GiB and populate seconds of each mode and population method.
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
    readme = (src / "README.md").read_text()

    def draw(report, run, png_name):
        with tempfile.TemporaryDirectory(prefix="xmem-plot-") as tmp:
            r = subprocess.run([py, str(src / "scripts/lib" / report), str(run), tmp],
                               capture_output=True, text=True)
            png = pathlib.Path(tmp) / png_name
            if r.returncode != 0 or not png.exists() or \
                    png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                problems.append(f"{report} drew no PNG (exit {r.returncode}): {r.stderr.strip()}")
            else:
                print(f"check-plot: {py} drew {png.stat().st_size} bytes of {png_name}")
        if f"(docs/bench/{png_name})" not in readme:
            problems.append(f"the README does not show docs/bench/{png_name}")
        if not (src / "docs/bench" / png_name).exists():
            problems.append(f"docs/bench/{png_name} is missing")

    def check_row(label, want, more=False):
        """The README's row for @label (followed by more words when @more) starts its
        cells with @want's strings (None: not checked)."""
        rest = r"\b[^|]*\|" if more else r" \|"
        row = re.search(r"^\| " + re.escape(label) + rest + r"(.*)$", readme, re.M)
        if not row:
            problems.append(f"no README table row for {label}")
            return
        cells = [c.strip() for c in row.group(1).split("|")]
        for i, w in enumerate(want):
            if w is not None and not cells[i].startswith(w):
                problems.append(f"README {label} column {i + 1}: {cells[i]!r}, the run: {w}")

    run = src / "docs/bench/directmap.json"
    draw("bench-report.py", run, "directmap.png")
    data = json.loads(run.read_text())
    gib = data["size_mib"] / 1024
    for b in data["backends"]:
        growth = b["directmap_faulted"]["4k_kB"] - b["directmap_before"]["4k_kB"]
        flushes = b["flush_tlb_kernel_range"] / gib
        check_row(b["name"], [str(growth), None, f"{flushes:.0f}", f"{b['fault_mib_s']}"],
                  more=True)
    checked = len(data["backends"])

    run = src / "docs/bench/gmem.json"
    draw("gmem-report.py", run, "gmem.png")
    data = json.loads(run.read_text())
    gib = data["size_mib"] / 1024
    labels = {"pool": "guest_memfd, NO_DIRECT_MAP, unmapped pool",
              "per_folio": "guest_memfd, NO_DIRECT_MAP, per-folio unmapping",
              "plain": "plain guest_memfd"}
    for m in data["modes"]:
        growth = m["directmap_populated"]["4k_kB"] - m["directmap_before"]["4k_kB"]
        check_row(f"{labels[m['name']]}, {m['method']}",
                  [str(growth), None, None, f"{m['flush_tlb_kernel_range'] / gib:.0f}", None,
                   None, None, f"{m['populate_seconds']:.2f}"])
    checked += len(data["modes"])

    for p in problems:
        print("check-plot:", p)
    print(f"check-plot: {checked} rows of the stored runs checked against the README; "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
