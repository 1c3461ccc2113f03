# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the VM benchmarks' reports (bench-report.py, gmem-report.py) share: ratios as
the tables print them, and the row of bar charts they draw (with matplotlib)."""
import sys

COLOURS = ["#2a7", "#c55", "#888"]  # xmem's way, the other way, the control


def ratio(a, b):
    """a / b to 4 digits; 'n/a' when both are 0, 'inf' when only b is."""
    return f"{a / b:.4g}" if b else ("n/a" if not a else "inf")


def bar_charts(path, suptitle, names, panels, who):
    """Draws one bar chart per panel side by side into the PNG @path.

    @names: the bars' labels; @panels: (title, values, log scale, label format) each,
    one value per name. Returns False (and says so on stderr, naming @who) when
    matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{who}: matplotlib missing (apt-get install python3-matplotlib): no plot",
              file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 4))
    for ax, (title, vals, log, fmt) in zip(axes, panels):
        bars = ax.bar(names, [max(v, 0.5) if log else v for v in vals], color=COLOURS)
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        for bar, v in zip(bars, vals):
            ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(suptitle)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True
