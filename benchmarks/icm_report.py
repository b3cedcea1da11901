"""The comparisons and the report of benchmarks/icm.py: BD-rates, summaries, tables, the plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import common
import task_metrics as M

# metric -> (task, label); map50 is the primary one.
METRICS: dict[str, tuple[str, str]] = {
    "map50": ("detection", "mAP@0.5"),
    "map": ("detection", "mAP@[.5:.95]"),
    "miou_ref": ("segmentation", "mIoU agreement"),
    "miou_gt": ("segmentation", "mIoU vs COCO-derived GT"),
    "top1": ("classification", "top-1 agreement"),
}
# Summaries give the rate at which each curve reaches this share of the uncompressed accuracy.
TARGET_FRACTION = 0.9
# ----------------------------------------------------------------------------- comparisons
def compare(methods: dict[str, dict], metrics: list[str]) -> dict:
    """BD-rate at equal accuracy of every method against every other, per metric."""
    out = {}
    for m in metrics:
        curves = {name: [(p["bpp"], p[m]) for p in r["points"] if m in p] for name, r in methods.items()}
        out[m] = {test: {ref: M.bd_rate_at_accuracy(curves[ref], curves[test])
                         for ref in curves if ref != test} for test in curves}
    return out


def summaries(methods: dict[str, dict], metrics: list[str], reference: dict) -> dict:
    """Each curve's extremes, and the rate at which it reaches TARGET_FRACTION of the uncompressed accuracy."""
    return {name: {m: M.curve_summary([(p["bpp"], p[m]) for p in r["points"] if m in p],
                                      TARGET_FRACTION * reference[m] if m in reference else None)
                   for m in metrics}
            for name, r in methods.items()}


# ----------------------------------------------------------------------------- report
def fmt(v, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def points_table(methods: dict[str, dict], metrics: list[str]) -> str:
    rows = []
    for name, r in methods.items():
        for p in r["points"]:
            rows.append([name, f"{r['param_name']} {p['param']}".strip(), fmt(p["bpp"])] +
                        [fmt(p.get(m)) for m in metrics])
    return common.table(rows, ["method", "setting", "bpp"] + [METRICS[m][1] for m in metrics])


def bd_cell(r: dict | None) -> list[str]:
    if r is None:  # the reference itself
        return ["-", ""]
    if r["bd_rate"] is None:
        return [f"n/a: {r['reason']}", ""]
    return [f"{r['bd_rate']:+.1f}%", f"{r['range'][0]:.3f}..{r['range'][1]:.3f}"]


def bd_table(bd: dict, refs: list[str]) -> str:
    rows = [[test] + sum((bd_cell(row.get(ref)) for ref in refs), []) for test, row in bd.items()]
    header = ["method"] + sum(([f"vs {ref}", "accuracy range"] for ref in refs), [])
    return common.table(rows, header)


def summary_table(summ: dict, metric: str) -> str:
    rows = []
    for name, s in summ.items():
        c = s[metric]
        lo, hi = c["at_lowest_rate"], c["at_highest_rate"]
        reach = c.get("rate_for_target") or {}
        reached = "never" if reach.get("bpp") is None else \
            ("<= " if reach["upper_bound"] else "") + fmt(reach["bpp"])
        rows.append([name, fmt(c["best"]), f"{fmt(lo[1])} @ {fmt(lo[0])}" if lo else "-",
                     f"{fmt(hi[1])} @ {fmt(hi[0])}" if hi else "-", reached])
    return common.table(rows, ["method", "best", "at lowest bpp", "at highest bpp",
                               f"bpp for {TARGET_FRACTION:.0%} of uncompressed"])


def timing_summary(timings: dict) -> dict:
    return {t: {"median_s": float(np.median(v)), "mean_s": float(np.mean(v)), "n": len(v)}
            for t, v in timings.items() if v}


def plot(path: Path, methods: dict[str, dict], reference: dict, metrics: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    palette = list(plt.cm.tab10.colors) + list(plt.cm.Dark2.colors)  # one colour per method in every panel
    for ax, m in zip(axes.ravel(), metrics):
        for i, (name, r) in enumerate(methods.items()):
            pts = sorted((p["bpp"], p[m]) for p in r["points"] if m in p)
            if pts:
                style = "o-" if name.startswith("sdc:") else ".--"
                ax.plot(*zip(*pts), style, label=name, ms=4, lw=1.2, color=palette[i % len(palette)])
        if m in reference:
            ax.axhline(reference[m], color="k", lw=0.8, ls=":", label="uncompressed")
        ax.set_xscale("log")
        ax.set_xlabel("bpp (whole file)")
        ax.set_title(METRICS[m][1])
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
