#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turn build/bench/gmem.json (tests/bench/gmem_populate.c) into a markdown table
(gmem.md, printed too) and a plot (gmem.png, with matplotlib).

Usage: gmem-report.py GMEM_JSON OUTDIR
Targets (issue 14, item 5): per GiB populated, the pool's kernel TLB flushes at most
1/256 of per-folio unmapping's, and 0 kB DirectMap4k growth; population time as a
ratio (emulated under QEMU TCG)."""
import json
import sys
from pathlib import Path

from benchplot import bar_charts, ratio


def growth(m, key, at="directmap_populated"):
    return m[at][key] - m["directmap_before"][key]




def main():
    src, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(src.read_text())
    gib = data["size_mib"] / 1024
    by = {m["name"]: m for m in data["modes"]}
    pool, folio, plain = by["pool"], by["per_folio"], by["plain"]
    bad = [m["name"] + ": " + m.get("error", "?") for m in data["modes"] if not m["ok"]]
    if bad:
        print("gmem-report: modes that failed their checks: " + "; ".join(bad), file=sys.stderr)
        return 1

    def flushes(m):
        return m["flush_tlb_kernel_range"] / gib

    labels = {
        "pool": "guest_memfd, NO_DIRECT_MAP, unmapped pool",
        "per_folio": "guest_memfd, NO_DIRECT_MAP, per-folio unmapping",
        "plain": "plain guest_memfd",
    }
    rows = []
    for m in (pool, folio, plain):
        rows.append((
            labels[m["name"]],
            growth(m, "4k_kB"),
            growth(m, "2M_kB"),
            growth(m, "1G_kB"),
            f"{flushes(m):.0f}",
            m["flush_tlb_all"],
            m["release_flush_tlb_kernel_range"],
            growth(m, "4k_kB", "directmap_released"),
            f"{m['populate_seconds']:.2f}",
        ))
    pf, ff = flushes(pool), flushes(folio)
    p4 = growth(pool, "4k_kB")
    lines = [
        f"Populating {data['size_mib']} MiB of private guest memory (fallocate(2) on a "
        "guest_memfd of a KVM_X86_SW_PROTECTED_VM), one boot of the KVM kernel under QEMU "
        "TCG (scripts/bench --gmem). Counts are the kernel's; seconds are emulated time.",
        "",
        "| mode | DirectMap4k growth (kB) | DirectMap2M growth (kB) | DirectMap1G growth (kB) "
        "| flush_tlb_kernel_range per GiB | flush_tlb_all | flush_tlb_kernel_range at release "
        "| DirectMap4k after release vs. before (kB) | populate seconds, emulated (TCG) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    lines += [
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| pool's kernel TLB flushes <= 1/256 of per-folio's, per GiB | {pf:.0f} vs {ff:.0f} "
        f"({ratio(ff, pf)}x fewer) | {'yes' if ff > 0 and 256 * pf <= ff else 'no'} |",
        f"| pool's DirectMap4k growth 0 kB | {p4} kB | {'yes' if p4 == 0 else 'no'} |",
        f"| population time, pool vs per-folio (emulated, TCG) | {pool['populate_seconds']:.3f} s "
        f"vs {folio['populate_seconds']:.3f} s: per-folio takes "
        f"{ratio(folio['populate_seconds'], pool['populate_seconds'])}x the pool's | (ratio) |",
        f"| population time, pool vs plain guest_memfd (emulated, TCG) | "
        f"{pool['populate_seconds']:.3f} s vs {plain['populate_seconds']:.3f} s: the pool takes "
        f"{ratio(pool['populate_seconds'], plain['populate_seconds'])}x plain's | (ratio) |",
        "",
        f"Pool during its run: {pool['pool_block_allocs']} pageblocks allocated, "
        f"{pool['pool_tlb_flushes']} pool TLB flushes, {pool['pool_pages_grown']} pages in use; "
        f"per-folio and plain took 0 pages from the pool (checked). MemFree fell by "
        f"{pool['memfree_drop_kB']}, {folio['memfree_drop_kB']} and {plain['memfree_drop_kB']} kB.",
        "",
        "Both NO_DIRECT_MAP modes hand out zeroed pages at allocation; a plain guest_memfd's "
        "fallocate() does not clear its pages (kvm_gmem_prepare_folio() clears each at the "
        "guest's first use), so the plain row's seconds lack the clearing of the memory.",
    ]
    md = "\n".join(lines) + "\n"
    (outdir / "gmem.md").write_text(md)
    print(md)

    modes = (pool, folio, plain)
    panels = [
        ("DirectMap4k growth (kB)", [growth(m, "4k_kB") for m in modes], True, "{:.0f}"),
        ("kernel TLB flushes per GiB\n(flush_tlb_kernel_range)", [flushes(m) for m in modes],
         True, "{:.0f}"),
        ("populate seconds\nemulated (TCG)", [m["populate_seconds"] for m in modes], False,
         "{:.2f}"),
    ]
    bar_charts(outdir / "gmem.png", f"{data['size_mib']} MiB of private guest memory populated "
               "(guest_memfd, QEMU TCG guest)", ["pool", "per-folio", "plain"], panels,
               "gmem-report")
    return 0

if __name__ == "__main__":
    sys.exit(main())
