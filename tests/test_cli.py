"""The main job and its configuration errors (field named, exit code 2, nothing written)."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from prunezoo.cli import app
from prunezoo.experiments.config import StudyConfig, load_config, parse_config

runner = CliRunner()

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [32]}},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    "methods": [
        {"name": "gm", "kind": "oneshot", "sparsities": [0.5, 0.9]},
        {"name": "rand", "kind": "oneshot", "criterion": "random", "scheme": "uniform", "sparsities": [0.9]},
        {"name": "imp", "kind": "imp", "levels": 2},
        {"name": "gmp", "kind": "gmp", "sparsities": [0.8], "gmp_frequency": 5},
    ],
}


def _write(tmp_path, data):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_tiny_study_prints_table_and_writes_results(tmp_path):
    out = tmp_path / "runs"
    res = runner.invoke(app, ["run", str(_write(tmp_path, TINY)), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "FLOP" in res.output and "gm" in res.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["dense", "gm", "gm", "rand", "imp", "imp", "gmp"]
    imp = [r for r in rows if r["method"] == "imp"]
    assert [r["sparsity"] for r in imp] == pytest.approx([0.2, 0.36], abs=1e-3)
    assert rows[2]["flops_sparse"] < rows[1]["flops_sparse"] < rows[0]["flops_sparse"]
    assert (run_dir / "results.csv").exists()
    for r in rows[1:]:  # every pruned run keeps its mask and per-layer densities
        job = r["run_id"].split("/")[0]
        masks = run_dir / "runs" / job / ("masks.safetensors" if r["kind"] != "imp" else f"level_{r['level']:02d}/masks.safetensors")
        assert masks.exists()
    layers = json.loads((run_dir / "layers.json").read_text())
    assert set(layers) == {r["run_id"] for r in rows}
    # finished studies are not re-run
    again = runner.invoke(app, ["run", str(_write(tmp_path, TINY)), "--out", str(out), "-q"])
    assert again.exit_code == 0 and len([p for p in out.iterdir() if p.is_dir()]) == 1
    # the store indexes the study and exports it
    ls = runner.invoke(app, ["runs", "ls", "--out", str(out)])
    assert ls.exit_code == 0 and run_dir.name in ls.output
    show = runner.invoke(app, ["runs", "show", run_dir.name.rsplit("-", 1)[-1][:6], "--out", str(out)])
    assert show.exit_code == 0 and "imp" in show.output
    csv_path = tmp_path / "export.csv"
    exp = runner.invoke(app, ["runs", "export", str(csv_path), "--out", str(out)])
    assert exp.exit_code == 0, exp.output
    assert len(csv_path.read_text().strip().splitlines()) == 1 + len(rows)
    diag = runner.invoke(app, ["diagnose", str(run_dir)])
    assert diag.exit_code == 0, diag.output
    records = json.loads((run_dir / "diagnostics.json").read_text())
    assert len(records) == len(rows) and all(r["sharpness"] is not None for r in records)
    cal = records[0]["calibration"]
    assert sum(cal["counts"]) > 0 and 0 <= cal["ece"] <= cal["mce"] <= 1 and len(cal["histogram"]) == 15
    imp2 = next(r for r in records if r["method"] == "imp" and r["level"] == 2)
    assert 0 < imp2["iou_previous_level"] <= 0.8 + 1e-9  # level 2 keeps 64% of what level 1 kept (80%)
    rep = runner.invoke(app, ["report", run_dir.name[:8], "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    html = (run_dir / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "imp" in html and "Training diagnostics" in html
    assert (run_dir / "report" / "reliability.png").exists()
    missing = runner.invoke(app, ["report", "nope", "--out", str(out)])
    assert missing.exit_code == 2 and "study" in missing.output
    pq_path = tmp_path / "export.parquet"
    exp = runner.invoke(app, ["runs", "export", str(pq_path), "--out", str(out)])
    assert exp.exit_code == 0, exp.output
    import pandas as pd

    df = pd.read_parquet(pq_path)
    assert list(df["method"]) == [r["method"] for r in rows]
    assert list(df["test_acc"]) == pytest.approx([r["test_acc"] for r in rows])
    assert set(df["run_id"]) == {r["run_id"] for r in rows}


def test_same_seed_same_results(tmp_path):
    data = {**TINY, "methods": TINY["methods"][:2]}
    results = []
    for i in range(2):
        res = runner.invoke(app, ["run", str(_write(tmp_path, data)), "--out", str(tmp_path / f"r{i}"), "-q"])
        assert res.exit_code == 0, res.output
        (run_dir,) = [p for p in (tmp_path / f"r{i}").iterdir() if p.is_dir()]
        results.append(json.loads((run_dir / "results.json").read_text())["rows"])
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"dataset": {"name": "imagenet-9000"}}, "dataset.name"),
        ({"model": {"name": "gpt5"}}, "model.name"),
        ({"methods": [{"name": "x", "kind": "magic", "sparsities": [0.5]}]}, "methods.0.kind"),
        ({"methods": [{"name": "x", "kind": "oneshot", "sparsities": [1.5]}]}, "methods.0.sparsities"),
        ({"methods": [{"name": "x", "kind": "oneshot", "criterion": "vibes", "sparsities": [0.5]}]},
         "methods.0.criterion"),
        ({"training": {"epochs": -3}}, "training.epochs"),
        ({"trainig": {"epochs": 3}}, "trainig"),
        ({"dataset": {"name": "digits", "noise_kind": "gaussian"}}, "dataset.noise_kind"),
    ],
)
def test_config_errors_exit_2_name_field_and_write_nothing(tmp_path, patch, field):
    out = tmp_path / "runs"
    res = runner.invoke(app, ["run", str(_write(tmp_path, {**TINY, **patch})), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert field in res.output
    assert not out.exists() or not any(p.is_dir() for p in out.iterdir())


def test_set_override_and_missing_file(tmp_path):
    cfg = load_config(_write(tmp_path, TINY), ["training.epochs=5", "dataset.noise_rate=0.1"])
    assert cfg.training.epochs == 5 and cfg.dataset.noise_rate == 0.1
    res = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "not found" in res.output


def test_config_hash_ignores_defaults():
    assert parse_config({}).hash() == StudyConfig().hash()
    assert parse_config({"seed": 0}).hash() == parse_config({}).hash()
    assert parse_config({"seed": 1}).hash() != parse_config({}).hash()


def test_list_command():
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0
    for word in ("mnist5k", "lenet-300-100", "magnitude", "erk", "pairflip"):
        assert word in res.output
