"""The two examples a user with real data would start from, run end to end on CPU-sized inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cifar_fixture import write_cifar10
from prunezoo.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def test_cifar10_resnet20_example_runs_on_a_cifar_fixture(tmp_path):
    """The GPU recipe, shrunk by --set only: 1 epoch on a 512-image subset of a CIFAR-10 in the real format."""
    root = write_cifar10(tmp_path / "data", n_train=600, n_test=200)
    # exactly the two overrides the issue names, plus where the data is and the CPU
    sets = ["training.epochs=1", "dataset.options.subset=512", f"dataset.root={root}", "device=cpu"]
    args = ["run", str(EXAMPLES / "cifar10-resnet20.yaml"), "--out", str(tmp_path / "runs"), "--workers", "1", "-q"]
    res = runner.invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
    assert res.exit_code == 0, res.output
    study = next((tmp_path / "runs").glob("cifar10-resnet20-*"))
    rows = json.loads((study / "results.json").read_text())["rows"]
    got = sorted((r["method"], round(r["target_sparsity"], 3)) for r in rows)
    want = [("dense", 0.0), ("gmp", 0.9), ("global-magnitude", 0.9)]
    want += [("imp", round(1 - 0.8**k, 3)) for k in range(1, 11)]  # 10 levels of 20 %
    assert got == sorted(want)
    for r in rows:
        assert abs(r["sparsity"] - r["target_sparsity"]) < 1e-3 and 0.0 <= r["test_acc"] <= 1.0
    history = json.loads((study / "histories.json").read_text())
    dense = next(h for k, h in history.items() if k.startswith("dense"))
    assert dense[-1]["step"] == 4  # 512 of the 600 images at batch 128: the subset is what trained


def test_custom_model_script_prunes_with_three_methods():
    """examples/custom_model.py as a user runs it: an unregistered nn.Module, DataLoaders, the Python API."""
    script = EXAMPLES / "custom_model.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), "--epochs", "6"], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines()[1:]:
        name, sparsity, acc = line.split()
        rows[name] = (float(sparsity), float(acc))
    assert set(rows) == {"dense", "oneshot-magnitude+finetune", "gmp", "snip-at-init"}
    assert rows["dense"][0] == 0.0
    for name, (sparsity, acc) in rows.items():
        if name != "dense":
            assert abs(sparsity - 0.9) < 1e-3, (name, sparsity)  # read from the weights: the masks held
        assert acc > 0.5, (name, acc)  # 10 classes: far above chance after a few epochs
