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
        masks = (
            run_dir
            / "runs"
            / job
            / ("masks.safetensors" if r["kind"] != "imp" else f"level_{r['level']:02d}/masks.safetensors")
        )
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
        (
            {"methods": [{"name": "x", "kind": "oneshot", "criterion": "vibes", "sparsities": [0.5]}]},
            "methods.0.criterion",
        ),
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


# -- issue 19, item 11: the results table never cuts numbers; --format csv|json for scripts ----------------
def _summary_rows() -> list[dict]:
    """Two seeds of a dense model with 2,368 weights and of one pruned to 90 % (237 kept)."""
    rows = []
    for seed in (0, 1):
        for method, kind, target, nnz, acc in (
            ("dense", "dense", 0.0, 2368, 0.9),
            ("global-magnitude", "oneshot", 0.9, 237, 0.8),
        ):
            rows.append(
                {
                    "point": "",
                    "method": method,
                    "kind": kind,
                    "level": None,
                    "target_sparsity": target,
                    "sparsity": 1 - nnz / 2368,
                    "nnz": nnz,
                    "compression": 2368 / nnz,
                    "flops_sparse": 2 * nnz + 123_456,
                    "flop_speedup": 4736 / (2 * nnz),
                    "test_acc": acc + 0.01 * seed,
                    "seed": seed,
                }
            )
    return rows


@pytest.mark.parametrize("width", [80, 64])
def test_results_table_never_cuts_numbers(width, monkeypatch):
    import io

    from rich.console import Console

    from prunezoo.cli import common as cli  # results_table reads the console of cli.common

    buf = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(width=width, file=buf, color_system=None))  # a terminal this wide
    cli.out.print(cli.results_table(_summary_rows()))
    text = buf.getvalue()
    assert max(map(len, text.splitlines())) <= width
    lines = text.splitlines()
    # every value of the kept columns is printed whole on one line
    for value in ("2,368", "237", "dense", "0.00%", "89.99%", "90.50% ± 0.71%", "80.50% ± 0.71%"):
        assert any(value in line for line in lines), (value, text)
    header = next(line for line in lines if "method" in line)
    assert " n " in header and "nnz" in header  # the n column stays
    if width == 64:  # too narrow for everything: low-priority columns dropped and named, never truncated
        assert "FLOPs (sparse)" in text.replace("\n", " ") and "not shown" in text
        assert "128,192" not in text
    else:  # 80 columns: room for the FLOP speed-up, not for FLOPs and compression
        assert "9.99x" in text and "not shown at this width: FLOPs (sparse), compression" in text


def test_run_and_runs_show_format_csv_and_json(tmp_path):
    import csv
    import io

    from prunezoo.experiments.summary import summarize

    cfg = {
        **TINY,
        "model": {"name": "mlp", "options": {"hidden": [8]}},
        "training": {"steps": 4, "batch_size": 64, "lr": 0.05},
        "finetune": {"steps": 2, "batch_size": 64, "lr": 0.01},
        "methods": [
            {"name": "gm", "kind": "oneshot", "sparsities": [0.9]},
            {"name": "imp", "kind": "imp", "levels": 1},
        ],
    }
    out = tmp_path / "runs"
    bad = runner.invoke(app, ["run", str(_write(tmp_path, cfg)), "--out", str(out), "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.output and not out.exists()
    res = runner.invoke(
        app, ["run", str(_write(tmp_path, cfg)), "--out", str(out), "-q", "--workers", "1", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)  # stdout is pure JSON; the results directory goes to stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    expected = summarize(json.loads((run_dir / "results.json").read_text())["rows"])
    assert [(r["method"], r["level"], r["nnz"]) for r in records] == [
        (r["method"], r["level"], r["nnz"]) for r in expected
    ]
    assert [r["test_acc"] for r in records] == pytest.approx([r["test_acc"] for r in expected])
    assert str(run_dir) in res.stderr and str(run_dir) not in res.stdout
    shown = runner.invoke(app, ["runs", "show", run_dir.name, "--out", str(out), "--format", "json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout) == records
    as_csv = runner.invoke(app, ["runs", "show", run_dir.name, "--out", str(out), "--format", "csv"])
    assert as_csv.exit_code == 0
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["method"], float(r["nnz"])) for r in table] == [(r["method"], r["nnz"]) for r in records]
    default = runner.invoke(app, ["runs", "show", run_dir.name, "--out", str(out)])
    assert default.exit_code == 0 and "nnz" in default.stdout and "gm" in default.stdout


def test_bench_table_never_cuts_numbers():
    """The bench table drops low-priority columns (and says so) instead of cutting numbers at 80 columns."""
    from rich.console import Console

    from prunezoo.cli.bench import bench_rich_table

    rec = dict(
        method="global-magnitude-long-name", baseline=True, kind="oneshot", target_compression=32, sparsity=0.96875,
        test_acc_mean=0.9123, test_acc_std=0.0123, test_acc_ci95_low=0.88, test_acc_ci95_high=0.94,
        delta_vs_dense=-0.0456, nnz=2_368_000, flop_speedup=31.9, latency_speedup=None, train_flops_total=1.23e12, n=3,
    )  # fmt: skip
    for width in (64, 80, 160):
        console = Console(width=width, record=True)
        console.print(bench_rich_table([rec], "bench", width=width))
        text = console.export_text()
        assert max(map(len, text.splitlines())) <= width
        for value in ("96.9%", "91.23 ± 1.23", "[88.0, 94.0]", "-4.56"):
            assert value in text, (width, value, text)
        if width == 160:
            assert "2,368,000" in text and "not shown" not in text
        else:
            caption = " ".join(text.split())  # the caption folds over lines
            assert "2,368,000" in text or "nnz" in caption.split("not shown at this width:")[1]
