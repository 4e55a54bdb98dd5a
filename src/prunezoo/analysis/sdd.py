"""Sparse double descent analysis of IMP trajectories (He et al. 2022; seed 003).

For every IMP trajectory (sweep point × seed × method) the *best pruned model* is the level with the
highest validation accuracy (``select="val"``, the default when a validation split exists) or test
accuracy (``select="test"``, what the papers report); both are returned. Its *effective parameters*
are its nonzero prunable weights. The *best small dense model* is the smallest dense model of the
sweep (e.g. a width sweep) whose mean test accuracy reaches the best pruned model's.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from prunezoo.experiments.summary import finite_or_none


def size_sweep(rows: list[dict]) -> bool:
    """Dense models of at least two sizes: the dense (classical) double-descent curve exists."""
    return len({r["prunable"] for r in rows if r["kind"] == "dense"}) > 1


def label_noise(rows: list[dict]) -> bool:
    """Trained under label noise: rows carry the fit to the noisy training labels."""
    return any(finite_or_none(r.get(k)) is not None for r in rows for k in ("memorization", "train_eval_acc"))


def applies(rows: list[dict]) -> bool:
    """Sparse double descent is about IMP trajectories across model sizes or under label noise."""
    return any(r["kind"] == "imp" for r in rows) and (size_sweep(rows) or label_noise(rows))


def trajectories(rows: list[dict]) -> dict[tuple[str, int, str], list[dict]]:
    """IMP rows grouped by (point, seed, method), level 0 = that point/seed's dense row, level order."""
    dense = {(r.get("point") or "", r["seed"]): r for r in rows if r["kind"] == "dense"}
    out: dict[tuple[str, int, str], list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "imp":
            out[(r.get("point") or "", r["seed"], r["method"])].append(r)
    for (point, seed, _), levels in out.items():
        levels.sort(key=lambda r: r["level"])
        if (point, seed) in dense:
            levels.insert(0, {**dense[(point, seed)], "level": 0})
    return dict(out)


def _pick(levels: list[dict], key: str) -> dict:
    usable = [r for r in levels if finite_or_none(r.get(key)) is not None]
    return max(usable or levels, key=lambda r: (finite_or_none(r.get(key)) or -1.0, -r["level"]))


def best_pruned(rows: list[dict]) -> list[dict]:
    """One record per trajectory: the val- and test-selected best levels and their numbers."""
    out = []
    for (point, seed, method), levels in trajectories(rows).items():
        has_val = any(finite_or_none(r.get("val_acc")) is not None for r in levels)
        by_val, by_test = _pick(levels, "val_acc" if has_val else "test_acc"), _pick(levels, "test_acc")
        out.append(
            {
                "point": point,
                "seed": seed,
                "method": method,
                "selected_on": "val" if has_val else "test",
                "level": by_val["level"],
                "sparsity": by_val["sparsity"],
                "effective_params": by_val["nnz"],
                "test_acc": by_val["test_acc"],
                "test_ece": finite_or_none(by_val.get("test_ece")),
                "test_selected_level": by_test["level"],
                "test_selected_acc": by_test["test_acc"],
                "test_selected_params": by_test["nnz"],
                "dense_acc": levels[0]["test_acc"] if levels[0]["level"] == 0 else None,
                "memorization": finite_or_none(by_val.get("memorization")),
                "train_noisy_acc": finite_or_none(by_val.get("train_eval_acc")),  # fit to the noisy training labels
                "test_noisy_acc": finite_or_none(by_val.get("test_noisy_acc")),
                "dense_memorization": finite_or_none(levels[0].get("memorization"))
                if levels[0]["level"] == 0
                else None,
                "dense_params": levels[0]["prunable"],
            }
        )
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def sdd_summary(rows: list[dict]) -> list[dict]:
    """Table-1-style summary per (point, method): dense vs best pruned (mean ± std over seeds),
    effective parameters and the best small dense model of the sweep."""
    best = best_pruned(rows)
    dense_by_point: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "dense":
            dense_by_point[r.get("point") or ""].append(r)
    dense_points = sorted(
        ((statistics.fmean(r["test_acc"] for r in rs), rs[0]["prunable"], p) for p, rs in dense_by_point.items()),
        key=lambda t: t[1],
    )
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for b in best:
        groups[(b["point"], b["method"])].append(b)
    out = []
    for (point, method), bs in groups.items():
        acc, acc_sd = _mean_std([b["test_acc"] for b in bs])
        params, params_sd = _mean_std([b["effective_params"] for b in bs])
        dense_acc, _ = _mean_std([b["dense_acc"] for b in bs])
        small = next((p for a, n, p in dense_points if a >= acc), None)
        out.append(
            {
                "point": point,
                "method": method,
                "seeds": len(bs),
                "selected_on": bs[0]["selected_on"],
                "dense_params": bs[0]["dense_params"],
                "dense_acc": dense_acc,
                "best_acc": acc,
                "best_acc_std": acc_sd,
                "effective_params": params,
                "effective_params_std": params_sd,
                "best_sparsity": statistics.fmean(b["sparsity"] for b in bs),
                "memorization": _mean_std([b["memorization"] for b in bs])[0],
                "dense_memorization": _mean_std([b["dense_memorization"] for b in bs])[0],
                "train_error_noisy": 1 - _mean_std([b["train_noisy_acc"] for b in bs])[0],
                "test_error_noisy": 1 - _mean_std([b["test_noisy_acc"] for b in bs])[0],
                "test_selected_acc": statistics.fmean(b["test_selected_acc"] for b in bs),
                "best_small_dense": small,
                "best_small_dense_params": next((n for a, n, p in dense_points if p == small), None),
            }
        )
    return out


def sdd_figure(rows: list[dict]) -> Figure:
    """Left: test error vs nonzero parameters — the dense curve across a size sweep (double descent) with
    each point's and method's mean IMP trajectory overlaid (sparse double descent; level 0 = dense). Right,
    only with two or more starting points: effective parameters of their best pruned models (box over seeds)."""
    trajs = trajectories(rows)
    lines = list(dict.fromkeys((k[0], k[2]) for k in trajs))
    points = list(dict.fromkeys(k[0] for k in trajs))
    boxes = len(points) > 1
    fig = Figure(figsize=(12, 4.4) if boxes else (8, 4.4), dpi=100, layout="constrained")
    ax, box = fig.subplots(1, 2, width_ratios=[2, 1]) if boxes else (fig.subplots(), None)
    dense = defaultdict(list)
    for r in rows:
        if r["kind"] == "dense":
            dense[r["prunable"]].append(1 - r["test_acc"])
    if size_sweep(rows):
        xs = sorted(dense)
        ax.plot(xs, [statistics.fmean(dense[x]) for x in xs], "k--o", label="dense models of the sweep", zorder=3)
    methods = {m for _, m in lines}
    for point, method in lines:
        by_level = defaultdict(list)
        for (p, _, m), levels in trajs.items():
            if (p, m) == (point, method):
                for r in levels:
                    by_level[r["level"]].append((r["nnz"], 1 - r["test_acc"]))
        lv = sorted(by_level)
        label = " · ".join(x for x in (point, method if len(methods) > 1 or not point else "") if x)
        ax.plot(
            [statistics.fmean(n for n, _ in by_level[v]) for v in lv],
            [statistics.fmean(e for _, e in by_level[v]) for v in lv],
            "-",
            marker=".",
            label=label,
        )
    ax.set_xscale("log")
    ax.set_xlabel("nonzero prunable weights (log scale)")
    ax.set_ylabel("test error")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    if box is not None:
        best = best_pruned(rows)
        box.boxplot([[b["effective_params"] for b in best if b["point"] == p] for p in points])
        box.set_xticks(range(1, len(points) + 1), [p or "—" for p in points], rotation=30, ha="right", fontsize=8)
        box.set_yscale("log")
        box.set_title("best pruned model per starting point", fontsize=10)
        box.set_ylabel("effective parameters")
        box.grid(alpha=0.3)
    return fig


def calibration_figure(rows: list[dict]) -> Figure:
    """ECE along the IMP levels (mean over seeds) per point/method, dense at level 0: on the clean
    test labels and, under label noise, on the noisy training labels."""
    fig = Figure(figsize=(8, 4.4), dpi=100, layout="constrained")
    ax = fig.subplots()
    curves = defaultdict(lambda: defaultdict(list))
    for (point, _, method), levels in trajectories(rows).items():
        for r in levels:
            for key, kind in (("test_ece", "test, clean labels"), ("train_eval_ece", "train, noisy labels")):
                if finite_or_none(r.get(key)) is not None:
                    curves[" · ".join(x for x in (point, f"{method} ({kind})") if x)][r["sparsity"]].append(r[key])
    for label, pts in curves.items():
        xs = sorted(pts)
        ax.plot(xs, [statistics.fmean(pts[x]) for x in xs], marker=".", label=label)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("ECE (15 bins)")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    return fig


def _legend_below(fig: Figure, ax) -> None:
    """Legend under the axes (an in-axes legend hides the curves once there are several)."""
    from prunezoo.analysis.plots import figure_legend

    figure_legend(fig, *ax.get_legend_handles_labels(), max_cols=3)
