"""Structured pruning: criteria properties, physical removal via Torch-Pruning, slimming, merging,
ThiNet, compact export and latency. Small models, batches <= 8, 32x32 inputs."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import randomize_bn
from prunezoo.errors import ConfigError
from prunezoo.models import build_model
from prunezoo.structured import (
    CHANNEL_CRITERIA,
    BatchNormL1,
    ChannelContext,
    allocate_from_sensitivity,
    load_compact,
    measure_latency,
    merge_neurons,
    prune_channels,
    save_compact,
    sensitivity_scan,
    thinet_prune,
)


def _score(name: str, module: nn.Module, **kw) -> torch.Tensor:
    return CHANNEL_CRITERIA[name].fn(ChannelContext("m", module, module.weight, **kw))


# ---------------------------------------------------------------------------------------- criteria


def test_l1_l2_by_hand():
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -2.0], [0.0, 2.0]]], [[[3.0, 0.0], [0.0, -4.0]]]]))
    assert torch.allclose(_score("l1", conv), torch.tensor([5.0, 7.0]))
    assert torch.allclose(_score("l2", conv), torch.tensor([3.0, 5.0]))


def test_fpgm_removes_the_duplicated_filter():
    model = nn.Sequential(nn.Conv2d(3, 5, 1, bias=False), nn.ReLU(), nn.Conv2d(5, 2, 1))
    base, e1, e2 = torch.full((3,), 0.1), torch.tensor([5.0, 0, 0]), torch.tensor([0, 5.0, 0])
    with torch.no_grad():  # filters m, m, m+5e1, m-5e1, m+5e2: the duplicates sit at the median
        model[0].weight.copy_(torch.stack([base, base, base + e1, base - e1, base + e2])[:, :, None, None])
    s = _score("fpgm", model[0])
    assert set(s.argsort()[:2].tolist()) == {0, 1}
    res = prune_channels(model, torch.randn(1, 3, 8, 8), {"0": 0.2}, criterion="fpgm")
    assert res.removed["0"][0] in (0, 1) and model[0].out_channels == 4


def test_apoz_prunes_the_always_dead_channel():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        model[0].weight[2].zero_()
        model[0].bias[2] = -1.0  # channel 2 is always <= 0, i.e. 0 after the ReLU
    xs = [(torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))]
    acts = [model[0](xs[0][0]).detach()]
    s = _score("apoz", model[0], activations=acts)
    assert s[2] == 0.0 and (s[[0, 1, 3]] > 0.2).all()
    res = prune_channels(model, xs[0][0][:1], {"0": 0.25}, criterion="apoz", batches=xs)
    assert res.removed["0"] == [2]
    with pytest.raises(ConfigError):
        prune_channels(copy.deepcopy(model), xs[0][0][:1], 0.25, criterion="apoz")


def test_taylor_is_abs_mean_grad_times_output_and_l2_normalised_per_layer():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6,))
    out = bn(conv(x))
    out.retain_grad()
    F.cross_entropy(model[5](model[4](model[3](model[2](out)))), y).backward()
    expect = (out.grad * out).mean(dim=(0, 2, 3)).abs()
    s = _score("taylor", conv, activations=[out.detach()], gradients=[out.grad])
    assert torch.allclose(s, expect / expect.norm(), atol=1e-6)
    assert abs(float(s.norm()) - 1.0) < 1e-6
    # Through the adapter: taps after the BN, result still per-layer normalised.
    import torch_pruning as tp

    from prunezoo.structured.importance import ChannelImportance

    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x[:1])
    imp = ChannelImportance("taylor").prepare(model, dg, [(x, y)])
    assert imp.contexts[conv].bn is bn
    assert torch.allclose(imp.layer_scores(conv), expect / expect.norm(), atol=1e-5)


def test_random_is_seeded_and_bn_scale_reads_gamma():
    conv = nn.Conv2d(2, 6, 1)
    a = _score("random", conv, generator=torch.Generator().manual_seed(1))
    b = _score("random", conv, generator=torch.Generator().manual_seed(1))
    c = _score("random", conv, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -3.0, 0.5, 0.0, -0.1, 2.0]))
    assert torch.equal(_score("bn-scale", conv, bn=bn), bn.weight.abs())
    assert _score("bn-scale", conv) is None


# ---------------------------------------------------------------------------------- prune_channels


def test_prune_resnet20_residual_coupling_and_classifier_kept():
    torch.manual_seed(0)
    model = build_model("resnet20", input_shape=(3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    res = prune_channels(model, x[:1], 0.5, criterion="l1")
    assert res.params_after < 0.3 * res.params_before and res.flops_after < 0.3 * res.flops_before
    assert model(x).shape == (2, 10) and model.fc.out_features == 10
    assert model.fc.in_features == 32  # classifier inputs pruned with the last stage, outputs kept
    # Every conv feeding a residual sum of stage 1 keeps the same channels (one coupled group).
    stage1 = [res.channels_after["conv1"]] + [res.channels_after[f"layer1.{i}.conv2"] for i in range(3)]
    assert stage1 == [8, 8, 8, 8]
    assert res.channels_after == {n: max(c // 2, 1) if n != "fc" else 10 for n, c in res.channels_before.items()}


def test_prune_vgg16_runs_and_ignored_layers_keep_outputs():
    torch.manual_seed(0)
    model = build_model("vgg16-cifar", input_shape=(3, 32, 32), width_multiplier=0.25)
    x = torch.randn(2, 3, 32, 32)
    res = prune_channels(model, x[:1], 0.5, ignored_layers=["fc", "features.conv3"])
    assert res.channels_after["features.conv3"] == res.channels_before["features.conv3"]
    assert res.channels_after["features.conv4"] == res.channels_before["features.conv4"] // 2
    assert model.features.bn4.num_features == model.features.conv4.out_channels
    assert res.flops_after < res.flops_before and model(x).shape == (2, 10)


def test_global_scope_ranks_across_layers_layer_scope_does_not():
    def make():
        torch.manual_seed(0)
        m = build_model("vgg16-cifar", input_shape=(3, 32, 32), width_multiplier=0.125)
        with torch.no_grad():  # every γ small except conv2's: global ranking must spare conv2
            for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)):
                bn.weight.uniform_(0.01, 0.1)
            m.features.bn2.weight.uniform_(5.0, 6.0)
        return m

    x = torch.zeros(1, 3, 32, 32)
    glob = prune_channels(make(), x, 0.5, criterion="bn-scale", scope="global")
    local = prune_channels(make(), x, 0.5, criterion="bn-scale", scope="layer")
    assert glob.channels_after["features.conv2"] == 8
    assert local.channels_after["features.conv2"] == 4
    kept = lambda r: sum(v for k, v in r.channels_after.items() if k != "fc")
    assert abs(kept(glob) - kept(local)) <= 2  # same overall budget, distributed differently
    with pytest.raises(ConfigError):
        prune_channels(make(), x, 0.5, scope="everywhere")


# ------------------------------------------------------------------------------------------ slimming


def test_batchnorm_l1_adds_lambda_sum_abs_gamma_and_its_subgradient():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -2.0, 1.0, -0.25]))
    lam = 1e-2
    term = BatchNormL1(lam).extra_loss(SimpleNamespace(model=model), 0)
    assert torch.allclose(term, torch.tensor(lam * (3.75 + 2.0)))
    term.backward()
    assert torch.allclose(model[1].weight.grad, lam * torch.sign(model[1].weight))
    assert model[0].weight.grad is None
    assert BatchNormL1(0.0).extra_loss(SimpleNamespace(model=model), 0) is None


# ------------------------------------------------------------------------------ sensitivity/allocation


def test_sensitivity_scan_and_allocation_meet_flops_budget():
    torch.manual_seed(0)
    model = build_model("cnn-s", input_shape=(3, 32, 32), activation="relu").eval()
    x = torch.randn(8, 3, 32, 32)
    ref = model(x).detach()

    def evaluate(m: nn.Module) -> float:  # output fidelity: higher is better
        with torch.no_grad():
            return -float(F.mse_loss(m(x), ref))

    scan = sensitivity_scan(model, x[:1], evaluate, ratios=(0.25, 0.5, 0.75))
    assert set(scan) == {"conv1", "conv2", "conv3", "fc1"} and scan.dense_metric == 0.0
    assert all(scan[n][0.75] <= 0.0 for n in scan)
    alloc = allocate_from_sensitivity(scan, flops_budget=0.6, model=model, example_input=x[:1])
    pruned = copy.deepcopy(model)
    res = prune_channels(pruned, x[:1], alloc)
    assert res.flops_after <= 0.6 * res.flops_before
    assert res.flops_after > 0.2 * res.flops_before  # greedy stops once the budget is met
    by_ratio = allocate_from_sensitivity(scan, target_ratio=0.5)
    removed = sum(r * scan.channels[n] for n, r in by_ratio.items())
    assert removed >= 0.5 * sum(scan.channels.values())
    with pytest.raises(ConfigError):
        allocate_from_sensitivity(scan)


# --------------------------------------------------------------------------------------- merge/thinet


def test_merge_exact_and_scaled_duplicates_preserves_outputs():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(20,), hidden=[16, 8])
    with torch.no_grad():
        model.fc1.weight[5], model.fc1.bias[5] = model.fc1.weight[2], model.fc1.bias[2]
        model.fc1.weight[9], model.fc1.bias[9] = 3 * model.fc1.weight[1], 3 * model.fc1.bias[1]
    x = torch.randn(8, 20)
    before = model(x).detach()
    merge_neurons(model, "fc1", "fc2", keep=14)
    assert model.fc1.out_features == 14 and model.fc2.in_features == 14
    assert torch.allclose(model(x), before, atol=1e-5)
    merge_neurons(model, "fc1", "fc2", keep=10)  # no duplicates left: now it must approximate
    assert not torch.allclose(model(x), before, atol=1e-5)


def test_thinet_refit_reduces_reconstruction_error():
    torch.manual_seed(0)
    model = build_model("vgg16-cifar", input_shape=(3, 32, 32), width_multiplier=0.125).eval()
    randomize_bn(model)
    xs = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    seen = {}
    model.features.conv3.register_forward_hook(lambda m, i, o: seen.__setitem__("y", o.detach()))
    with torch.no_grad():
        model(torch.cat(xs))
    y0 = seen["y"]
    res = thinet_prune(model, "features.conv2", "features.conv3", xs, 0.5)
    assert model.features.conv2.out_channels == 4 and model.features.bn2.num_features == 4
    assert model.features.conv3.in_channels == 4 and len(res.kept) == 4
    assert res.error_refit <= res.error_no_refit and res.error_refit < 0.9 * res.error_no_refit
    with torch.no_grad():
        model(torch.cat(xs))
    measured = float((seen["y"] - y0).pow(2).sum() / y0.pow(2).sum())
    assert measured == pytest.approx(res.error_refit, rel=1e-3)
    with pytest.raises(ConfigError):  # residual-coupled channels cannot be reconstructed by one layer
        thinet_prune(build_model("resnet20", input_shape=(3, 32, 32)), "layer1.0.conv2", "layer1.1.conv1", [xs[0]], 0.5)


# ---------------------------------------------------------------------------------------------- export


def test_export_round_trip_resnet20(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20", input_shape=(3, 32, 32)).eval()
    randomize_bn(model)
    x = torch.randn(4, 3, 32, 32)
    prune_channels(model, x[:1], 0.5)
    save_compact(model, tmp_path / "r20", {"model": "resnet20", "num_classes": 10, "input_shape": [3, 32, 32]})
    assert not list((tmp_path / "r20").glob("*.pt*"))  # safetensors + JSON only, no pickle
    loaded = load_compact(tmp_path / "r20")
    assert loaded.layer2[0].conv1.out_channels == 16
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_compact_equals_masked_original_without_bn():
    # Zeroing a conv channel's weights AND bias makes that channel exactly 0; ReLU, max-pool and
    # the next layer map 0 to 0, so removing it is exact. With BN the zeroed channel would emit
    # β − γμ/σ (a nonzero constant that the next layer sees), hence a BN-free model (cnn-s, ReLU).
    torch.manual_seed(0)
    dense = build_model("cnn-s", input_shape=(3, 32, 32), activation="relu").eval()
    x = torch.randn(8, 3, 32, 32)
    compact = copy.deepcopy(dense)
    res = prune_channels(compact, x[:1], 0.5)
    assert res.removed and res.params_after < res.params_before
    masked = copy.deepcopy(dense)
    with torch.no_grad():
        for name, idxs in res.removed.items():
            layer = masked.get_submodule(name)
            layer.weight[idxs] = 0
            layer.bias[idxs] = 0
        assert torch.allclose(compact(x), masked(x), atol=1e-6)
        assert not torch.allclose(compact(x), dense(x), atol=1e-3)


def test_latency_positive_and_threads_restored():
    threads = torch.get_num_threads()
    model = build_model("cnn-s", input_shape=(3, 32, 32)).train()
    out = measure_latency(model, torch.randn(2, 3, 32, 32), warmup=1, repeats=5, threads=1)
    assert 0 < out["median_ms"] <= out["p90_ms"]
    assert torch.get_num_threads() == threads and model.training
