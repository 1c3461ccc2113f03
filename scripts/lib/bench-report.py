#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turn build/bench/directmap.json (tests/bench/directmap.c) into a markdown table
(directmap.md, printed too) and a plot (directmap.png, with matplotlib)."""
import json
import sys
from pathlib import Path

from benchplot import bar_charts, ratio


def growth(b, key):
    return b["directmap_faulted"][key] - b["directmap_before"][key]


def main():
    src, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(src.read_text())
    gib = data["size_mib"] / 1024
    by = {b["name"]: b for b in data["backends"]}
    x, s, c = by["memfd_exclusive"], by["memfd_secret"], by["memfd_create"]

    def flushes(b):
        return b["flush_tlb_kernel_range"] / gib


    rows = []
    for b in (x, s, c):
        rows.append((
            b["name"],
            growth(b, "4k_kB"),
            growth(b, "2M_kB"),
            growth(b, "1G_kB"),
            b["directmap_released"]["4k_kB"] - b["directmap_before"]["4k_kB"],
            f"{flushes(b):.0f}",
            b["flush_tlb_all"],
            f"{b['fault_mib_s']:.1f}",
        ))
    x4, s4 = growth(x, "4k_kB"), growth(s, "4k_kB")
    xf, sf = flushes(x), flushes(s)
    pool = x.get("pool", {})
    lines = [
        f"Direct-map cost of {data['size_mib']} MiB faulted then released, one boot "
        "of the test kernel under QEMU TCG (scripts/bench).",
        "",
        "| backend | DirectMap4k growth (kB) | DirectMap2M growth (kB) | DirectMap1G growth (kB) "
        "| DirectMap4k after release vs. before (kB) | flush_tlb_kernel_range per GiB "
        "| flush_tlb_all | fault throughput, MiB/s, emulated (TCG) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    lines += [
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| DirectMap4k growth <= 1% of memfd_secret's | {x4} kB vs {s4} kB "
        f"({ratio(100 * x4, s4)}%) | {'yes' if s4 > 0 and x4 <= s4 / 100 else 'no'} |",
        f"| >= 256x fewer kernel TLB flushes per GiB than memfd_secret | {xf:.0f} vs {sf:.0f} "
        f"({ratio(sf, xf)}x fewer) | {'yes' if sf >= 256 * xf else 'no'} |",
        f"| fault throughput >= memfd_secret's (emulated, TCG) | {x['fault_mib_s']:.1f} vs "
        f"{s['fault_mib_s']:.1f} MiB/s | {'yes' if x['fault_mib_s'] >= s['fault_mib_s'] else 'no'} |",
        f"| direct map whole again after release (DirectMap4k back to baseline) | "
        f"exclusive {x['directmap_released']['4k_kB'] - x['directmap_before']['4k_kB']} kB, "
        f"secret {s['directmap_released']['4k_kB'] - s['directmap_before']['4k_kB']} kB | "
        f"{'yes' if x['directmap_released']['4k_kB'] == x['directmap_before']['4k_kB'] else 'no'} |",
    ]
    if pool:
        hw = pool["high_water_kb"]
        lines.append(
            f"| idle pool <= high-water mark ({hw} kB) | {pool['free_kb_idle']} kB free in "
            f"{pool['blocks_idle']} blocks | {'yes' if pool['free_kb_idle'] <= hw else 'no'} |")
        lines.append(
            f"| pool returned under pressure (drop_caches=2 runs the shrinker) | "
            f"{pool['blocks_after_pressure']} blocks left | "
            f"{'yes' if pool['blocks_after_pressure'] == 0 else 'no'} |")
        lines += [
            "",
            f"Pool during the memfd_exclusive run: {pool['block_allocs']} pageblocks allocated, "
            f"{pool['tlb_flushes']} pool TLB flushes, "
            f"{pool['blocks_faulted']} pageblocks held with all pages faulted; after release the "
            f"pool trimmed itself in {pool.get('settle_seconds', -1)} s (emulated time).",
        ]
    md = "\n".join(lines) + "\n"
    (outdir / "directmap.md").write_text(md)
    print(md)

    names = [r[0] for r in rows]
    panels = [
        ("DirectMap4k growth (kB)", [growth(b, "4k_kB") for b in (x, s, c)], True, "{:.0f}"),
        ("kernel TLB flushes per GiB\n(flush_tlb_kernel_range)", [flushes(b) for b in (x, s, c)],
         True, "{:.0f}"),
        ("fault throughput (MiB/s)\nemulated (TCG)", [b["fault_mib_s"] for b in (x, s, c)], False,
         "{:.0f}"),
    ]
    bar_charts(outdir / "directmap.png",
               f"{data['size_mib']} MiB faulted then released (QEMU TCG guest)", names, panels,
               "bench-report")

if __name__ == "__main__":
    main()
