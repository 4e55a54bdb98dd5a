"""Matplotlib figures for study reports, built on ``Figure`` objects (no pyplot global state)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    EngFormatter,
    FixedLocator,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
    PercentFormatter,
)

DPI = 100
DENSE_COLOR = "#222222"
_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
# Sparsities pruning papers report; used as readable tick positions on the compression axis.
_SPARSITY_TICKS = [0.0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999]


def color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def marker(i: int) -> str:
    return _MARKERS[i % len(_MARKERS)]


@dataclass
class Series:
    """One line: x positions with mean/std of accuracy (std is None for a single seed)."""

    label: str
    color: str
    sparsity: list[float]
    flops: list[float]
    mean: list[float]
    std: list[float] | None
    marker: str = "o"


@dataclass
class Band:
    """Dense control: a horizontal reference line with an optional ±std band."""

    label: str
    color: str
    mean: float
    std: float | None
    flops: float


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # Drop the "Software: matplotlib x.y" chunk so the bytes depend on the data only.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _compression(s: float) -> float:
    return 1.0 / max(1.0 - s, 1e-6)


def _draw(ax, series: Sequence[Series], dense: Sequence[Band], flops_axis: bool) -> None:
    for d in dense:
        ax.axhline(d.mean, color=d.color, ls="--", lw=1.2, label=d.label)
        if d.std:
            ax.axhspan(d.mean - d.std, d.mean + d.std, color=d.color, alpha=0.10, lw=0)
        if flops_axis:
            ax.plot([d.flops], [d.mean], marker="*", ms=10, color=d.color, ls="none")
    for s in series:
        xs = s.flops if flops_axis else [_compression(v) for v in s.sparsity]
        ax.plot(xs, s.mean, marker=s.marker, ms=4, lw=1.6, color=s.color, label=s.label)
        if s.std is not None:
            lo = [m - e for m, e in zip(s.mean, s.std)]
            hi = [m + e for m, e in zip(s.mean, s.std)]
            ax.fill_between(xs, lo, hi, color=s.color, alpha=0.18, lw=0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("test accuracy")
    ax.grid(True, which="major", alpha=0.3)


def _sparsity_axis(ax, sparsities: Sequence[float]) -> None:
    """Log2 compression axis labelled with sparsity below and compression factor above."""
    ax.set_xscale("log", base=2)
    hi = max([_compression(s) for s in sparsities] + [2.0])
    ax.set_xlim(0.9, hi * 1.15)
    ticks = [t for t in _SPARSITY_TICKS if _compression(t) <= hi * 1.15]
    # Drop ticks that would sit closer than ~0.6 of a doubling to the previous one.
    kept: list[float] = []
    for t in ticks:
        if not kept or math.log2(_compression(t)) - math.log2(_compression(kept[-1])) >= 0.6:
            kept.append(t)
    ax.xaxis.set_major_locator(FixedLocator([_compression(t) for t in kept]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{100 * t:g}%" for t in kept])
    ax.set_xlabel("sparsity (log scale of compression 1/(1−s))")
    top = ax.secondary_xaxis("top")
    n_pow = int(math.log2(hi * 1.15)) + 1
    pows = [2.0**k for k in range(0, n_pow, math.ceil(n_pow / 8))]
    top.xaxis.set_major_locator(FixedLocator(pows))
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xticklabels([f"{p:g}×" for p in pows], fontsize=8)


def _flops_axis(ax, flops: Sequence[float]) -> None:
    ax.set_xscale("log")
    finite = [f for f in flops if f > 0 and math.isfinite(f)]
    decades = math.log10(max(finite) / min(finite)) if finite else 0.0
    # Denser ticks when the range is narrow, otherwise one tick per decade.
    subs = next(
        s
        for limit, s in ((0.4, range(1, 10)), (1.2, (1, 2, 3, 5)), (3.0, (1, 2, 5)), (math.inf, (1,)))
        if decades < limit
    )
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=[float(v) for v in subs]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(EngFormatter(places=0, sep=""))
    ax.set_xlabel("FLOPs per sample (sparse, log scale)")


def figure_legend(fig: Figure, handles: list, labels: list[str], max_cols: int = 6) -> None:
    """Legend below the axes, filled row by row (matplotlib fills columns first), never wider than the figure."""
    if not handles:
        return
    # ~14 legend characters per inch at fontsize 9, plus room for the handle.
    fit = int(fig.get_figwidth() * 14) // (max(map(len, labels)) + 6)
    ncol = max(1, min(len(handles), max_cols, fit))
    order = [i for c in range(ncol) for i in range(c, len(handles), ncol)]
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="outside lower center",
        ncol=ncol,
        frameon=False,
        fontsize=9,
    )


def accuracy_figure(
    series: Sequence[Series],
    dense: Sequence[Band],
    title: str = "",
    legend: Sequence[tuple[str, str, str, str]] | None = None,
) -> Figure:
    """Two panels: accuracy vs sparsity (log2 compression) and accuracy vs sparse FLOPs (log10).

    ``legend`` replaces the per-line legend by (label, color, marker, linestyle) entries.
    """
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    _draw(left, series, dense, flops_axis=False)
    _sparsity_axis(left, [v for s in series for v in s.sparsity])
    left.set_title("accuracy vs sparsity (top axis: compression)", fontsize=11)
    _draw(right, series, dense, flops_axis=True)
    _flops_axis(right, [v for s in series for v in s.flops] + [d.flops for d in dense])
    right.set_title("accuracy vs FLOPs (★ dense)", fontsize=11)
    if title:
        fig.suptitle(title, fontsize=12)
    if legend is not None:
        handles = [Line2D([], [], color=c, marker=m, ls=ls, ms=5) for _, c, m, ls in legend]
        figure_legend(fig, handles, [entry[0] for entry in legend])
    else:
        figure_legend(fig, *left.get_legend_handles_labels())
    return fig


def layer_density_figure(
    layers: list[str], bars: Sequence[tuple[str, str, dict[str, float], float]], title: str = ""
) -> Figure:
    """Grouped bars of per-layer density; ``bars`` holds (label, color, densities, overall density)."""
    n = len(bars)
    # Never wider than the page (12 in at DPI) so fonts are not scaled down in the browser.
    width = min(max(6.0, 1.2 + 0.12 * len(layers) * max(n, 2)), 12.0)
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    ax = fig.subplots()
    step = 0.8 / max(n, 1)
    values = [v for _, _, dens, _ in bars for v in dens.values() if v > 0]
    log = bool(values) and max(values) / min(values) > 20
    for i, (label, col, dens, overall) in enumerate(bars):
        xs = [j - 0.4 + step * (i + 0.5) for j in range(len(layers))]
        ax.bar(xs, [dens.get(name, math.nan) for name in layers], width=step * 0.92, color=col, label=label)
        ax.axhline(overall, color=col, ls=":", lw=1.2)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(values) * 0.5, 1.3)
    else:
        ax.set_ylim(0, min(1.05, 1.15 * max(values, default=1.0)))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.yaxis.set_minor_formatter(NullFormatter())  # log-scale minor labels would mix in plain fractions
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(
        [name.removesuffix(".weight") for name in layers], rotation=40, ha="right", rotation_mode="anchor", fontsize=8
    )
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_ylabel("density (weights kept)" + (", log scale" if log else ""))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or "per-layer density (dotted: overall density)", fontsize=11)
    figure_legend(fig, *ax.get_legend_handles_labels())
    return fig


def history_figure(curves: Sequence[tuple[str, str, list[dict]]]) -> Figure:
    """Training curves (test accuracy, train loss per epoch) of the dense runs."""
    fig = Figure(figsize=(12, 4.0), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for label, col, hist in curves:
        for ax, key in ((acc_ax, "test_acc"), (loss_ax, "train_loss")):
            pts = [(h["epoch"], h[key]) for h in hist if h.get(key) is not None and "epoch" in h]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, lw=1.4, color=col, label=label)
    acc_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    for ax, name in ((acc_ax, "test accuracy"), (loss_ax, "train loss")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.set_title(f"dense training: {name}", fontsize=11)
        ax.grid(True, alpha=0.3)
    figure_legend(fig, *acc_ax.get_legend_handles_labels())
    return fig
