"""examples/methods-90.yaml end to end, shrunk (tiny MLP, 2 epochs): every method of the example runs
through `prunezoo run` and lands at its target sparsity."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prunezoo.cli import app
from prunezoo.experiments.config import SPARSITY_KINDS, parse_config
from prunezoo.experiments.study import run_study

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "methods-90.yaml"


def test_methods_90_example_runs_end_to_end_in_small(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["model"]["options"]["hidden"] = [16]
    data["training"]["epochs"] = 2
    data["finetune"]["epochs"] = 1
    for m in data["methods"]:
        if m["kind"] == "imp":
            m["levels"] = 2
        if m.get("rounds", 1) > 1:
            m["rounds"] = 5
    cfg = parse_config(data)
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    methods = {m.name: m for m in cfg.methods}
    assert set(rows) == {"dense", *methods}
    for name, m in methods.items():
        row = rows[name]
        assert 0 <= row["test_acc"] <= 1
        if m.kind in SPARSITY_KINDS:
            assert row["sparsity"] == pytest.approx(0.9, abs=2e-3), name
        else:  # str, vd: sparsity emerges; imp: 0.8^levels
            assert 0 <= row["sparsity"] < 1
    assert rows["magnitude"]["test_acc"] > 0.3  # pruned after 2 epochs of training, still far above chance
    # the table of `prunezoo runs show` reads the same rows back from the store
    shown = CliRunner().invoke(app, ["runs", "show", res.directory.name, "--out", str(tmp_path)])
    assert shown.exit_code == 0 and "movement" in shown.output and "edge-popup" in shown.output
