#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turn build/bench/gmem.json (tests/bench/gmem_populate.c) into markdown tables
(gmem.md, printed too) and a plot (gmem.png, with matplotlib).

Usage: gmem-report.py GMEM_JSON OUTDIR
Targets (issue 14, item 5), judged on the population by the guest's own faults: per GiB,
the pool's kernel TLB flushes at most 1/256 of per-folio unmapping's, and 0 kB DirectMap4k
growth; population time as a ratio (emulated under QEMU TCG). The fallocate(2) runs get a
table of their own. Exit 1 when a run failed its checks."""
import json
import sys
from pathlib import Path

from benchplot import bar_charts, ratio

LABELS = {
    "pool": "guest_memfd, NO_DIRECT_MAP, unmapped pool",
    "per_folio": "guest_memfd, NO_DIRECT_MAP, per-folio unmapping",
    "plain": "plain guest_memfd",
}
METHODS = {
    "guest": "populated by the guest's own writes, one per page (nested page faults)",
    "fallocate": "populated by fallocate(2), as a VMM preallocates",
}


def growth(m, key, at="directmap_populated"):
    return m[at][key] - m["directmap_before"][key]


def label(m):
    """The row label of run @m in the README's tables (check-plot.py finds rows by it)."""
    return f"{LABELS[m['name']]}, {m['method']}"


def main():
    src, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(src.read_text())
    gib = data["size_mib"] / 1024
    bad = [label(m) + ": " + m.get("error", "?") for m in data["modes"] if not m["ok"]]
    if bad:
        print("gmem-report: runs that failed their checks: " + "; ".join(bad), file=sys.stderr)
        return 1
    run = {(m["name"], m["method"]): m for m in data["modes"]}

    def flushes(m):
        return m["flush_tlb_kernel_range"] / gib

    lines = [
        f"Populating {data['size_mib']} MiB of a KVM_X86_SW_PROTECTED_VM's private memory "
        "(guest_memfd), one boot of the KVM kernel under QEMU TCG (scripts/bench --gmem), in "
        "this order; per-folio last, since the direct-map splits it leaves are permanent. Counts "
        "are the kernel's; seconds are emulated time.",
    ]
    for method in ("guest", "fallocate"):
        lines += [
            "",
            f"{METHODS[method]}:",
            "",
            "| mode | DirectMap4k growth (kB) | DirectMap2M growth (kB) | DirectMap1G growth (kB) "
            "| flush_tlb_kernel_range per GiB | flush_tlb_all | flush_tlb_kernel_range at release "
            "| DirectMap4k after release vs. before (kB) | populate seconds, emulated (TCG) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ("pool", "per_folio", "plain"):
            m = run[(name, method)]
            lines.append("| " + " | ".join(str(v) for v in (
                label(m),
                growth(m, "4k_kB"),
                growth(m, "2M_kB"),
                growth(m, "1G_kB"),
                f"{flushes(m):.0f}",
                m["flush_tlb_all"],
                m["release_flush_tlb_kernel_range"],
                growth(m, "4k_kB", "directmap_released"),
                f"{m['populate_seconds']:.2f}",
            )) + " |")

    pool, folio, plain = (run[(n, "guest")] for n in ("pool", "per_folio", "plain"))
    pf, ff = flushes(pool), flushes(folio)
    p4 = growth(pool, "4k_kB")
    secs = {n: run[(n, "guest")]["populate_seconds"] for n in ("pool", "per_folio", "plain")}
    lines += [
        "",
        "| target (the guest's population) | measured | met |",
        "|---|---|---|",
        f"| pool's kernel TLB flushes <= 1/256 of per-folio's, per GiB | {pf:.0f} vs {ff:.0f} "
        f"({ratio(ff, pf)}x fewer) | {'yes' if ff > 0 and 256 * pf <= ff else 'no'} |",
        f"| pool's DirectMap4k growth 0 kB | {p4} kB | {'yes' if p4 == 0 else 'no'} |",
        f"| population time, per-folio against the pool (emulated, TCG) | {secs['per_folio']:.2f} s "
        f"vs {secs['pool']:.2f} s: {ratio(secs['per_folio'], secs['pool'])}x | (ratio) |",
        f"| population time, the pool against plain guest_memfd (emulated, TCG) | "
        f"{secs['pool']:.2f} s vs {secs['plain']:.2f} s: {ratio(secs['pool'], secs['plain'])}x "
        "| (ratio) |",
        "",
        f"The pool during the guest's run: {pool['pool_block_allocs']} pageblocks allocated, "
        f"{pool['pool_tlb_flushes']} pool TLB flushes, {pool['pool_pages_grown']} pages in use; "
        "per-folio and plain took 0 pages from the pool (checked, as was the memory's return). "
        "A plain guest_memfd's fallocate() does not clear its pages (kvm_gmem_prepare_folio() "
        "clears each at the guest's first use), while both NO_DIRECT_MAP modes hand out zeroed "
        "pages: the guest's population compares like with like.",
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
               "by the guest (guest_memfd, QEMU TCG guest)", ["pool", "per-folio", "plain"],
               panels, "gmem-report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
