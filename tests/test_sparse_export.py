"""Sparse inference export: outputs equal to the masked dense model, measured per-layer fallback,
the per-layer report, the CLI export of a run and latency rows of studies."""

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from prunezoo.deploy import SparseConv2d, SparseLinear, sparse_export, sparse_layer_count
from prunezoo.deploy import sparse as sparse_mod
from prunezoo.pruning import prune


def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 24, 3, stride=2, padding=2, dilation=2, bias=False),
        nn.ReLU(),
        nn.Conv2d(24, 24, 3, groups=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(24 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    ).eval()


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(96, 256), nn.ReLU(), nn.Linear(256, 128, bias=False), nn.ReLU(), nn.Linear(128, 10)
    ).eval()


def _masked(model, masks):
    import copy

    ref = copy.deepcopy(model)
    masks.apply(ref)
    return ref


@pytest.mark.parametrize("density", [0.2, 0.05])
def test_export_output_equals_the_masked_dense_model(density):
    for model, shape in ((_mlp(), (2, 96)), (_cnn(), (2, 3, 14, 14))):
        masks = prune(model, density)
        x = torch.randn(*shape)
        # min_speedup=0: every layer with zeros goes sparse, so the sparse kernels themselves are checked
        exported = sparse_export(model, masks, example_input=x, min_speedup=0.0, model_fallback=False, formats=("csr",))
        ref = _masked(model, masks)
        converted = [type(m) for m in exported.modules() if isinstance(m, (SparseLinear, SparseConv2d))]
        convs = sum(isinstance(m, nn.Conv2d) and m.groups == 1 for m in model.modules())
        assert len(converted) == sum(isinstance(m, nn.Linear) for m in model.modules()) + convs
        with torch.inference_mode():
            for batch in (1, 5):  # other batch sizes than the example's, fresh data
                xb = torch.randn(batch, *shape[1:])
                assert torch.allclose(exported(xb), ref(xb), rtol=1e-5, atol=1e-5)
        assert not any(p.requires_grad for p in exported.parameters())


def test_grouped_conv_and_layers_without_zeros_stay_dense_with_a_reason():
    model = _cnn()
    masks = prune(model, 0.1, exclude=["10.weight"])  # last Linear unpruned
    exported = sparse_export(
        model, masks, example_input=torch.randn(1, 3, 14, 14), min_speedup=0.0, model_fallback=False
    )
    layers = exported.deploy_report["layers"]
    assert layers["5.weight"]["format"] == "dense" and "groups" in layers["5.weight"]["reason"]
    assert layers["10.weight"]["format"] == "dense" and layers["10.weight"]["reason"] == "no zeros"
    assert layers["8.weight"]["format"] == "csr" and 0 < layers["8.weight"]["density"] < 0.2


def test_fallback_follows_the_measured_speed_up(monkeypatch):
    model = _mlp()
    masks = prune(model, 0.05)
    x = torch.randn(1, 96)
    measured = {"speedup": 0.5}
    monkeypatch.setattr(
        sparse_mod,
        "paired_speedup",
        lambda d, s, x, repeats: {
            "dense_ms": 1.0,
            "sparse_ms": 1.0 / measured["speedup"],
            "speedup": measured["speedup"],
        },
    )
    slow = sparse_export(model, masks, example_input=x)
    assert sparse_layer_count(slow) == 0
    for entry in slow.deploy_report["layers"].values():
        assert entry["format"] == "dense" and "fallback" in entry["reason"] and entry["speedup"] == 0.5
    measured["speedup"] = 3.0
    fast = sparse_export(model, masks, example_input=x)
    assert sparse_layer_count(fast) == 3
    assert all(e["format"] == "csr" for e in fast.deploy_report["layers"].values())
    measured["speedup"] = 1.05  # faster, but not by the required margin
    assert sparse_layer_count(sparse_export(model, masks, example_input=x, min_speedup=1.1)) == 0


def test_whole_model_goes_back_to_dense_when_the_export_is_slower_end_to_end(monkeypatch):
    model = _mlp()
    masks = prune(model, 0.05)
    end_to_end = {"speedup": 0.8}

    def fake(dense, sparse, x, repeats):  # layers look 3x faster alone; the whole model as measured
        s = end_to_end["speedup"] if isinstance(dense, nn.Sequential) else 3.0
        return {"dense_ms": 1.0, "sparse_ms": 1.0 / s, "speedup": s}

    monkeypatch.setattr(sparse_mod, "paired_speedup", fake)
    slow = sparse_export(model, masks, example_input=torch.randn(1, 96))
    assert sparse_layer_count(slow) == 0 and slow.deploy_report["model"]["fallback"] is True
    assert all("model-level fallback" in e["reason"] for e in slow.deploy_report["layers"].values())
    end_to_end["speedup"] = 1.5
    fast = sparse_export(model, masks, example_input=torch.randn(1, 96))
    assert sparse_layer_count(fast) == 3 and fast.deploy_report["model"]["fallback"] is False
    assert (
        sparse_layer_count(sparse_export(model, masks, example_input=torch.randn(1, 96), model_fallback=False)) == 3
    )  # layer choices kept


def test_real_timing_picks_sparse_for_a_very_sparse_wide_layer_and_dense_for_a_tiny_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 4)).eval()
    masks = prune(model, 0.01, scheme="uniform")
    exported = sparse_export(model, masks, example_input=torch.randn(1, 2048), repeats=9)
    layers = exported.deploy_report["layers"]
    # 2048x2048 at 1 % density: ~40k multiply-adds instead of 4M; a 2048x4 layer is too small to gain
    assert layers["0.weight"]["format"] == "csr", layers["0.weight"]
    assert layers["2.weight"]["format"] == "dense", layers["2.weight"]
    assert exported.deploy_report["threads"] == 1


def test_bsr_is_a_candidate_only_for_block_shaped_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64)).eval()
    blocks = torch.rand(16, 16) < 0.2
    block_mask = blocks.repeat_interleave(4, 0).repeat_interleave(4, 1)
    x = torch.randn(3, 64)
    exported = sparse_export(
        model, {"0.weight": block_mask}, example_input=x, min_speedup=0.0, model_fallback=False, formats=("bsr",)
    )
    assert exported.deploy_report["layers"]["0.weight"]["format"] == "bsr"
    with torch.inference_mode():
        ref = nn.functional.linear(x, model[0].weight * block_mask, model[0].bias)
        assert torch.allclose(exported(x), ref, rtol=1e-5, atol=1e-5)
    unstructured = prune(model, 0.2)
    e2 = sparse_export(model, unstructured, example_input=x, min_speedup=0.0, model_fallback=False)
    assert set(e2.deploy_report["layers"]["0.weight"]["timings"]) == {"csr"}


def test_semi_structured_needs_cuda_and_says_so_on_cpu():
    assert "CUDA" in sparse_mod.semi_structured_available("cpu")
    model = nn.Sequential(nn.Linear(64, 32)).eval()
    masks = prune(model, 0.5, pattern="2:4")
    exported = sparse_export(model, masks, example_input=torch.randn(1, 64), formats=("semi-structured",))
    entry = exported.deploy_report["layers"]["0.weight"]
    assert entry["format"] == "dense" and entry["reason"] == "no candidate format allowed"


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
    reason="2:4 semi-structured kernels need a CUDA GPU of compute capability >= 8.0",
)
def test_semi_structured_export_on_cuda_matches_dense():  # pragma: no cover - CPU machines skip it
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 128)).half().cuda().eval()
    masks = prune(model, 0.5, pattern="2:4")
    x = torch.randn(64, 512, device="cuda", dtype=torch.half)
    exported = sparse_export(model, masks, example_input=x, min_speedup=0.0, model_fallback=False)
    assert {e["format"] for e in exported.deploy_report["layers"].values()} == {"semi-structured"}


def test_bad_arguments_are_rejected():
    model = _mlp()
    x = torch.randn(1, 96)
    with pytest.raises(ValueError, match="formats"):
        sparse_export(model, example_input=x, formats=("coo",))
    with pytest.raises(ValueError, match="min_speedup"):
        sparse_export(model, example_input=x, min_speedup=-1)
    with pytest.raises(ValueError, match="threads"):
        sparse_export(model, example_input=x, threads=0)
    with pytest.raises(ValueError, match="deploy_report"):
        sparse_mod.deploy_report(model)


def test_export_checks_its_output(monkeypatch):
    model = _mlp()
    masks = prune(model, 0.1)
    real = SparseLinear.forward
    monkeypatch.setattr(SparseLinear, "forward", lambda self, x: real(self, x) + 1e-3)  # a broken kernel
    with pytest.raises(RuntimeError, match="changed the output"):
        sparse_export(model, masks, example_input=torch.randn(2, 96), min_speedup=0.0, model_fallback=False)


# -- runs and studies --------------------------------------------------------------------------------
def _study(tmp_path, **method):
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    cfg = parse_config(
        {
            "name": "sx",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [256]}},
            "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
            "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
            "methods": [{"name": "m", "kind": "oneshot", "sparsities": [0.95], **method}],
        }
    )
    return run_study(cfg, tmp_path, workers=1)


def test_study_rows_record_sparse_export_latency_only_when_asked(tmp_path):
    plain = _study(tmp_path / "a")
    assert all(r["latency_ms"] is None for r in plain.rows)
    res = _study(tmp_path / "b", sparse_export=True)
    row = next(r for r in res.rows if r["method"] == "m")
    assert row["latency_ms"] > 0 and row["latency_dense_ms"] > 0 and row["latency_speedup"] > 0
    assert next(r for r in res.rows if r["method"] == "dense")["latency_ms"] is None
    job = next(p for p in (res.directory / "runs").iterdir() if p.name.startswith("oneshot"))
    report = json.loads((job / "result.json").read_text())["sparse_export"][""]
    assert set(report["layers"]) == {"fc1.weight", "fc2.weight"}


def test_cli_export_writes_a_loadable_sparse_model(tmp_path):
    from prunezoo.cli import app
    from prunezoo.experiments.jobs import JobContext
    from prunezoo.training.checkpoint import load_state

    res = _study(tmp_path / "s")
    job = next(p for p in (res.directory / "runs").iterdir() if p.name.startswith("oneshot"))
    out = tmp_path / "exp" / "m.pt"
    r = CliRunner().invoke(app, ["export", str(job), "--sparse", "--out", str(out), "--batch", "4"])
    assert r.exit_code == 0, r.output
    assert "fc1.weight" in r.output and "latency" in r.output
    record = json.loads(out.with_name("m.pt.json").read_text())
    assert record["latency_batch"] == 4 and set(record["deploy_report"]["layers"]) == {"fc1.weight", "fc2.weight"}
    exported = torch.load(out, weights_only=False)
    ctx = JobContext(json.loads((job / "job.json").read_text())["spec"], job, job.parent)
    model = ctx.build_model()
    model.load_state_dict(load_state(job / "final.safetensors"))
    x = ctx.splits.test.get_batch(torch.arange(8))[0]
    with torch.inference_mode():
        assert torch.allclose(exported(x), model.eval()(x), rtol=1e-5, atol=1e-5)
    for args, field in (
        (["export", str(job)], "--sparse"),
        (["export", str(tmp_path), "--sparse"], "run"),
        (["export", str(job), "--sparse", "--batch", "0"], "--batch"),
    ):
        bad = CliRunner().invoke(app, args)
        assert bad.exit_code == 2 and field in bad.output, (args, bad.output)
