"""HTML study report: embedded figures, correct aggregates, escaping, determinism, rendering."""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunezoo.analysis import write_report
from prunezoo.analysis.report import group_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_PREFIX = '<img src="data:image/png;base64,'
ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["features.0.weight", "features.3.weight", "classifier.0.weight", "classifier.2.weight"]
PRUNABLE = 10_000
FLOPS = 2_000_000


def _acc(method_i: int, s: float, seed: int, point_i: int) -> float:
    return 0.9 - 0.05 * method_i - 0.4 * s**6 + 0.02 * seed - 0.03 * point_i


def _row(method: str, kind: str, level: int | None, target: float, s: float, acc: float, seed: int, point: str,
         run_id: str) -> dict:
    nnz = max(round(PRUNABLE * (1 - s)), 1)
    sparse = round(FLOPS * (1 - 0.9 * s))
    return {"method": method, "kind": kind, "level": level, "target_sparsity": target, "sparsity": s, "nnz": nnz,
            "prunable": PRUNABLE, "compression": PRUNABLE / nnz, "test_acc": acc, "test_loss": 1 - acc,
            "train_loss": 0.5 - acc / 2, "val_acc": None, "flops_dense": FLOPS, "flops_sparse": sparse,
            "flop_speedup": FLOPS / sparse, "seed": seed, "point": point, "run_id": run_id}


def make_study(root: Path, methods: list[tuple[str, str]], sparsities: list[float], seeds: list[int],
               points: list[str], layers: bool = True, histories: bool = True) -> tuple[Path, list[dict]]:
    """Synthetic finished study; imp methods use levels 1..n with per-seed jitter in the realized target."""
    rows: list[dict] = []
    for p_i, point in enumerate(points):
        for seed in seeds:
            rows.append(_row("dense", "dense", None, 0.0, 0.0, _acc(-1, 0, seed, p_i), seed, point,
                             f"p{p_i}-dense-s{seed}"))
            for m_i, (method, kind) in enumerate(methods):
                for l_i, target in enumerate(sparsities, start=1):
                    s = target + (0.001 * seed if kind == "imp" else 0.0)
                    rows.append(_row(method, kind, l_i if kind == "imp" else None, s if kind == "imp" else target,
                                     s, _acc(m_i, target, seed, p_i), seed, point, f"p{p_i}-m{m_i}-{l_i}-s{seed}"))
    study = root / "study"
    study.mkdir()
    cfg = {"name": "synthetic", "seed": 0, "dataset": {"name": "mnist5k"}, "model": {"name": "lenet-300-100"},
           "methods": [{"name": m, "kind": k} for m, k in methods]}
    (study / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (study / "results.json").write_text(json.dumps({"config_hash": "abc123", "rows": rows}))
    if layers:
        dens = {r["run_id"]: {n: (1 - r["sparsity"]) * (0.5 + i / 2) for i, n in enumerate(LAYERS)}
                for r in rows if r["kind"] != "dense"}
        (study / "layers.json").write_text(json.dumps(dens))
    if histories:
        hist = {r["run_id"]: [{"epoch": e, "train_loss": 1 / e, "test_acc": r["test_acc"] - 0.1 / e}
                              for e in range(1, 6)] for r in rows if r["kind"] == "dense"}
        (study / "histories.json").write_text(json.dumps(hist))
    return study, rows


def _tables(text: str) -> list[list[list[str]]]:
    """Body cells of every table, html-unescaped."""
    return [[[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
             for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]
            for body in re.findall(r"<tbody>(.*?)</tbody>", text, re.S)]


def _check_figures(out: Path, expected: set[str]) -> str:
    text = out.read_text()
    pngs = {p.name for p in out.parent.glob("*.png")}
    assert pngs == expected
    embedded = re.findall(re.escape(IMG_PREFIX) + r'([A-Za-z0-9+/=]+)"', text)
    assert text.count("<img") == len(embedded) == len(expected)
    files = {(out.parent / name).read_bytes() for name in expected}
    for b64 in embedded:
        data = base64.b64decode(b64, validate=True)
        assert data.startswith(PNG_MAGIC) and data in files
    for data in files:
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    return text


METHODS = [("global-magnitude", "oneshot"), ("imp", "imp")]
SPARSITIES = [0.5, 0.9, 0.98]


@pytest.fixture
def basic(tmp_path):
    return make_study(tmp_path, METHODS, SPARSITIES, [0, 1], [""])


def test_writes_self_contained_html_with_all_figures(basic):
    study, _ = basic
    out = write_report(study)
    assert out == study / "report" / "report.html"
    text = _check_figures(out, {"accuracy.png", "layers.png", "training.png", "sdd.png"})
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "abc123" in text and "mnist5k" in text and "lenet-300-100" in text
    assert "<pre>" in text and "global-magnitude" in text


def test_table_means_and_stds_are_correct(basic):
    study, rows = basic
    text = write_report(study).read_text()
    results = _tables(text)[1]
    assert results[0][0] == "dense"
    for method, kind in [("dense", "dense"), *METHODS]:
        for l_i, target in enumerate([0.0] if kind == "dense" else SPARSITIES, start=1):
            reps = [r for r in rows if r["method"] == method and
                    (r["level"] == l_i if kind == "imp" else r["target_sparsity"] == target)]
            assert len(reps) == 2
            accs = [r["test_acc"] for r in reps]
            acc = f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}"
            spars = f"{100 * statistics.mean(r['sparsity'] for r in reps):.2f}%"
            matches = [c for c in results if c[0] == method and c[4] == acc and c[3] == spars]
            assert len(matches) == 1, (method, target, acc, results)
            assert matches[0][-1] == "2"


def test_best_per_method_table(basic):
    study, rows = basic
    best = _tables(write_report(study).read_text())[0]
    assert [c[0] for c in best] == ["global-magnitude", "imp"]
    # Accuracy falls with sparsity, so the best run at >= 90% is the 90% one.
    accs = [r["test_acc"] for r in rows if r["method"] == "global-magnitude" and r["target_sparsity"] == 0.9]
    assert best[0][3] == f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}"
    dense = statistics.mean(r["test_acc"] for r in rows if r["kind"] == "dense")
    assert best[0][4] == f"{100 * (statistics.mean(accs) - dense):+.2f}"


def test_imp_groups_by_level_not_jittered_target(basic):
    _, rows = basic
    imp = [g for g in group_rows(rows) if g.method == "imp"]
    assert [(g.key, g.n) for g in imp] == [(1, 2), (2, 2), (3, 2)]


def test_branch_rows_group_by_level_and_nan_is_ignored():
    rows = [_row("rewind", "branch", 4, 0.59 + 0.001 * seed, 0.59 + 0.001 * seed, acc, seed, "", f"b{seed}")
            for seed, acc in enumerate([0.8, 0.9, math.nan])]
    (g,) = group_rows(rows)
    assert g.n == 3 and g.key == 4
    assert g.mean("test_acc") == pytest.approx(0.85)
    assert g.std("test_acc") == pytest.approx(statistics.stdev([0.8, 0.9]))


def test_output_is_deterministic(basic, tmp_path):
    study, _ = basic
    first = write_report(study).read_bytes()
    pngs = {p.name: p.read_bytes() for p in (study / "report").glob("*.png")}
    second = write_report(study, tmp_path / "other" / "r.html")
    assert second.read_bytes() == first
    assert {p.name: p.read_bytes() for p in second.parent.glob("*.png")} == pngs


def test_escapes_method_names(tmp_path):
    study, _ = make_study(tmp_path, [("<b>bold</b>", "oneshot"), ("gm", "oneshot")], SPARSITIES, [0], ["a<i>&"])
    text = write_report(study).read_text()
    assert "<b>" not in text and "<i>" not in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text


def test_two_sweep_points_single_seed(tmp_path):
    points = ["training.lr=0.1", "training.lr=0.01"]
    study, rows = make_study(tmp_path, METHODS, SPARSITIES, [3], points)
    out = write_report(study)
    text = _check_figures(out, {"overview.png", "accuracy-p0.png", "accuracy-p1.png", "layers-p0.png",
                                "layers-p1.png", "training.png", "sdd.png"})
    assert all(f"<code>{p}</code>" in text for p in points)
    tables = _tables(text)
    assert len(tables) == 4 and [c[0] for c in tables[0]] == [p for p in points for _ in METHODS]
    for p_i, point in enumerate(points):
        for cells in tables[1 + p_i]:
            assert "±" not in cells[4] and cells[-1] == "1"
        r = next(r for r in rows if r["point"] == point and r["method"] == "imp" and r["level"] == 2)
        assert any(c[0] == "imp" and c[4] == f"{100 * r['test_acc']:.2f}" for c in tables[1 + p_i])


def test_without_layers_and_histories(tmp_path):
    study, _ = make_study(tmp_path, METHODS, SPARSITIES, [0, 1], [""], layers=False, histories=False)
    text = _check_figures(write_report(study), {"accuracy.png", "sdd.png"})
    assert "training curves" not in text and "per-layer" not in text.lower()


def test_no_method_reaches_best_threshold(tmp_path):
    study, _ = make_study(tmp_path, METHODS, [0.3, 0.6], [0], [""])
    assert "No method reached" in write_report(study).read_text()


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_render_script_produces_screenshot(basic, tmp_path):
    study, _ = basic
    png = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_report.py"), str(write_report(study)),
                           str(png)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 50_000
