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
from prunezoo.methods.registry import job_kind

BEST_MIN_SPARSITY = 0.9

REPORT_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1240px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 .3em}h2{font-size:1.3em;margin:1.6em 0 .5em;border-bottom:2px solid #e3e6ea;
padding-bottom:.2em}h3{font-size:1.05em;margin:1.2em 0 .4em;color:#38404f}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1.2em;margin:.6em 0 1em}
dl.meta dt{font-weight:600;color:#5a6272}dl.meta dd{margin:0;font-family:ui-monospace,monospace}
div.tw{max-width:100%;overflow-x:auto;margin:.5em 0 1em}
table{border-collapse:collapse;font-size:.9em}
th,td{padding:.3em .6em;border-bottom:1px solid #e3e6ea;text-align:right}
td{white-space:nowrap}th{white-space:normal;min-width:4em;vertical-align:bottom}
th{background:#f0f2f5;font-weight:600}td:first-child,th:first-child,td.l,th.l{text-align:left}
td.l{white-space:normal;overflow-wrap:break-word}
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
        by_level = job_kind(r["kind"]).levelled and r.get("level") is not None
        key = r.get("level") if by_level else r.get("target_sparsity")
        gk = (r.get("point") or "", r["method"], r["kind"], float(key or 0.0))
        groups.setdefault(gk, Group(*gk, rows=[])).rows.append(r)
    points = list(dict.fromkeys(g.point for g in groups.values()))
    methods = list(dict.fromkeys(g.method for g in groups.values()))
    return sorted(
        groups.values(), key=lambda g: (points.index(g.point), g.kind != "dense", methods.index(g.method), g.key)
    )


def _acc(g: Group) -> str:
    m, s = g.mean("test_acc"), g.std("test_acc")
    if math.isnan(m):
        return "–"
    return f"{100 * m:.2f} ± {100 * s:.2f}" if s is not None else f"{100 * m:.2f}"


def _target(g: Group) -> str:
    if g.kind == "dense":
        return "—"
    if job_kind(g.kind).levelled and all(r.get("level") is not None for r in g.rows):
        return f"level {int(g.key)}"
    return f"{100 * g.key:.4g}%"  # STR/VD report their realized sparsity as target: no long decimals


def html_table(head: list[str], body: list[tuple[str, list[str]]], text: int | set[int] = 3) -> str:
    """HTML table; text columns (the first ``text``, or those indices) are left-aligned and may wrap,
    the others hold numbers and never wrap."""
    left = set(range(text)) if isinstance(text, int) else text
    ths = "".join(f"<th{' class=l' if i in left else ''}>{escape(h)}</th>" for i, h in enumerate(head))
    trs = "".join(
        f'<tr class="{cls}">'
        + "".join(f"<td{' class=l' if i in left else ''}>{escape(c)}</td>" for i, c in enumerate(cells))
        + "</tr>"
        for cls, cells in body
    )
    # The wrapper scrolls a table that is still wider than the page instead of letting it overflow the page.
    return f"<div class=tw><table><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table></div>"


def _results_table(groups: list[Group]) -> str:
    has_val = any(g.values("val_acc") for g in groups)
    head = (
        ["method", "kind", "target", "sparsity", "test acc (%)"]
        + (["val acc (%)"] if has_val else [])
        + ["nnz", "compression", "FLOP speed-up", "seeds"]
    )
    body = []
    for g in groups:
        val = [f"{100 * g.mean('val_acc'):.2f}" if g.values("val_acc") else "–"] if has_val else []
        nnz = g.mean("nnz")
        body.append(
            (
                "dense" if g.kind == "dense" else "",
                [
                    g.method,
                    g.kind,
                    _target(g),
                    f"{100 * g.mean('sparsity'):.2f}%",
                    _acc(g),
                    *val,
                    "–" if math.isnan(nnz) else f"{round(nnz):,}",
                    f"{g.mean('compression'):.1f}×",
                    f"{g.mean('flop_speedup'):.2f}×",
                    str(g.n),
                ],
            )
        )
    return html_table(head, body)


def reaches_sparsity(g: Group, threshold: float, layer_counts: dict[str, int] | None = None) -> bool:
    """Whether a group counts as pruned to ``threshold``: its target sparsity reaches it, or it keeps at most
    one weight per layer more than the threshold allows (per-layer rounding: 90 % of 2,368 weights in one
    layer keeps 237, a realized 89.99 %). Structured targets are channel fractions, so only the second applies.
    ``layer_counts`` maps run ids to their number of prunable layers (default: one)."""
    if g.kind == "dense":
        return False
    if job_kind(g.kind).target_unit != "channels" and g.mean("target_sparsity") >= threshold - 1e-9:
        return True
    layers = max((layer_counts or {}).get(str(r.get("run_id")), 1) for r in g.rows)
    kept, total = g.mean("nnz"), g.mean("prunable")
    if math.isnan(kept) or math.isnan(total):
        return g.mean("sparsity") >= threshold - 1e-9
    return kept <= (1 - threshold) * total + layers + 1e-9


def _best_table(groups: list[Group], multi: bool, layer_counts: dict[str, int] | None = None) -> str:
    dense = {g.point: g for g in groups if g.kind == "dense"}
    best: dict[tuple[str, str], Group] = {}
    for g in groups:
        if not reaches_sparsity(g, BEST_MIN_SPARSITY, layer_counts) or math.isnan(g.mean("test_acc")):
            continue
        cur = best.get((g.point, g.method))
        if cur is None or g.mean("test_acc") > cur.mean("test_acc"):
            best[(g.point, g.method)] = g
    if not best:
        return f'<p class="note">No method reached ≥ {BEST_MIN_SPARSITY:.0%} sparsity.</p>'
    head = (["point"] if multi else []) + [
        "method",
        "kind",
        "sparsity",
        "test acc (%)",
        "Δ vs dense (pp)",
        "compression",
        "FLOP speed-up",
        "seeds",
    ]
    body = []
    for (point, _), g in best.items():
        d = dense.get(point)
        delta = f"{100 * (g.mean('test_acc') - d.mean('test_acc')):+.2f}" if d else "–"
        body.append(
            (
                "",
                ([point or "—"] if multi else [])
                + [
                    g.method,
                    g.kind,
                    f"{100 * g.mean('sparsity'):.2f}%",
                    _acc(g),
                    delta,
                    f"{g.mean('compression'):.1f}×",
                    f"{g.mean('flop_speedup'):.2f}×",
                    str(g.n),
                ],
            )
        )
    return html_table(head, body, text=3 if multi else 2)


class Figures:
    """Writes each figure as a PNG next to the HTML and returns an embedded <figure> element."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, name: str, fig: Any, caption: str) -> str:
        data = plots.to_png(fig)
        (self.directory / f"{name}.png").write_bytes(data)
        b64 = base64.b64encode(data).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{b64}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )


def method_series(groups: list[Group], methods: list[str]) -> tuple[list[plots.Series], list[plots.Band]]:
    series, dense = [], []
    for g in groups:
        if g.kind == "dense":
            dense.append(
                plots.Band(
                    f"dense {100 * g.mean('test_acc'):.2f}%",
                    plots.DENSE_COLOR,
                    g.mean("test_acc"),
                    g.std("test_acc"),
                    g.mean("flops_dense"),
                )
            )
    for i, method in enumerate(methods):
        gs = sorted((g for g in groups if g.method == method and g.kind != "dense"), key=lambda g: g.mean("sparsity"))
        if not gs:
            continue
        stds = [g.std("test_acc") for g in gs]
        series.append(
            plots.Series(
                method,
                plots.color(i),
                [g.mean("sparsity") for g in gs],
                [g.mean("flops_sparse") for g in gs],
                [g.mean("test_acc") for g in gs],
                None if any(s is None for s in stds) else stds,
                plots.marker(i),
            )
        )
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


def _sdd_section(rows: list[dict], figure: Figures) -> str:
    """Best pruned IMP models and the sparse-double-descent figure; "best small dense" only with a size
    sweep, the label-noise table only under label noise, so that every table fits the page."""
    from prunezoo.analysis import sdd

    summary = sdd.sdd_summary(rows)
    multi = len({s["point"] for s in summary}) > 1
    sweep, noisy = sdd.size_sweep(rows), sdd.label_noise(rows)
    selected = {s["selected_on"] for s in summary}
    seeds = lambda s, m, sd: m + (f" ± {sd}" if s["seeds"] > 1 else "")
    key = [*([("point", lambda s: s["point"] or "—")] if multi else []), ("method", lambda s: s["method"])]
    cols: list[tuple[str, Any]] = [
        *key,
        *([("selected on", lambda s: s["selected_on"])] if len(selected) > 1 else []),
        ("dense acc (%)", lambda s: f"{100 * s['dense_acc']:.2f}"),
        ("best pruned acc (%)", lambda s: seeds(s, f"{100 * s['best_acc']:.2f}", f"{100 * s['best_acc_std']:.2f}")),
        ("test-selected acc (%)", lambda s: f"{100 * s['test_selected_acc']:.2f}"),
        ("best sparsity", lambda s: f"{100 * s['best_sparsity']:.1f}%"),
        ("effective params", lambda s: seeds(s, f"{s['effective_params']:,.0f}", f"{s['effective_params_std']:,.0f}")),
        ("dense params", lambda s: f"{s['dense_params']:,}"),
        *([("best small dense", lambda s: s["best_small_dense"] or "none")] if sweep else []),
        ("seeds", lambda s: str(s["seeds"])),
    ]
    how = {"val": "validation accuracy", "test": "test accuracy (no validation split)"}
    note = (
        '<p class="note">Best pruned model: the IMP level with the highest '
        + (
            how[next(iter(selected))]
            if len(selected) == 1
            else "validation accuracy where there is a validation split, else test accuracy"
        )
        + "; test-selected: the level with the highest test accuracy, as the papers report."
        + (" Best small dense: the smallest dense model of the sweep at least as accurate." if sweep else "")
        + "</p>"
    )
    parts = [
        "<h2>Iterative pruning: best pruned models and sparse double descent</h2>",
        note,
        html_table([c for c, _ in cols], [("", [fn(s) for _, fn in cols]) for s in summary], text=len(key)),
    ]
    if noisy:
        noise_cols: list[tuple[str, Any]] = [
            *key,
            (
                "noisy labels fit: dense → best",
                lambda s: (
                    "–"
                    if math.isnan(s["memorization"])
                    else f"{100 * s['dense_memorization']:.1f}% → {100 * s['memorization']:.1f}%"
                ),
            ),
            (
                "train error, noisy labels",
                lambda s: "–" if math.isnan(s["train_error_noisy"]) else f"{100 * s['train_error_noisy']:.2f}%",
            ),
            *(
                [("test error, noisy labels", lambda s: f"{100 * s['test_error_noisy']:.2f}%")]
                if any(not math.isnan(s["test_error_noisy"]) for s in summary)
                else []
            ),
            ("seeds", lambda s: str(s["seeds"])),
        ]
        parts += [
            "<h3>Under label noise (best pruned model)</h3>",
            '<p class="note">Noisy labels fit: share of the corrupted training samples predicted as their '
            "wrong label (memorisation), by the dense model and by the best pruned one.</p>",
            html_table(
                [c for c, _ in noise_cols], [("", [fn(s) for _, fn in noise_cols]) for s in summary], text=len(key)
            ),
        ]
    caption = (
        "Test error vs nonzero weights: "
        + ("dense models of the size sweep (dashed) and " if sweep else "")
        + "the mean IMP trajectory of each starting point (level 0: the dense model)"
        + ("; right: effective parameters of the best pruned models over seeds" if multi else "")
        + "."
    )
    parts.append(figure("sdd", sdd.sdd_figure(rows), caption))
    return "\n".join(parts)


def _imp_calibration(rows: list[dict], figure: Figures) -> str:
    from prunezoo.analysis import sdd

    return "<h2>Calibration along the IMP levels</h2>" + figure(
        "calibration", sdd.calibration_figure(rows), "Expected calibration error (15 bins) along the IMP levels."
    )


def _latency_section(rows: list[dict]) -> str:
    head = [
        "point",
        "method",
        "kind",
        "target",
        "seed",
        "test acc (%)",
        "params compression",
        "FLOP speed-up",
        "latency dense → pruned (ms)",
        "measured speed-up",
        "measured / FLOP ratio",
    ]
    body = [
        (
            "",
            [
                r.get("point") or "—",
                r["method"],
                r["kind"],
                # structured targets are channel fractions, sparse exports weight sparsities
                f"{r['target_sparsity']:.0%} "
                + ("channels" if job_kind(r["kind"]).target_unit == "channels" else "weights"),
                str(r["seed"]),
                f"{100 * r['test_acc']:.2f}",
                f"{r['compression']:.2f}×",
                f"{r['flop_speedup']:.2f}×",
                f"{r['latency_dense_ms']:.2f} → {r['latency_ms']:.2f}",
                f"{r['latency_speedup']:.2f}×",
                f"{r['latency_speedup'] / r['flop_speedup']:.2f}",
            ],
        )
        for r in rows
        if r.get("latency_ms") is not None
    ]
    return (
        "<h2>Measured CPU latency</h2><p>Median latency of one batch of 32 on one CPU "
        "thread (warm-up; dense and pruned timed in alternating pairs, speed-up = median paired ratio) of the "
        "dense model and the deployed pruned one — physically compacted (structured) or converted to sparse "
        "kernels where they were measured faster (sparse_export) — both exported alike (BatchNorm folded), "
        "beside the theoretical FLOP ratio.</p>" + html_table(head, body, text=4)
    )


def _mean_std(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "–"
    sd = f" ± {100 * statistics.stdev(vals):.2f}" if len(vals) > 1 else ""
    return f"{100 * statistics.fmean(vals):.2f}{sd}"


def transfer_section(rows: list[dict], histories: dict[str, list[dict]]) -> str:
    """Sparse transfer (kind ``transfer``): accuracy per recipe (at the best validation epoch) and its
    gap to the dense transfer (pretrained dense, ``dense`` recipe, same sweep point), then train vs
    validation loss per epoch, mean over seeds (under- and over-fitting per recipe)."""
    parts = [
        "<h2>Sparse transfer</h2><p class=note>Test accuracy at the epoch with the best validation accuracy "
        "(early stopping), mean ± std over seeds; gap: to the dense transfer (dense pretraining, dense recipe) "
        "of the same task; scratch: the study's dense row, trained without pretraining (its last epoch).</p>"
    ]
    for point in dict.fromkeys(r.get("point") or "" for r in rows):
        here = [r for r in rows if (r.get("point") or "") == point]
        cells: dict[str, list[dict]] = {}
        for r in here:
            if r["kind"] in ("transfer", "dense"):
                cells.setdefault(r["method"], []).append(r)
        ref = [
            r["test_acc"]
            for rs in cells.values()
            for r in rs
            if r.get("recipe") == "dense" and (r.get("sparsity") or 0) < 1e-9 and r.get("test_acc") is not None
        ]
        ref_mean = statistics.fmean(ref) if ref else None
        body = []
        for method, rs in cells.items():
            accs = [r["test_acc"] for r in rs if r.get("test_acc") is not None]
            gap = f"{100 * (statistics.fmean(accs) - ref_mean):+.2f}" if accs and ref_mean is not None else "–"
            epochs = [r["best_epoch"] for r in rs if r.get("best_epoch") is not None]
            body.append(
                (
                    "dense" if rs[0]["kind"] == "dense" else "",
                    [
                        method,
                        rs[0].get("recipe") or "scratch",
                        f"{100 * statistics.fmean(r['sparsity'] for r in rs):.1f}%",
                        _mean_std(accs),
                        gap,
                        f"{statistics.fmean(epochs):.1f}" if epochs else "–",
                        str(len(rs)),
                    ],
                )
            )
        if point:
            parts.append(f"<h3>{escape(point)}</h3>")
        head = ["method", "recipe", "sparsity", "test acc (%)", "gap to dense transfer (pp)", "best epoch", "n"]
        parts.append(html_table(head, body, text=2))
        curves = []
        for method, rs in cells.items():
            hists = [histories.get(str(r.get("run_id"))) or [] for r in rs]
            n_epochs = min((len(h) for h in hists), default=0)
            if not n_epochs or any(h[0].get("val_loss") is None for h in hists):
                continue
            per_epoch = [
                f"{statistics.fmean(h[e]['train_loss'] for h in hists):.3f} / "
                f"{statistics.fmean(h[e]['val_loss'] for h in hists):.3f}"
                for e in range(n_epochs)
            ]
            curves.append((method, per_epoch))
        if curves:
            width = max(len(c) for _, c in curves)
            head = ["method", *[f"epoch {e + 1}" for e in range(width)]]
            parts.append("<p class=note>Train / validation loss per epoch (mean over seeds).</p>")
            parts.append(html_table(head, [("", [m, *c, *[""] * (width - len(c))]) for m, c in curves], text=1))
    return "".join(parts)


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
    fmt = lambda v, f: "–" if v is None else format(v, f)
    gap = lambda r: r.get("posterior_gap") or {}
    cols: list[tuple[str, Any]] = [
        ("point", lambda r: r["point"] or "—"),
        ("method", lambda r: r["method"]),
        ("level", lambda r: fmt(r["level"], "d")),
        ("seed", lambda r: str(r["seed"])),
        ("sparsity", lambda r: f"{r['sparsity']:.1%}"),
        ("train CE", lambda r: fmt(r["train_loss"], ".3f")),
        ("test entropy", lambda r: fmt(r["test_entropy"], ".3f")),
        ("val entropy", lambda r: fmt(r.get("val_entropy"), ".3f")),
        ("channel sparsity", lambda r: f"{r['channel_sparsity']:.1%}"),
        ("IoU prev level", lambda r: fmt(r["iou_previous_level"], ".3f")),
        ("loss barrier from prev level", lambda r: fmt(r.get("interpolation_barrier"), ".3f")),
        ("sharpness", lambda r: fmt(r.get("sharpness"), ".3g")),
        ("GMM |p − p*| (pp)", lambda r: fmt(None if not gap(r) else 100 * gap(r)["mean_abs_gap"], ".2f")),
        (
            "error: model / Bayes",
            lambda r: "–" if not gap(r) else f"{gap(r)['model_error']:.1%} / {gap(r)['bayes_error']:.1%}",
        ),
    ]
    # Columns nobody measured (one point, no validation split, --no-sharpness, not GMM data) stay out.
    shown = [
        (h, fn)
        for h, fn in cols
        if h in ("method", "level", "seed", "sparsity")
        or (h == "point" and len({r["point"] for r in records}) > 1)
        or (h != "point" and any(fn(r) not in ("–", "—") for r in records))
    ]
    body = [("", [fn(r) for _, fn in shown]) for r in records]
    return (
        "<h2>Training diagnostics</h2><p>From <code>prunezoo diagnose</code>: final train cross-entropy, "
        "test/validation output entropy, share of all-zero output channels, mask IoU with the previous "
        "IMP level, loss barrier on the linear path from the previous level's weights (BN recomputed) and "
        "sharpness (top Hessian eigenvalue over the unpruned weights).</p>"
        + html_table([h for h, _ in shown], body, text=1 + (shown[0][0] == "point"))
    )


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
    figure = Figures(out.parent)
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
    parts.append(
        f'<p class="note">Runs whose target sparsity is at least {BEST_MIN_SPARSITY:.0%}, or whose '
        "realized sparsity falls short of it by at most one weight per layer (rounding of each layer's "
        "count).</p>"
    )
    parts.append(_best_table(groups, multi, {k: len(v) for k, v in layers.items()}))

    if multi:
        series, dense = [], []
        for p_i, point in enumerate(points):
            s, d = method_series([g for g in groups if g.point == point], methods)
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
        parts.append(
            figure(
                "overview",
                plots.accuracy_figure(series, dense, legend=legend),
                "Mean test accuracy per sweep point (colour) and method (marker); dashed: dense.",
            )
        )

    for p_i, point in enumerate(points):
        pg = [g for g in groups if g.point == point]
        suffix = f"-p{p_i}" if multi else ""
        parts.append(f"<h2>Sweep point: <code>{escape(point)}</code></h2>" if multi else "<h2>Results</h2>")
        series, dense = method_series(pg, methods)
        parts.append(
            figure(
                f"accuracy{suffix}",
                plots.accuracy_figure(series, dense),
                "Mean test accuracy over seeds (band: ±1 std when ≥ 2 seeds); dashed: dense control.",
            )
        )
        parts.append("<h3>Accuracy, size and cost per method and sparsity</h3>")
        parts.append(_results_table(pg))
        names, bars = _layer_bars([r for r in rows if (r.get("point") or "") == point], methods, layers)
        if bars:
            parts.append(
                figure(
                    f"layers{suffix}",
                    plots.layer_density_figure(names, bars),
                    "Per-layer density of each method's sparsest run (lowest seed); dotted: overall density.",
                )
            )

    if any(r.get("latency_ms") is not None for r in rows):
        from prunezoo.analysis.structured_plots import accuracy_cost_figure

        parts.append(_latency_section(rows))
        parts.append(
            figure(
                "structured",
                accuracy_cost_figure(rows),
                "Runs with measured latency (structured, sparse export): test accuracy vs "
                "forward FLOPs and vs measured CPU latency of the deployed pruned model; stars: dense.",
            )
        )
    if any(r["kind"] == "transfer" for r in rows):
        parts.append(transfer_section(rows, histories))
    from prunezoo.analysis import sdd

    if sdd.applies(rows):
        parts.append(_sdd_section(rows, figure))
    if any(job_kind(r["kind"]).levelled for r in rows) and any(r.get("test_ece") is not None for r in rows):
        parts.append(_imp_calibration(rows, figure))
    diagnostics = _read_json(study_dir / "diagnostics.json")
    if diagnostics:
        parts.append(_diagnostics_section(diagnostics))
        chosen = _calibration_runs(diagnostics)
        if chosen:
            from prunezoo.analysis.calibration_plots import calibration_figure

            parts.append(
                figure(
                    "reliability",
                    calibration_figure([r for r, _ in chosen], [lbl for _, lbl in chosen]),
                    "Test-set calibration (15 right-closed bins) of the dense model and each method's "
                    "sparsest run (lowest seed, first sweep point).",
                )
            )

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
        # Collapsed (no JS needed): the resolved config is long and would dominate the page.
        parts.append(
            f"<h2>Configuration</h2><details><summary>config.yaml ({len(cfg_text.splitlines())} lines, "
            f"every field resolved)</summary><pre>{escape(cfg_text)}</pre></details>"
        )
    html = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(name)} – prunezoo report</title><style>{REPORT_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n"
    )
    out.write_text(html, encoding="utf-8")
    return out
