"""Structured pruning figure for study reports: accuracy against FLOPs and against *measured* CPU latency."""

from __future__ import annotations

from collections import defaultdict

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from prunezoo.analysis.plots import DENSE_COLOR, color, marker


def accuracy_cost_figure(rows: list[dict]) -> Figure:
    """Two panels, one point per structured run: test accuracy vs forward FLOPs (left) and vs the
    measured latency of the deployed compact model (right); stars: the dense models they came from."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_f, ax_t = fig.subplots(1, 2, sharey=True)
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("latency_ms") is not None:
            by_method[r["method"]].append(r)
    for i, (name, rs) in enumerate(sorted(by_method.items())):
        rs = sorted(rs, key=lambda r: r["flops_sparse"])
        acc = [r["test_acc"] for r in rs]
        for ax, x in ((ax_f, [r["flops_sparse"] for r in rs]), (ax_t, [r["latency_ms"] for r in rs])):
            label = name if rs[0].get("kind") == "structured" else f"{name} (sparse export)"  # masked + sparse kernels
            ax.plot(x, acc, marker=marker(i), color=color(i), label=label, linestyle="-" if len(rs) > 1 else "none")
    dense = [r for r in rows if r.get("method") == "dense" and r.get("test_acc") is not None]
    lat_dense = sorted(r["latency_dense_ms"] for rs in by_method.values() for r in rs)
    if dense:
        d_acc = [r["test_acc"] for r in dense]
        ax_f.scatter(
            [r["flops_dense"] for r in dense], d_acc, marker="*", s=140, color=DENSE_COLOR, label="dense", zorder=3
        )
        if lat_dense:  # the dense model timed beside each compact one (median over runs)
            ax_t.scatter(
                [lat_dense[len(lat_dense) // 2]],
                [sum(d_acc) / len(d_acc)],
                marker="*",
                s=140,
                color=DENSE_COLOR,
                label="dense",
                zorder=3,
            )
    ax_f.set_xscale("log")
    ax_f.set_xlabel("forward FLOPs per sample")
    ax_t.set_xlabel("measured CPU latency, batch of 32 (ms)")
    for ax in (ax_f, ax_t):
        ax.grid(True, alpha=0.3)
    ax_f.set_ylabel("test accuracy")
    ax_f.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_f.legend(fontsize=8)
    ax_t.legend(fontsize=8)
    return fig
