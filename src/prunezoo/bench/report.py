"""Benchmark tables: measured numbers per method and operating point (mean ± std, 95 % t-interval over
seeds, dense control first) as CSV and HTML, with the published reference results in a separate
table — never in the same column as a measured number."""

from __future__ import annotations

import csv
import io
import json
import math
from html import escape
from pathlib import Path

from prunezoo.analysis import plots
from prunezoo.analysis.report import REPORT_CSS, Figures, group_rows, html_table, method_series
from prunezoo.bench.published import PublishedResult, published_results
from prunezoo.experiments.summary import t_interval
from prunezoo.methods.dense import DENSE
from prunezoo.methods.registry import job_kind
from prunezoo.utils.io import write_text

BENCH_FIELDS = [
    "point",
    "method",
    "kind",
    "baseline",
    "target_compression",
    "sparsity",
    "compression",
    "nnz",
    "flop_speedup",
    "train_flops",
    "train_flops_total",
    "latency_ms",
    "latency_speedup",
    "test_acc_mean",
    "test_acc_std",
    "test_acc_ci95_low",
    "test_acc_ci95_high",
    "delta_vs_dense",
    "n",
]


def _target_compression(kind: str, key: float, rows: list[dict]) -> float:
    mk = job_kind(kind)
    if kind == DENSE.name:
        return 1.0
    if mk.target_unit == "channels":  # key is the channel fraction removed; weights shrink with its square
        return round(1 / (1 - key) ** 2, 2)
    if mk.levelled:  # key is a level
        key = rows[0]["target_sparsity"]
    return round(1 / (1 - key), 2)


def aggregate(rows: list[dict], baselines: frozenset[str] = frozenset()) -> list[dict]:
    """One record per (point, method, operating point): means of size/cost columns and test accuracy
    mean, sample std and 95 % t-interval over seeds, plus the difference to that point's dense control."""
    groups = group_rows(rows)
    dense = {g.point: g.mean("test_acc") for g in groups if g.kind == "dense"}
    dense_flops = {g.point: g.mean("train_flops") for g in groups if g.kind == "dense"}
    out = []
    for g in groups:
        accs = g.values("test_acc")
        ci = t_interval(accs)
        mean = lambda f, g=g: None if math.isnan(g.mean(f)) else g.mean(f)
        acc = mean("test_acc")
        out.append(
            {
                "point": g.point,
                "method": g.method,
                "kind": g.kind,
                "baseline": g.method in baselines,
                "target_compression": _target_compression(g.kind, g.key, g.rows),
                "sparsity": mean("sparsity"),
                "compression": mean("compression"),
                "nnz": mean("nnz"),
                "flop_speedup": mean("flop_speedup"),
                "train_flops": mean("train_flops"),
                # methods that start from the trained dense model also paid for training it
                "train_flops_total": (mean("train_flops") or 0.0)
                + (dense_flops.get(g.point, 0.0) if job_kind(g.kind).from_dense else 0.0),
                "latency_ms": mean("latency_ms"),
                "latency_speedup": mean("latency_speedup"),
                "test_acc_mean": acc,
                "test_acc_std": g.std("test_acc"),
                # an accuracy lies in [0, 1]; the t-interval can overshoot with few, spread seeds
                "test_acc_ci95_low": max(ci[0], 0.0) if ci else None,
                "test_acc_ci95_high": min(ci[1], 1.0) if ci else None,
                "delta_vs_dense": None if acc is None or g.point not in dense else acc - dense[g.point],
                "n": g.n,
            }
        )
    return out


def to_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=BENCH_FIELDS)
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in BENCH_FIELDS} for r in records)
    return buf.getvalue()


def _pct(v: float | None, sign: bool = False) -> str:
    return "–" if v is None else (f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}")


def _measured_table(records: list[dict]) -> str:
    latency = any(r["latency_speedup"] is not None for r in records)
    head = (
        [
            "method",
            "kind",
            "target",
            "sparsity",
            "test acc (%) mean ± std",
            "95% CI (%)",
            "Δ vs dense (pp)",
            "compression",
            "nnz",
            "FLOP speed-up",
            "train FLOPs (incl. dense)",
        ]
        + (["latency (ms)", "measured speed-up"] if latency else [])
        + ["seeds"]
    )
    body = []
    for r in records:
        std = "" if r["test_acc_std"] is None else f" ± {100 * r['test_acc_std']:.2f}"
        ci = (
            "–"
            if r["test_acc_ci95_low"] is None
            else f"[{100 * r['test_acc_ci95_low']:.2f}, {100 * r['test_acc_ci95_high']:.2f}]"
        )
        lat = (
            [
                ("–" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}"),
                ("–" if r["latency_speedup"] is None else f"{r['latency_speedup']:.2f}×"),
            ]
            if latency
            else []
        )
        name = r["method"] + (" (baseline)" if r["baseline"] else "")
        body.append(
            (
                "dense" if r["kind"] == "dense" else "",
                [
                    name,
                    r["kind"],
                    "control" if r["kind"] == "dense" else f"{r['target_compression']:g}×",
                    f"{100 * (r['sparsity'] or 0):.2f}%",
                    _pct(r["test_acc_mean"]) + std,
                    ci,
                    "—" if r["kind"] == "dense" else _pct(r["delta_vs_dense"], sign=True),
                    f"{r['compression']:.1f}×",
                    f"{round(r['nnz']):,}",
                    f"{r['flop_speedup']:.2f}×",
                    f"{r['train_flops_total']:.3g}",
                    *lat,
                    str(r["n"]),
                ],
            )
        )
    return html_table(head, body)


def published_table(items: list[PublishedResult]) -> str:
    head = ["paper", "model", "dataset", "protocol", "metric", "published value", "note", "source"]
    body = [("", [p.paper, p.model, p.dataset, p.protocol, p.metric, p.shown, p.note, p.source]) for p in items]
    return html_table(head, body, text={0, 1, 2, 3, 4, 6, 7})  # all but the value are text that may wrap


def _relevant_first(items: list[PublishedResult], model: str, dataset: str) -> list[PublishedResult]:
    def close(p: PublishedResult) -> int:
        norm = lambda s: s.lower().replace("-", "").replace(" ", "")
        return -(norm(model) in norm(p.model) or norm(p.model) in norm(model)) - (norm(dataset) in norm(p.dataset))

    return sorted(items, key=close)


def write_bench_report(study_dir: str | Path, suite_meta: dict, baselines: frozenset[str]) -> tuple[Path, Path]:
    """Write ``<study>/bench/bench.csv`` and ``bench.html``; return their paths."""
    study_dir = Path(study_dir)
    out = study_dir / "bench"
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads((study_dir / "results.json").read_text())["rows"]
    records = aggregate(rows, baselines)
    csv_path, html_path = out / "bench.csv", out / "bench.html"
    write_text(csv_path, to_csv(records))

    figure = Figures(out)
    groups = group_rows(rows)
    methods = list(dict.fromkeys(g.method for g in groups if g.kind != "dense"))
    series, dense = method_series(groups, methods)
    parts = [f"<h1>Benchmark: {escape(suite_meta['name'])}</h1><dl class=meta>"]
    parts += [f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in suite_meta.items()]
    parts.append("</dl>")
    parts.append(
        "<p class=note>Fair by construction: per seed, every method that prunes a trained model starts from the "
        "same dense checkpoint (the dense control below) and fine-tunes with the same budget; methods trained from "
        "initialisation use the dense control's training budget; all use the same data. Training FLOPs show what "
        "each method spent. 95% CI: Student-t interval of the mean over seeds, clipped to [0, 100] %.</p>"
    )
    parts.append(
        figure(
            "accuracy",
            plots.accuracy_figure(series, dense),
            "Measured mean test accuracy over seeds (band ±1 std); dashed: dense control.",
        )
    )
    parts.append("<h2>Measured (this run)</h2>")
    parts.append(_measured_table(records))
    items = _relevant_first(published_results(), str(suite_meta.get("model", "")), str(suite_meta.get("dataset", "")))
    parts.append("<h2>Published (reference values from the papers — not measured here)</h2>")
    parts.append(
        "<p class=note>Numbers as stated in the source papers and survey (shared/reference notes), with "
        "their own model, dataset and protocol; they are context, not comparable one-to-one with the "
        "CPU-scale measurements above.</p>"
    )
    parts.append(published_table(items))
    html = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(suite_meta['name'])} – prunezoo bench</title><style>{REPORT_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n"
    )
    write_text(html_path, html)
    return csv_path, html_path
