"""Reliability diagram, class-wise reliability band and confidence histogram for selected runs."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter


def calibration_figure(records: list[dict], labels: list[str]) -> Figure:
    """``records`` are diagnostics records carrying a ``calibration`` entry (see analysis.diagnostics)."""
    fig = Figure(figsize=(13, 4), dpi=100, layout="constrained")
    rel, cls, hist = fig.subplots(1, 3)
    for ax in (rel, cls):
        ax.plot([0, 1], [0, 1], color="#888", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for rec, label in zip(records, labels):
        cal = rec["calibration"]
        m = len(cal["counts"])
        centers = [(i + 0.5) / m for i in range(m)]
        pts = [(c, a) for c, a in zip(cal["confidence"], cal["accuracy"]) if a is not None]
        line = rel.plot(
            [p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"{label} (ECE {100 * cal['ece']:.2f}%)"
        )[0]
        mean = [
            (x, mu, sd or 0.0)
            for x, mu, sd in zip(centers, cal["classwise_mean"], cal["classwise_std"])
            if mu is not None
        ]
        cls.plot([p[0] for p in mean], [p[1] for p in mean], color=line.get_color(), label=label)
        cls.fill_between(
            [p[0] for p in mean],
            [p[1] - p[2] for p in mean],
            [p[1] + p[2] for p in mean],
            color=line.get_color(),
            alpha=0.15,
        )
        hist.step(centers, cal["histogram"], where="mid", color=line.get_color(), label=label)
    rel.set(title="reliability (top label)", xlabel="confidence", ylabel="accuracy")
    cls.set(
        title="class-wise reliability (mean ± std over classes)",
        xlabel="predicted probability",
        ylabel="frequency of the class",
    )
    hist.set(title="predicted-class confidence", xlabel="confidence", ylabel="share of test samples")
    hist.grid(alpha=0.3)
    # Probabilities, accuracies and shares in percent, like every other figure of the report.
    for axis in (rel.xaxis, rel.yaxis, cls.xaxis, cls.yaxis, hist.xaxis, hist.yaxis):
        axis.set_major_formatter(PercentFormatter(1.0))
    rel.legend(fontsize=7, loc="upper left")
    return fig
