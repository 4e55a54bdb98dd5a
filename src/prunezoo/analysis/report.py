"""Self-contained HTML report of a finished study: figures embedded as base64 PNGs, inline CSS, no JS.

Output is deterministic (no timestamps, fixed dpi, stable ordering), so reports can be diffed.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import yaml

from prunezoo.analysis import plots

BEST_MIN_SPARSITY = 0.9

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1240px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 .3em}h2{font-size:1.3em;margin:1.6em 0 .5em;border-bottom:2px solid #e3e6ea;
padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .4em;color:#38404f}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1.2em;margin:.6em 0 1em}
dl.meta dt{font-weight:600;color:#5a6272}dl.meta dd{margin:0;font-family:ui-monospace,monospace}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{padding:.3em .75em;border-bottom:1px solid #e3e6ea;text-align:right;white-space:nowrap}
th{background:#f0f2f5;font-weight:600}td:first-child,th:first-child,td.l,th.l{text-align:left}
td{font-variant-numeric:tabular-nums}tr.dense td{background:#fafbfc;font-style:italic}
figure{margin:.8em 0 1.4em}figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#5a6272;margin-top:.3em}
pre{background:#f4f5f7;padding:1em;overflow-x:auto;font-size:.85em;border-radius:4px}
p.note{color:#5a6272;font-size:.9em}
"""


@dataclass
class Group:
    """Replicate rows (one per seed) of one (point, method, kind, level-or-target) cell."""

    point: str
    method: str
    kind: str
    key: float
    rows: list[dict]

    def values(self, field: str) -> list[float]:
        vals = (r.get(field) for r in self.rows)
        return [float(v) for v in vals if v is not None and not math.isnan(float(v))]

    def mean(self, field: str) -> float:
        vals = self.values(field)
        return statistics.fmean(vals) if vals else math.nan

    def std(self, field: str) -> float | None:
        vals = self.values(field)
        return statistics.stdev(vals) if len(vals) >= 2 else None

    @property
    def n(self) -> int:
        return len(self.rows)


def group_rows(rows: list[dict]) -> list[Group]:
    """Group replicates; order: points and methods by first appearance (dense first), then level/target."""
    groups: dict[tuple, Group] = {}
    for r in rows:
        # IMP levels and branches off them are identified by level; their realized target can jitter by seed.
        by_level = r["kind"] in ("imp", "branch") and r.get("level") is not None
        key = r.get("level") if by_level else r.get("target_sparsity")
        gk = (r.get("point") or "", r["method"], r["kind"], float(key or 0.0))
        groups.setdefault(gk, Group(*gk, rows=[])).rows.append(r)
    points = list(dict.fromkeys(g.point for g in groups.values()))
    methods = list(dict.fromkeys(g.method for g in groups.values()))
    return sorted(groups.values(), key=lambda g: (points.index(g.point), g.kind != "dense",
                                                  methods.index(g.method), g.key))


def _acc(g: Group) -> str:
    m, s = g.mean("test_acc"), g.std("test_acc")
    if math.isnan(m):
        return "–"
    return f"{100 * m:.2f} ± {100 * s:.2f}" if s is not None else f"{100 * m:.2f}"


def _target(g: Group) -> str:
    if g.kind == "dense":
        return "—"
    if g.kind in ("imp", "branch") and all(r.get("level") is not None for r in g.rows):
        return f"level {int(g.key)}"
    return f"{100 * g.key:g}%"


def _table(head: list[str], body: list[tuple[str, list[str]]]) -> str:
    ths = "".join(f'<th{" class=l" if i < 3 else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    trs = "".join(
        f'<tr class="{cls}">' + "".join(f'<td{" class=l" if i < 3 else ""}>{escape(c)}</td>'
                                        for i, c in enumerate(cells)) + "</tr>"
        for cls, cells in body
    )
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table>"


def _results_table(groups: list[Group]) -> str:
    has_val = any(g.values("val_acc") for g in groups)
    head = ["method", "kind", "target", "sparsity", "test acc (%)"] + (["val acc (%)"] if has_val else []) + [
        "nnz", "compression", "FLOP speed-up", "seeds"]
    body = []
    for g in groups:
        val = [f"{100 * g.mean('val_acc'):.2f}" if g.values("val_acc") else "–"] if has_val else []
        nnz = g.mean("nnz")
        body.append(("dense" if g.kind == "dense" else "", [
            g.method, g.kind, _target(g), f"{100 * g.mean('sparsity'):.2f}%", _acc(g), *val,
            "–" if math.isnan(nnz) else f"{round(nnz):,}", f"{g.mean('compression'):.1f}×",
            f"{g.mean('flop_speedup'):.2f}×", str(g.n)]))
    return _table(head, body)


def _best_table(groups: list[Group], multi: bool) -> str:
    dense = {g.point: g for g in groups if g.kind == "dense"}
    best: dict[tuple[str, str], Group] = {}
    for g in groups:
        # Realized sparsity can land a hair under the target; tolerate rounding.
        if g.kind == "dense" or g.mean("sparsity") < BEST_MIN_SPARSITY - 1e-6 or math.isnan(g.mean("test_acc")):
            continue
        cur = best.get((g.point, g.method))
        if cur is None or g.mean("test_acc") > cur.mean("test_acc"):
            best[(g.point, g.method)] = g
    if not best:
        return f'<p class="note">No method reached ≥ {BEST_MIN_SPARSITY:.0%} sparsity.</p>'
    head = (["point"] if multi else []) + ["method", "kind", "sparsity", "test acc (%)", "Δ vs dense (pp)",
                                            "compression", "FLOP speed-up", "seeds"]
    body = []
    for (point, _), g in best.items():
        d = dense.get(point)
        delta = f"{100 * (g.mean('test_acc') - d.mean('test_acc')):+.2f}" if d else "–"
        body.append(("", ([point or "—"] if multi else []) + [
            g.method, g.kind, f"{100 * g.mean('sparsity'):.2f}%", _acc(g), delta,
            f"{g.mean('compression'):.1f}×", f"{g.mean('flop_speedup'):.2f}×", str(g.n)]))
    return _table(head, body)


class _Figures:
    """Writes each figure as a PNG next to the HTML and returns an embedded <figure> element."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, name: str, fig: Any, caption: str) -> str:
        data = plots.to_png(fig)
        (self.directory / f"{name}.png").write_bytes(data)
        b64 = base64.b64encode(data).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{b64}" alt="{escape(caption)}">'
                f"<figcaption>{escape(caption)}</figcaption></figure>")


def _series(groups: list[Group], methods: list[str]) -> tuple[list[plots.Series], list[plots.Band]]:
    series, dense = [], []
    for g in groups:
        if g.kind == "dense":
            dense.append(plots.Band(f"dense {100 * g.mean('test_acc'):.2f}%", plots.DENSE_COLOR,
                                    g.mean("test_acc"), g.std("test_acc"), g.mean("flops_dense")))
    for i, method in enumerate(methods):
        gs = sorted((g for g in groups if g.method == method and g.kind != "dense"),
                    key=lambda g: g.mean("sparsity"))
        if not gs:
            continue
        stds = [g.std("test_acc") for g in gs]
        series.append(plots.Series(
            method, plots.color(i), [g.mean("sparsity") for g in gs], [g.mean("flops_sparse") for g in gs],
            [g.mean("test_acc") for g in gs], None if any(s is None for s in stds) else stds, plots.marker(i)))
    return series, dense


def _layer_bars(rows: list[dict], methods: list[str], layers: dict[str, dict[str, float]]):
    """Per method: densities of its sparsest run among the lowest seed's runs."""
    bars = []
    for i, method in enumerate(methods):
        runs = [r for r in rows if r["method"] == method and r["kind"] != "dense"]
        if not runs:
            continue
        seed = min(r.get("seed", 0) for r in runs)
        run = max((r for r in runs if r.get("seed", 0) == seed), key=lambda r: r["sparsity"])
        dens = layers.get(str(run.get("run_id")))
        if dens:
            bars.append((f"{method} @ {100 * run['sparsity']:.1f}%", plots.color(i), dens, 1 - run["sparsity"]))
    names = list(dict.fromkeys(n for _, _, dens, _ in bars for n in dens))
    return names, bars


def _sdd_section(rows: list[dict], figure: _Figures) -> str:
    from prunezoo.analysis import sdd

    summary = sdd.sdd_summary(rows)
    head = ["point", "method", "selected on", "dense acc (%)", "best pruned acc (%)", "test-selected acc (%)",
            "best sparsity", "effective params", "dense params", "best small dense",
            "noisy labels fit: dense → best", "train err, noisy labels", "test err, noisy labels", "seeds"]
    body = [("", [
        s["point"] or "—", s["method"], s["selected_on"], f"{100 * s['dense_acc']:.2f}",
        f"{100 * s['best_acc']:.2f}" + (f" ± {100 * s['best_acc_std']:.2f}" if s["seeds"] > 1 else ""),
        f"{100 * s['test_selected_acc']:.2f}", f"{100 * s['best_sparsity']:.1f}%",
        f"{s['effective_params']:,.0f}" + (f" ± {s['effective_params_std']:,.0f}" if s["seeds"] > 1 else ""),
        f"{s['dense_params']:,}", s["best_small_dense"] or "none",
        "–" if math.isnan(s["memorization"]) else f"{s['dense_memorization']:.0%} → {s['memorization']:.0%}",
        "–" if math.isnan(s["train_error_noisy"]) else f"{100 * s['train_error_noisy']:.2f}%",
        "–" if math.isnan(s["test_error_noisy"]) else f"{100 * s['test_error_noisy']:.2f}%",
        str(s["seeds"])]) for s in summary]
    parts = ["<h2>Iterative pruning: best pruned models and sparse double descent</h2>", _table(head, body),
             figure("sdd", sdd.sdd_figure(rows), "Test error vs nonzero weights: dense models of the sweep "
                    "(dashed) and each starting point's mean IMP trajectory; right: effective parameters of the "
                    "best pruned models over seeds. Noisy labels fit = share of corrupted training samples predicted as "
                    "their wrong label (memorisation).")]
    if any(r.get("test_ece") is not None for r in rows):
        parts.append(figure("calibration", sdd.calibration_figure(rows),
                            "Expected calibration error (15 bins) along the IMP levels."))
    return "\n".join(parts)


def _latency_section(rows: list[dict]) -> str:
    head = ["point", "method", "channels removed", "seed", "test acc (%)", "params compression", "FLOP speed-up",
            "latency dense → compact (ms)", "measured speed-up", "measured / FLOP ratio"]
    body = [("", [r.get("point") or "—", r["method"], f"{r['target_sparsity']:.0%}", str(r["seed"]),
                  f"{100 * r['test_acc']:.2f}", f"{r['compression']:.2f}×", f"{r['flop_speedup']:.2f}×",
                  f"{r['latency_dense_ms']:.2f} → {r['latency_ms']:.2f}", f"{r['latency_speedup']:.2f}×",
                  f"{r['latency_speedup'] / r['flop_speedup']:.2f}"])
            for r in rows if r.get("latency_ms") is not None]
    return ("<h2>Structured pruning: measured CPU latency</h2><p>Median latency of one batch of 32 on one CPU "
            "thread (warm-up; dense and compact timed in alternating pairs, speed-up = median paired ratio) of the "
            "dense model and the physically compacted one, both exported alike (BatchNorm folded, channels-last), "
            "beside the theoretical FLOP ratio.</p>" + _table(head, body))


def _calibration_runs(records: list[dict]) -> list[tuple[dict, str]]:
    usable = [r for r in records if r.get("calibration")]
    if not usable:
        return []
    point, seed = usable[0]["point"], min(r["seed"] for r in usable)
    usable = [r for r in usable if r["point"] == point and r["seed"] == seed]
    chosen: dict[str, dict] = {}
    for r in usable:
        if r["method"] not in chosen or r["sparsity"] > chosen[r["method"]]["sparsity"]:
            chosen[r["method"]] = r
    return [(r, f"{m} @ {r['sparsity']:.0%}" if m != "dense" else "dense") for m, r in chosen.items()]


def _diagnostics_section(records: list[dict]) -> str:
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    head = ["point", "method", "level", "seed", "sparsity", "train CE", "test entropy", "val entropy",
            "channel sparsity", "IoU prev level", "loss barrier from prev level", "sharpness",
            "GMM |p − p*|", "error: model / Bayes"]
    body = [("", [r["point"] or "—", r["method"], fmt(r["level"], "d"), str(r["seed"]), f"{r['sparsity']:.1%}",
                  fmt(r["train_loss"], ".3f"), fmt(r["test_entropy"], ".3f"), fmt(r.get("val_entropy"), ".3f"),
                  f"{r['channel_sparsity']:.1%}", fmt(r["iou_previous_level"], ".3f"),
                  fmt(r.get("interpolation_barrier"), ".3f"), fmt(r["sharpness"], ".3g"),
                  fmt((r.get("posterior_gap") or {}).get("mean_abs_gap"), ".3f"),
                  "–" if not r.get("posterior_gap") else
                  f"{r['posterior_gap']['model_error']:.1%} / {r['posterior_gap']['bayes_error']:.1%}"])
            for r in records]
    return ("<h2>Training diagnostics</h2><p>From <code>prunezoo diagnose</code>: final train cross-entropy, "
            "test/validation output entropy, share of all-zero output channels, mask IoU with the previous "
            "IMP level, loss barrier on the linear path from the previous level's weights (BN recomputed) and "
            "sharpness (top Hessian eigenvalue over the unpruned weights).</p>" + _table(head, body))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def write_report(study_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``study_dir/report/report.html`` (or ``out``) plus its PNG figures; return the HTML path."""
    study_dir = Path(study_dir)
    out = Path(out) if out is not None else study_dir / "report" / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads((study_dir / "results.json").read_text())
    rows: list[dict] = results["rows"]
    cfg_path = study_dir / "config.yaml"
    cfg_text = cfg_path.read_text() if cfg_path.exists() else ""
    cfg = yaml.safe_load(cfg_text) if cfg_text else None
    cfg = cfg if isinstance(cfg, dict) else {}
    layers = _read_json(study_dir / "layers.json") or {}
    histories = _read_json(study_dir / "histories.json") or {}

    groups = group_rows(rows)
    points = list(dict.fromkeys(g.point for g in groups))
    methods = list(dict.fromkeys(g.method for g in groups if g.kind != "dense"))
    multi = len(points) > 1
    figure = _Figures(out.parent)
    name = str(cfg.get("name") or study_dir.name)
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
    meta = {
        "dataset": (cfg.get("dataset") or {}).get("name", "?"),
        "model": (cfg.get("model") or {}).get("name", "?"),
        "config hash": results.get("config_hash", "?"),
        "runs": str(len(rows)),
        "seeds": f"{len(seeds)} ({', '.join(map(str, seeds))})",
        "methods": ", ".join(methods) or "—",
    } | ({"sweep points": str(len(points))} if multi else {})
    parts = [f"<h1>Pruning study: {escape(name)}</h1><dl class=meta>"]
    parts += [f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in meta.items()]
    parts.append("</dl>")
    parts.append(f"<h2>Best per method at ≥ {BEST_MIN_SPARSITY:.0%} sparsity</h2>")
    parts.append(_best_table(groups, multi))

    if multi:
        series, dense = [], []
        for p_i, point in enumerate(points):
            s, d = _series([g for g in groups if g.point == point], methods)
            for line in s:
                line.label, line.color, line.std = f"{point} · {line.label}", plots.color(p_i), None
            for band in d:
                band.label, band.color, band.std = f"{point} · {band.label}", plots.color(p_i), None
            series += s
            dense += d
        parts.append("<h2>Overview across sweep points</h2>")
        legend = [(p, plots.color(i), "", "-") for i, p in enumerate(points)]
        legend += [(m, "#777777", plots.marker(i), "none") for i, m in enumerate(methods)]
        legend.append(("dense (per point)", "#777777", "", "--"))
        parts.append(figure("overview", plots.accuracy_figure(series, dense, legend=legend),
                            "Mean test accuracy per sweep point (colour) and method (marker); dashed: dense."))

    for p_i, point in enumerate(points):
        pg = [g for g in groups if g.point == point]
        suffix = f"-p{p_i}" if multi else ""
        parts.append(f"<h2>Sweep point: <code>{escape(point)}</code></h2>" if multi else "<h2>Results</h2>")
        series, dense = _series(pg, methods)
        parts.append(figure(f"accuracy{suffix}", plots.accuracy_figure(series, dense),
                            "Mean test accuracy over seeds (band: ±1 std when ≥ 2 seeds); dashed: dense control."))
        parts.append("<h3>Accuracy, size and cost per method and sparsity</h3>")
        parts.append(_results_table(pg))
        names, bars = _layer_bars([r for r in rows if (r.get("point") or "") == point], methods, layers)
        if bars:
            parts.append(figure(f"layers{suffix}", plots.layer_density_figure(names, bars),
                                "Per-layer density of each method's sparsest run (lowest seed); "
                                "dotted: overall density."))

    if any(r.get("latency_ms") is not None for r in rows):
        from prunezoo.analysis.structured_plots import accuracy_cost_figure

        parts.append(_latency_section(rows))
        parts.append(figure("structured", accuracy_cost_figure(rows), "Structured runs: test accuracy vs "
                            "forward FLOPs and vs measured CPU latency of the deployed compact model; stars: dense."))
    if any(r["kind"] == "imp" for r in rows):
        parts.append(_sdd_section(rows, figure))
    diagnostics = _read_json(study_dir / "diagnostics.json")
    if diagnostics:
        parts.append(_diagnostics_section(diagnostics))
        chosen = _calibration_runs(diagnostics)
        if chosen:
            from prunezoo.analysis.calibration_plots import calibration_figure

            parts.append(figure("reliability", calibration_figure([r for r, _ in chosen], [lbl for _, lbl in chosen]),
                                "Test-set calibration (15 right-closed bins) of the dense model and each method's "
                                "sparsest run (lowest seed, first sweep point)."))

    curves = []
    for r in rows:
        hist = histories.get(str(r.get("run_id"))) if r["kind"] == "dense" else None
        if hist:
            label = " · ".join(x for x in (r.get("point") or "", f"seed {r.get('seed')}") if x)
            curves.append((label, plots.color(len(curves)), hist))
    if curves:
        parts.append("<h2>Dense training curves</h2>")
        parts.append(figure("training", plots.history_figure(curves), "Dense control runs: per-epoch curves."))

    if cfg_text:
        parts.append(f"<h2>Configuration</h2><pre>{escape(cfg_text)}</pre>")
    html = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(name)} – prunezoo report</title><style>{_CSS}</style></head>\n"
            "<body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n")
    out.write_text(html, encoding="utf-8")
    return out
