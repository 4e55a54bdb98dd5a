"""ONNX export: masked, torch-pruned and channel-compacted models, verified with onnxruntime; the CLI on a run."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from typer.testing import CliRunner

from prunezoo.errors import ConfigError
from prunezoo.models import build_model
from prunezoo.pruning import prune

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from prunezoo.deploy.onnx import OnnxVerificationError, export_onnx  # noqa: E402


def run_onnx(path, x: torch.Tensor):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def masked_copy(model: nn.Module, masks) -> nn.Module:
    ref = copy.deepcopy(model).eval()
    masks.apply(ref)
    return ref


def test_a_pruned_lenet_exports_with_its_zeros_and_onnxruntime_matches(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet-300-100", num_classes=10, input_shape=(1, 28, 28)).train()
    masks = prune(model, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "lenet.onnx", masks=masks)
    assert rec["max_abs_diff"] <= 1e-4 and rec["dynamic_batch"] and rec["exporter"] == "torchscript"
    assert rec["weight_sparsity"] == pytest.approx(masks.sparsity(), abs=1e-6)  # the zeros are in the file
    assert rec["bytes"] == (tmp_path / "lenet.onnx").stat().st_size
    # the caller's model is untouched: not masked, still in train mode
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = torch.randn(7, 1, 28, 28)  # another batch size: the batch axis is dynamic
    with torch.no_grad():
        torch.testing.assert_close(
            run_onnx(tmp_path / "lenet.onnx", x), masked_copy(model, masks)(x), rtol=1e-4, atol=1e-4
        )


def test_a_torch_pruned_model_exports_without_its_reparametrisation(tmp_path):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5)).eval()
    torch_prune.global_unstructured(
        [(model[0], "weight"), (model[2], "weight")], pruning_method=torch_prune.L1Unstructured, amount=0.8
    )
    x = torch.randn(4, 20)
    with torch.no_grad():
        expected = model(x)
    rec = export_onnx(model, x[:1], tmp_path / "mlp.onnx", opset=17)
    assert rec["opset"] == 17 and rec["weight_sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert torch_prune.is_pruned(model)  # only the exported copy lost torch's hooks
    torch.testing.assert_close(run_onnx(tmp_path / "mlp.onnx", x), expected, rtol=1e-4, atol=1e-4)


def test_a_channel_compacted_cnn_exports_smaller_and_computes_the_masked_one(tmp_path):
    torch.manual_seed(0)
    dense = build_model("cnn-s", num_classes=10, input_shape=(3, 32, 32), activation="relu").eval()
    masked = copy.deepcopy(dense)
    with torch.no_grad():  # structured-zero: half the output channels of each conv (weights and bias) zeroed
        for name in ("conv1", "conv2"):
            layer = masked.get_submodule(name)
            layer.weight[::2] = 0
            layer.bias[::2] = 0
    x = torch.randn(6, 3, 32, 32)
    full = export_onnx(masked, x[:2], tmp_path / "masked.onnx")
    small = export_onnx(masked, x[:2], tmp_path / "compact.onnx", compact=True)
    assert small["compact"] and small["parameters"] < full["parameters"] == sum(p.numel() for p in dense.parameters())
    assert small["bytes"] < full["bytes"]
    with torch.no_grad():
        expected = masked(x)
    torch.testing.assert_close(run_onnx(tmp_path / "compact.onnx", x), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run_onnx(tmp_path / "masked.onnx", x), expected, rtol=1e-4, atol=1e-4)


def test_prunezoo_reparametrised_layers_are_squashed_in_the_export_only(tmp_path):
    from prunezoo.reparam import from_variational, to_variational
    from prunezoo.reparam.srste import apply_srste, squash_srste, srste_layers

    torch.manual_seed(0)
    x = torch.randn(5, 16)
    sr = apply_srste(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval(), "2:4")
    rec = export_onnx(sr, x[:1], tmp_path / "sr.onnx")
    assert srste_layers(sr)  # the caller's model keeps its SR-STE layers
    plain = copy.deepcopy(sr)
    squash_srste(plain)
    assert rec["weight_sparsity"] == pytest.approx(0.5)
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(tmp_path / "sr.onnx", x), plain(x), rtol=1e-4, atol=1e-4)
    vd = to_variational(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)))
    with torch.no_grad():
        for layer in (vd[0], vd[2]):
            layer.log_sigma2.copy_(torch.linspace(-12, 6, layer.log_sigma2.numel()).view_as(layer.log_sigma2))
    reference, vd_masks = from_variational(vd)
    rec = export_onnx(vd, x[:1], tmp_path / "vd.onnx")
    assert 0 < rec["weight_sparsity"] == pytest.approx(vd_masks.sparsity())
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(tmp_path / "vd.onnx", x), reference.eval()(x), rtol=1e-4, atol=1e-4)


class Noisy(nn.Module):
    """Not a function of its input (fresh noise every call): no exported graph can match it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) + torch.rand_like(self.fc(x))


def test_an_export_onnxruntime_disagrees_with_raises_and_writes_nothing(tmp_path):
    with pytest.raises(OnnxVerificationError, match="differs from PyTorch"):
        export_onnx(Noisy(), torch.randn(3, 4), tmp_path / "noisy.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_name_the_field_and_write_nothing(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    for kwargs, field in (
        ({"opset": 3}, "opset"),
        ({"exporter": "tflite"}, "exporter"),
    ):
        with pytest.raises(ConfigError) as err:
            export_onnx(model, torch.randn(2, 4), tmp_path / "m.onnx", **kwargs)
        assert err.value.field == field
    with pytest.raises(ConfigError, match="example_input"):
        export_onnx(model, torch.randn(0, 4), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'prunezoo\[onnx\]'"):
        export_onnx(nn.Linear(4, 3), torch.randn(2, 4), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_dynamo_exporter_is_verified_the_same_way(tmp_path):
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    masks = prune(model, 0.25)
    rec = export_onnx(model, torch.randn(2, 12), tmp_path / "d.onnx", masks=masks, exporter="dynamo")
    assert rec["exporter"] == "dynamo" and rec["max_abs_diff"] <= 1e-4
    assert rec["weight_sparsity"] == pytest.approx(0.75, abs=1e-6)
    x = torch.randn(5, 12)
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(tmp_path / "d.onnx", x), masked_copy(model, masks)(x), rtol=1e-4, atol=1e-4)


# -- the CLI on finished runs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    cfg = parse_config(
        {
            "name": "onnx",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [32]}},
            "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
            "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
            "methods": [
                {"name": "m", "kind": "oneshot", "sparsities": [0.9]},
                {"name": "s", "kind": "structured", "criterion": "l1", "sparsities": [0.5]},
            ],
        }
    )
    res = run_study(cfg, tmp_path_factory.mktemp("study"), workers=1)
    return {p.name.split("-")[0]: p for p in (res.directory / "runs").iterdir() if p.is_dir()}


def test_cli_exports_a_masked_run_and_a_structured_run(tiny_study, tmp_path):
    from prunezoo.cli import app
    from prunezoo.experiments.jobs import JobContext
    from prunezoo.structured import load_compact
    from prunezoo.training.checkpoint import load_state

    for kind in ("oneshot", "structured"):
        run = tiny_study[kind]
        out = tmp_path / f"{kind}.onnx"
        r = CliRunner().invoke(app, ["export", str(run), "--onnx", str(out), "--batch", "2"])
        assert r.exit_code == 0, r.output
        assert "onnxruntime matches PyTorch" in r.output
        record = json.loads((tmp_path / f"{kind}.onnx.json").read_text())
        assert record["path"] == str(out) and record["input_shape"][0] == 2
        ctx = JobContext(json.loads((run / "job.json").read_text())["spec"], run, run.parent)
        if kind == "oneshot":
            model = ctx.build_model()
            model.load_state_dict(load_state(run / "final.safetensors"))
            assert record["weight_sparsity"] == pytest.approx(0.9, abs=0.01)
        else:
            model = load_compact(run / "compact")
            assert record["parameters"] == sum(p.numel() for p in model.parameters())
        x = ctx.splits.test.get_batch(torch.arange(9))[0]
        with torch.no_grad():
            torch.testing.assert_close(run_onnx(out, x), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_cli_export_errors_exit_2_and_name_the_option(tiny_study, tmp_path, monkeypatch):
    from prunezoo.cli import app

    run = tiny_study["oneshot"]
    for args, field in (
        (["export", str(run), "--sparse", "--onnx", str(tmp_path / "a.onnx")], "--onnx"),
        (["export", str(tmp_path), "--onnx", str(tmp_path / "a.onnx")], "run"),
        (["export", str(run), "--onnx", str(tmp_path / "a.onnx"), "--level", "1"], "no final weights"),
        (["export", str(tiny_study["structured"]), "--onnx", str(tmp_path / "a.onnx"), "--level", "1"], "--level"),
    ):
        bad = CliRunner().invoke(app, args)
        assert bad.exit_code == 2 and field in bad.output, (args, bad.output)
    monkeypatch.setitem(sys.modules, "onnx", None)
    bad = CliRunner().invoke(app, ["export", str(run), "--onnx", str(tmp_path / "a.onnx")])
    assert bad.exit_code == 2 and "--onnx" in bad.output and "pip install 'prunezoo[onnx]'" in bad.output
    assert not list(tmp_path.glob("*.onnx*"))
