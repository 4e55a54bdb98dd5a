"""Models, datasets and criteria from outside the package: by import path ``module:attr``, by entry point,
by ``timm:<name>``, and registered at run time by the user's script, under every executor; bad plug-ins
are configuration errors (exit 2, field named, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from tests import plugins
from typer.testing import CliRunner

from prunezoo.cli import app
from prunezoo.criteria import get_criterion
from prunezoo.data import load_dataset
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.study import run_study
from prunezoo.models import build_model, get_model_spec

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

STUDY = {
    "name": "plug",
    "dataset": {"name": "digits"},
    "model": {"name": "tests.plugins:TinyNet", "options": {"hidden": 16}},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    "methods": [{"name": "gm", "kind": "oneshot", "sparsities": [0.8]}],
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _no_results(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


# -- models ---------------------------------------------------------------------------------------------
def test_model_by_import_path_class_and_function():
    net = build_model("tests.plugins:TinyNet", num_classes=3, input_shape=(1, 4, 4), hidden=5)
    assert isinstance(net, plugins.TinyNet) and net.fc1.weight.shape == (5, 16) and net.fc2.out_features == 3
    assert get_model_spec("tests.plugins:TinyNet").options == {"hidden": 16}
    made = build_model("tests.plugins:make_tiny", num_classes=2, input_shape=(6,))
    assert made.fc1.weight.shape == (8, 6)  # make_tiny's own default hidden=8
    headless = build_model("tests.plugins:make_headless", num_classes=2, input_shape=(6,), width=3)
    assert headless(torch.zeros(1, 6)).shape == (1, 3)  # num_classes not accepted: not passed
    with pytest.raises(ConfigError) as err:
        build_model("tests.plugins:TinyNet", num_classes=3, input_shape=(4,), width=2)
    assert err.value.field == "model.options.width" and "hidden" in err.value.message


def test_import_path_study_local_and_ray_give_equal_results(tmp_path):
    pytest.importorskip("ray", reason="install the ray extra: pip install -e '.[ray]'")
    cfg = parse_config(STUDY)
    local = run_study(cfg, tmp_path / "local", workers=1)
    on_ray = run_study(cfg, tmp_path / "ray", executor="ray", workers=2)  # Ray started (and stopped) here
    assert len(local.rows) == 2 and local.rows == on_ray.rows
    assert {r["method"] for r in local.rows} == {"dense", "gm"}


SMALLEST = "tests.plugins:smallest_magnitude"


def test_dataset_and_criterion_plugins_by_path_in_a_study(tmp_path):
    cfg = parse_config(
        {
            **STUDY,
            "dataset": {"name": "tests.plugins:stripes", "options": {"n": 120}},
            "methods": [
                {
                    "name": "small",
                    "kind": "oneshot",
                    "criterion": "tests.plugins:smallest_magnitude",
                    "sparsities": [0.5],
                },
                {"name": "big", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.5]},
            ],
        }
    )
    rows = {r["method"]: r for r in run_study(cfg, tmp_path, workers=1).rows}
    assert rows["small"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    # keeping the smallest weights is a different pruning from keeping the largest
    assert (
        rows["small"]["test_acc"] != rows["big"]["test_acc"] or rows["small"]["test_loss"] != rows["big"]["test_loss"]
    )
    assert get_criterion("tests.plugins:smallest_magnitude") is plugins.smallest_magnitude


def test_dataset_plugin_returning_torch_datasets_is_materialised():
    data = load_dataset("tests.plugins:stripes_pair", n=60, val_fraction=0.2)
    ref = plugins.stripes(n=60)
    assert data.num_classes == 3 and data.input_shape == (12,) and data.train.x.dtype == torch.float32
    assert len(data.train) + len(data.val) == 30 and torch.equal(data.test.x, ref.test.x)
    assert data.meta["name"] == "tests.plugins:stripes_pair"


# -- run-time registrations reach pool and Ray workers -------------------------------------------------
SCRIPT = """
import json, sys
import torch
from torch import nn
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.study import run_study
from prunezoo.models import register_model


def main():
    # registered inside main(): a worker cannot get it by importing this script
    def my_net(*, num_classes, input_shape, hidden=12):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    register_model("my-net", my_net)
    sys.path.insert(0, sys.argv[2])  # the criterion's module is only on this process's path (not cwd, not PYTHONPATH)
    cfg = parse_config({
        "name": "script", "dataset": {"name": "digits"}, "model": {"name": "my-net"},
        "training": {"epochs": 1, "batch_size": 64}, "finetune": {"epochs": 1, "batch_size": 64},
        "methods": [{"name": "neg", "kind": "oneshot", "criterion": "h3_script_plugin:negative", "sparsities": [0.7]}],
    })
    out = {}
    for executor in sys.argv[3:]:
        workers = 1 if executor == "inline" else 2
        run = run_study(cfg, f"{sys.argv[1]}/{executor}", executor="ray" if executor == "ray" else "local",
                        workers=workers)
        out[executor] = run.rows
    print("ROWS" + json.dumps(out))


if __name__ == "__main__":
    main()
"""
CRITERION_MODULE = """
def negative(ctx):
    return {n: -p.detach().abs() for n, p in ctx.params.items()}
"""


def _run_script(tmp_path: Path, *executors: str) -> dict:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(SCRIPT))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "h3_script_plugin.py").write_text(CRITERION_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out"), str(tmp_path / "elsewhere"), *executors],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("ROWS"))
    return json.loads(line[4:])


def test_model_registered_in_the_script_runs_on_a_process_pool_and_under_ray(tmp_path):
    """One driver script, three executors: inline, a spawned pool, a local Ray it starts itself."""
    from importlib.util import find_spec

    executors = ("inline", "pool", "ray") if find_spec("ray") is not None else ("inline", "pool")
    rows = _run_script(tmp_path, *executors)
    assert len(rows["inline"]) == 2 and {r["method"] for r in rows["inline"]} == {"dense", "neg"}
    for executor in executors[1:]:
        assert rows[executor] == rows["inline"], executor


# -- entry points ---------------------------------------------------------------------------------------
PLUGIN_MODULE = """
import torch
from torch import nn


def wide(num_classes, input_shape, width=6):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))


def blob_data(n=40):
    from tests.plugins import stripes
    return stripes(n=n)


def ones(ctx):
    return {k: torch.ones_like(p) for k, p in ctx.params.items()}
"""


def test_entry_points_are_discovered_lazily_and_listed(tmp_path, monkeypatch):
    (tmp_path / "h3_fake_plugin.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "h3_fake_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: h3-fake-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[prunezoo.models]\nfake-wide = h3_fake_plugin:wide\nfake-broken = h3_fake_plugin:nope\n\n"
        "[prunezoo.datasets]\nfake-blobs = h3_fake_plugin:blob_data\n\n"
        "[prunezoo.criteria]\nfake-ones = h3_fake_plugin:ones\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "h3_fake_plugin" not in sys.modules  # nothing loaded before a name is looked up
    net = build_model("fake-wide", num_classes=4, input_shape=(1, 3, 3))
    assert net[1].weight.shape == (4, 9) and get_model_spec("fake-wide").options == {"width": 6}
    assert load_dataset("fake-blobs", n=30).num_classes == 3
    assert get_criterion("fake-ones").__module__ == "h3_fake_plugin"
    with pytest.raises(ConfigError, match="entry point 'fake-broken'.*AttributeError") as err:
        get_model_spec("fake-broken")
    assert err.value.field == "model.name"
    cfg = parse_config({**STUDY, "model": {"name": "fake-wide"}, "dataset": {"name": "fake-blobs"}})
    assert cfg.model.name == "fake-wide"
    listed = runner.invoke(app, ["list", "models"])
    assert listed.exit_code == 0 and "fake-wide" in listed.output and "mlp" in listed.output
    assert "fake-ones" in runner.invoke(app, ["list", "criteria"]).output


# -- timm ---------------------------------------------------------------------------------------------------
def test_timm_model_builds_offline_with_classes_and_channels():
    pytest.importorskip("timm", reason="timm not installed: pip install 'prunezoo[timm]'")
    net = build_model("timm:resnet18", num_classes=7, input_shape=(1, 32, 32))
    assert net.conv1.in_channels == 1 and net(torch.zeros(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(ConfigError) as err:
        build_model("timm:resnet18", num_classes=7, input_shape=(1, 32, 32), bogus=1)
    assert err.value.field == "model.options.bogus"
    with pytest.raises(ConfigError, match="timm has no architecture"):
        get_model_spec("timm:not-a-net")


def test_timm_missing_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ValueError, match=r"model.name.*pip install 'prunezoo\[timm\]'"):
        parse_config({**STUDY, "model": {"name": "timm:resnet18"}})


# -- bad plug-ins: exit 2, field named, nothing written -------------------------------------------------
BAD = [
    ({"model": {"name": "no_such_module_h3:Net"}}, "model.name", "No module named 'no_such_module_h3'"),
    ({"model": {"name": "tests.plugins:Nope"}}, "model.name", "has no attribute 'Nope'"),
    ({"model": {"name": "tests.plugins:NOT_CALLABLE"}}, "model.name", "not callable"),
    ({"model": {"name": "tests.plugins:not_a_model"}}, "model.name", "not a torch.nn.Module"),
    ({"model": {"name": "tests.plugins:TinyNet", "options": {"depth": 3}}}, "model.options.depth", "unknown option"),
    ({"dataset": {"name": "no_such_module_h3:data"}}, "dataset.name", "No module named"),
    ({"dataset": {"name": "tests.plugins:missing"}}, "dataset.name", "has no attribute 'missing'"),
    ({"dataset": {"name": "tests.plugins:not_a_dataset"}}, "dataset.name", "not DataSplits"),
    (
        {"methods": [{"name": "x", "kind": "oneshot", "criterion": "tests.plugins:absent", "sparsities": [0.5]}]},
        "methods.0.criterion",
        "has no attribute 'absent'",
    ),
    (
        {"methods": [{"name": "x", "kind": "oneshot", "criterion": "tests.plugins:NOT_CALLABLE", "sparsities": [0.5]}]},
        "methods.0.criterion",
        "not callable",
    ),
]


@pytest.mark.parametrize(("patch", "field", "why"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_plugins_exit_2_name_the_field_and_write_nothing(tmp_path, patch, field, why):
    out = tmp_path / "runs"
    res = runner.invoke(app, ["run", str(_write(tmp_path, {**STUDY, **patch})), "--out", str(out), "-q"])
    assert res.exit_code == 2, res.output
    assert field in res.output and why in " ".join(res.output.split()), res.output
    assert _no_results(out)


# -- zoos ------------------------------------------------------------------------------------------------
ZOO = {
    "name": "plugzoo",
    "dataset": {"name": "tests.plugins:stripes", "options": {"n": 60}},
    "model": {"name": "tests.plugins:make_tiny", "options": {"hidden": 4}},
    "epochs": 1,
    "batch_size": 10,
}


def test_zoo_of_a_plugin_model_on_a_plugin_dataset(tmp_path):
    from prunezoo.zoo import layout
    from prunezoo.zoo.generate import generate_zoo, parse_zoo_config

    summary = generate_zoo(parse_zoo_config(ZOO), tmp_path / "zoo", workers=1, progress=False)
    assert summary["models"] == summary["done"] == 1
    (member,) = [p for p in (tmp_path / "zoo").iterdir() if (p / "params.json").exists()]
    assert isinstance(layout.load_model(member), plugins.TinyNet)


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"model": {"name": "tests.plugins:not_a_model"}}, "model.name"), ({"model": {"name": "x_h3:y"}}, "model.name")],
)
def test_zoo_with_a_bad_plugin_exits_2_and_writes_nothing(tmp_path, patch, field):
    out = tmp_path / "zoo"
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump({**ZOO, **patch}))
    res = runner.invoke(app, ["zoo", "generate", str(path), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert field in res.output and _no_results(out)


def test_twin_criterion_by_import_path():
    from prunezoo.zoo.twins import parse_twin_method

    assert parse_twin_method("mp", overrides=[f"criterion={SMALLEST}"]).criterion == SMALLEST
    with pytest.raises(ConfigError) as err:
        parse_twin_method("mp", overrides=["criterion=tests.plugins:absent"])
    assert err.value.field == "method.criterion" and "has no attribute 'absent'" in err.value.message


def test_console_script_finds_a_plugin_module_in_its_working_directory(tmp_path):
    """``prunezoo run`` (the installed script, whose sys.path lacks the cwd) imports ``module:attr`` from the
    directory it runs in, like ``python -m``: the error is then about the attribute, not the module."""
    import shutil

    exe = shutil.which("prunezoo")
    if exe is None:
        pytest.skip("the prunezoo console script is not on PATH (pip install -e .)")
    (tmp_path / "h3_cwd_nets.py").write_text("X = 1\n")
    cfg = _write(tmp_path, {**STUDY, "model": {"name": "h3_cwd_nets:Missing"}})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [exe, "run", str(cfg), "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert res.returncode == 2, res.stderr
    text = " ".join((res.stdout + res.stderr).split())
    assert "model.name" in text and "has no attribute 'Missing'" in text and _no_results(tmp_path / "out")


def test_training_loss_by_import_path_is_used_and_bad_paths_name_the_field(tmp_path):
    from prunezoo.data import load_dataset
    from prunezoo.errors import ConfigError
    from prunezoo.experiments.config import parse_config
    from prunezoo.models import build_model
    from prunezoo.training import Trainer, TrainingConfig

    data = load_dataset("digits")
    histories = {}
    for loss in (None, "tests.plugins:doubled_cross_entropy"):
        model = build_model("mlp", num_classes=10, input_shape=data.input_shape, hidden=[16])
        cfg = TrainingConfig(epochs=1, batch_size=64, lr=0.01, loss=loss)
        histories[loss] = Trainer(model, data.train, cfg, progress=False).fit()
    # the running training loss is the configured loss: exactly twice the default's on the first batch,
    # then the runs differ (larger gradients), so compare the first epoch's loss only to its order
    assert histories["tests.plugins:doubled_cross_entropy"][0]["train_loss"] > 1.5 * histories[None][0]["train_loss"]

    for bad, words in (
        ("tests.plugins:no_such_loss", "no attribute"),
        ("no_such_module_xyz:f", "cannot import"),
        ("cross-entropy", "import path"),
    ):
        with pytest.raises(ConfigError) as err:
            parse_config({"training": {"loss": bad}})
        assert err.value.field == "training.loss" and words in err.value.message
