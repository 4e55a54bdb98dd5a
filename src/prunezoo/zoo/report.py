"""HTML report of a zoo analysis (:class:`prunezoo.zoo.analysis.ZooAnalysis`).

Same page style and figure embedding as study reports (:mod:`prunezoo.analysis.report`): inline
CSS, base64 PNGs (also written next to the HTML), no JS, deterministic output.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from prunezoo.analysis import plots
from prunezoo.analysis.report import REPORT_CSS, Figures, html_table
from prunezoo.zoo.analysis import COMPARISON_METRICS, ORIGINAL, GroupSummary, ZooAnalysis

_METRIC_LABELS = {"agreement": "agreement (%)", "kappa": "Cohen's κ", "js": "JS divergence (nats)", "cka": "linear CKA"}
_PCT_METRICS = {"agreement"}  # a share of test samples: in % like accuracies; κ, JS, CKA are coefficients


def _fmt(v: float | None, pct: bool = False, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.2f}" if pct else f"{v:.{digits}f}"


def _pm(stats: dict[str, float], pct: bool = False, digits: int = 3) -> str:
    m, s = stats.get("mean", math.nan), stats.get("std", math.nan)
    if math.isnan(m):
        return "–"
    return f"{_fmt(m, pct, digits)} ± {_fmt(s, pct, digits)}"


def _with_p(value: float, p: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f} (p={p:.2g})"


def summary_table(analysis: ZooAnalysis) -> str:
    """Two tables, so that neither is wider than the page: accuracy and sparsity per group, then how the
    twins compare with their originals (the originals have nothing to compare with)."""
    head = ["group", "method", "level", "models", "test acc (%)", "gen. gap (pp)", "sparsity (%)"]
    body = [
        (
            "dense" if g.group == ORIGINAL else "",
            [
                g.group,
                g.method,
                "—" if g.level is None else f"{g.level:g}",
                str(g.n),
                _pm(g.test_acc, pct=True),
                _pm(g.gen_gap, pct=True),
                _pm(g.sparsity, pct=True),
            ],
        )
        for g in analysis.groups
    ]
    twins = _twin_groups(analysis)
    if not twins:
        return html_table(head, body)
    head2 = [
        "group",
        *(_METRIC_LABELS[m] for m in COMPARISON_METRICS),
        "Pearson r (p)",
        "Kendall τ (p)",
        "Spearman ρ size~sparsity (p)",
    ]
    body2 = []
    for g in twins:
        corr = g.correlation
        body2.append(
            (
                "",
                [
                    g.group,
                    *(
                        _pm(g.comparisons[m], pct=m in _PCT_METRICS, digits=4 if m == "js" else 3)
                        if m in g.comparisons
                        else "–"
                        for m in COMPARISON_METRICS
                    ),
                    _with_p(corr.pearson_r, corr.pearson_p) if corr else "–",
                    _with_p(corr.kendall_tau, corr.kendall_p) if corr else "–",
                    _with_p(g.size_sparsity_spearman, g.size_sparsity_p),
                ],
            )
        )
    return html_table(head, body) + "<h3>Twins vs their originals</h3>" + html_table(head2, body2, text=1)


def _twin_groups(analysis: ZooAnalysis) -> list[GroupSummary]:
    return [g for g in analysis.groups if g.group != ORIGINAL]


def curves_figure(analysis: ZooAnalysis) -> Figure:
    """MP vs VD (and any other method): twin test accuracy vs realised sparsity; dashed: originals."""
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    orig = analysis.group(ORIGINAL).test_acc
    ax.axhline(orig["mean"], color=plots.DENSE_COLOR, ls="--", lw=1.2, label="originals (mean)")
    if orig["std"] and not math.isnan(orig["std"]):
        ax.axhspan(orig["mean"] - orig["std"], orig["mean"] + orig["std"], color=plots.DENSE_COLOR, alpha=0.08, lw=0)
    for i, (method, points) in enumerate(analysis.curves().items()):
        col, mk = plots.color(i), plots.marker(i)
        members = [r for r in analysis.models if r["method"] == method and r["test_acc"] is not None]
        ax.scatter([r["sparsity"] for r in members], [r["test_acc"] for r in members], s=8, color=col, alpha=0.25, lw=0)
        ax.errorbar(
            [p["sparsity"] for p in points],
            [p["test_acc"] for p in points],
            yerr=[0.0 if math.isnan(p["std"]) else p["std"] for p in points],
            color=col,
            marker=mk,
            ms=5,
            lw=1.6,
            capsize=3,
            label=method,
        )
    ax.set_xlabel("sparsity (zero fraction of conv/linear weights)")
    ax.set_ylabel("test accuracy")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(True, alpha=0.3)
    ax.set_title("twin accuracy vs sparsity (mean ± std; dots: single twins)", fontsize=11)
    ax.legend(fontsize=9, frameon=False)
    return fig


def _box(ax, groups: list[str], values: list[list[float]], title: str, pct: bool) -> None:
    data = [[v for v in vals if v is not None and math.isfinite(v)] or [math.nan] for vals in values]
    ax.boxplot(data, showmeans=True, widths=0.6)
    ax.set_xticks(range(1, len(groups) + 1))
    ax.set_xticklabels(groups, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
    if pct:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title(title, fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)


def distributions_figure(analysis: ZooAnalysis) -> Figure:
    """Box plots of test accuracy, generalisation gap and sparsity per group."""
    names = [g.group for g in analysis.groups]
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    for ax, (key, title) in zip(
        fig.subplots(1, 3),
        (("test_acc", "test accuracy"), ("gen_gap", "generalisation gap (train − test)"), ("sparsity", "sparsity")),
    ):
        _box(ax, names, [[r[key] for r in analysis.rows(n)] for n in names], title, pct=True)
    return fig


def comparison_figure(analysis: ZooAnalysis) -> Figure | None:
    """Box plots of agreement, kappa, JS and CKA of every twin vs its original, per twin set."""
    groups = [g for g in _twin_groups(analysis) if g.comparisons]
    if not groups:
        return None
    names = [g.group for g in groups]
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 4), COMPARISON_METRICS):
        _box(
            ax,
            names,
            [[r.get(metric) for r in analysis.rows(n)] for n in names],
            _METRIC_LABELS[metric],
            pct=metric in _PCT_METRICS,
        )
    return fig


def correlation_figure(analysis: ZooAnalysis) -> Figure:
    """Original vs twin accuracy per twin set (left) and agreement vs original accuracy (right)."""
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    lo, hi = math.inf, -math.inf
    for i, g in enumerate(_twin_groups(analysis)):
        rows = [r for r in analysis.rows(g.group) if r["test_acc"] is not None and r["original_test_acc"] is not None]
        xs, ys = [r["original_test_acc"] for r in rows], [r["test_acc"] for r in rows]
        if not rows:
            continue
        lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        r_txt = (
            f" (r={g.correlation.pearson_r:.2f})" if g.correlation and not math.isnan(g.correlation.pearson_r) else ""
        )
        left.scatter(xs, ys, s=12, color=plots.color(i), marker=plots.marker(i), label=g.group + r_txt)
        agree = [(r["original_test_acc"], r["agreement"]) for r in rows if r.get("agreement") is not None]
        if agree:
            a_r = g.agreement_accuracy.pearson_r if g.agreement_accuracy else math.nan
            right.scatter(
                *zip(*agree),
                s=12,
                color=plots.color(i),
                marker=plots.marker(i),
                label=g.group + ("" if math.isnan(a_r) else f" (r={a_r:.2f})"),
            )
    if math.isfinite(lo):
        left.plot([lo, hi], [lo, hi], color="#999999", ls=":", lw=1)
    left.set_xlabel("original test accuracy")
    left.set_ylabel("twin test accuracy")
    left.set_title("original vs twin accuracy (dotted: y = x)", fontsize=11)
    right.set_xlabel("original test accuracy")
    right.set_ylabel("agreement with original")
    right.set_title("agreement vs original accuracy", fontsize=11)
    for ax in (left, right):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
    return fig


def layers_figure(analysis: ZooAnalysis) -> Figure:
    """Mean per-layer sparsity vs layer size (#weights, log scale) for every twin set."""
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    for i, g in enumerate(_twin_groups(analysis)):
        pts = sorted((v["size"], v["sparsity"]) for v in g.layers.values())
        if pts:
            rho = "" if math.isnan(g.size_sparsity_spearman) else f" (ρ={g.size_sparsity_spearman:.2f})"
            ax.plot(*zip(*pts), color=plots.color(i), marker=plots.marker(i), ms=4, lw=1.2, label=g.group + rho)
    ax.set_xscale("log")
    ax.set_xlabel("layer size (#weights)")
    ax.set_ylabel("mean layer sparsity")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(True, alpha=0.3)
    ax.set_title("per-layer sparsity vs layer size (ρ: Spearman)", fontsize=11)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, ncol=2)
    return fig


def write_zoo_report(analysis: ZooAnalysis, out: str | Path) -> Path:
    """Write the HTML report (and its PNG figures next to it); return the HTML path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = Figures(out.parent)
    name = Path(analysis.zoo).name
    twins = _twin_groups(analysis)
    orig = analysis.group(ORIGINAL)
    meta = {
        "zoo": analysis.zoo,
        "models": str(orig.n),
        "twin sets": ", ".join(g.group for g in twins) or "—",
        "twins": str(sum(g.n for g in twins)),
    }
    parts = [f"<h1>Model zoo analysis: {escape(name)}</h1><dl class=meta>"]
    parts += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta.items()]
    parts.append("</dl>")
    parts.append("<h2>Summary per group</h2>")
    parts.append(
        '<p class="note">Accuracies and gaps from each model\'s last logged epoch; sparsity measured on the '
        "stored weights. Agreement, κ, JS (nats) and CKA (penultimate layer) compare each twin with its "
        "original on the test split; Pearson r and Kendall τ correlate original and twin accuracy across "
        "the population; Spearman ρ correlates layer size with mean layer sparsity.</p>"
    )
    parts.append(summary_table(analysis))
    for note in analysis.notes[:20]:
        parts.append(f'<p class="note">{escape(note)}</p>')
    if twins:
        parts.append("<h2>Accuracy vs sparsity per method</h2>")
        parts.append(
            figure(
                "zoo-curves",
                curves_figure(analysis),
                "Twin test accuracy vs realised sparsity per method (e.g. MP levels vs VD).",
            )
        )
    parts.append("<h2>Distributions</h2>")
    parts.append(
        figure(
            "zoo-distributions",
            distributions_figure(analysis),
            "Test accuracy, generalisation gap and sparsity per group (box: quartiles, triangle: mean).",
        )
    )
    if twins:
        comp = comparison_figure(analysis)
        if comp is not None:
            parts.append("<h2>Twins vs originals</h2>")
            parts.append(
                figure(
                    "zoo-comparisons",
                    comp,
                    "Agreement, Cohen's κ, JS divergence and linear CKA of each twin with its original, per twin set.",
                )
            )
        parts.append(
            figure(
                "zoo-correlation",
                correlation_figure(analysis),
                "Left: original vs twin test accuracy (Pearson r per set). Right: agreement vs the "
                "original's accuracy.",
            )
        )
        parts.append("<h2>Layer size vs layer sparsity</h2>")
        parts.append(
            figure(
                "zoo-layers",
                layers_figure(analysis),
                "Mean sparsity of each layer over a twin set's models against its number of weights.",
            )
        )
    html = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(name)} – prunezoo zoo analysis</title><style>{REPORT_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n"
    )
    out.write_text(html, encoding="utf-8")
    return out
