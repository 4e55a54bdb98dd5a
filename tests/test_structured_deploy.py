"""Deployment export (BN folding, channels-last), paired latency, study-level structured methods
(aliases, slimming, ThiNet, merging, sensitivity allocation with FLOPs/latency budgets)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import randomize_bn
from prunezoo.errors import ConfigError
from prunezoo.models import build_model
from prunezoo.structured import (
    allocate_from_sensitivity,
    apply_structured,
    canonical_structured_criterion,
    compare_latency,
    count_batchnorm,
    deploy,
    prune_channels,
    sensitivity_scan,
    structured_criterion_names,
)


def test_deploy_folds_every_bn_of_compact_resnet_and_keeps_outputs():
    torch.manual_seed(0)
    model = build_model("resnet20", input_shape=(3, 32, 32)).eval()
    randomize_bn(model)
    x = torch.randn(4, 3, 32, 32)
    prune_channels(model, x[:1], 0.5)
    out = deploy(model)
    assert count_batchnorm(model) == 21 and count_batchnorm(out) == 0  # original untouched
    conv = next(m for m in out.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = model(x)
        assert torch.allclose(out(x), ref, atol=1e-4 * float(ref.abs().max()))
    plain = deploy(model, fold_bn=False, channels_last=False)
    assert count_batchnorm(plain) == 21 and not isinstance(plain, type(out))


def test_compare_latency_pairs_and_restores_state():
    threads = torch.get_num_threads()
    big = build_model("cnn-s", input_shape=(3, 32, 32)).train()
    small = copy.deepcopy(big).eval()
    prune_channels(small, torch.zeros(1, 3, 32, 32), 0.75)
    t = compare_latency(big, small, torch.randn(8, 3, 32, 32), warmup=1, repeats=6)
    assert t["baseline_ms"] > 0 and t["candidate_ms"] > 0 and t["speedup"] > 0 and t["cpu_speedup"] > 0
    assert big.training and torch.get_num_threads() == threads


def test_aliases_and_procedures_are_study_criterion_names():
    names = structured_criterion_names()
    for n in (
        "l1-filter",
        "l2-filter",
        "fpgm",
        "apoz",
        "taylor",
        "slimming",
        "network-slimming",
        "thinet",
        "merge",
        "random",
        "bn-scale",
    ):
        assert n in names
    assert canonical_structured_criterion("l1-filter") == "l1"
    with pytest.raises(ConfigError, match="criterion"):
        canonical_structured_criterion("l3-filter")


def test_alias_prunes_exactly_like_canonical_and_slimming_is_global_gamma():
    torch.manual_seed(0)
    base = build_model("resnet-cifar", input_shape=(3, 16, 16), depth=8).eval()
    randomize_bn(base)
    x = torch.zeros(1, 3, 16, 16)
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    ra = apply_structured(a, x, 0.5, "l1-filter")
    rb = apply_structured(b, x, 0.5, "l1")
    assert ra.removed == rb.removed and ra.params_after == rb.params_after
    s = copy.deepcopy(base)
    rs = apply_structured(s, x, 0.3, "slimming")
    assert rs.criterion == "bn-scale" and rs.scope == "global"
    # global |γ| ranking: layers keep different fractions (layer scope would keep 70 % everywhere)
    kept = {n: rs.channels_after[n] / c for n, c in rs.channels_before.items() if n != "fc"}
    assert len({round(v, 3) for v in kept.values()}) > 1


def test_thinet_prunes_only_uncoupled_block_convs_and_refits():
    torch.manual_seed(0)
    model = build_model("resnet-cifar", input_shape=(3, 16, 16), depth=8).eval()
    batches = [(torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long))]
    res = apply_structured(model, batches[0][0][:1], 0.5, "thinet", batches=batches)
    after = res.channels_after
    # conv1 of each block feeds only conv2; conv2 outputs join the residual sum and stay
    assert after["layer1.0.conv1"] == 8 and after["layer3.0.conv1"] == 32
    assert after["layer1.0.conv2"] == 16 and after["conv1"] == 16 and after["layer2.0.shortcut.conv"] == 32
    assert res.flops_after < res.flops_before
    assert model(batches[0][0]).shape == (4, 10)


def test_merge_shrinks_hidden_layers_of_an_mlp_and_rejects_convnets():
    torch.manual_seed(0)
    mlp = build_model("mlp", input_shape=(20,), hidden=[32, 16])
    res = apply_structured(mlp, torch.zeros(1, 20), 0.5, "merge")
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [16, 8, 10] and res.params_after < res.params_before
    with pytest.raises(ConfigError, match="no layer pair"):
        apply_structured(build_model("resnet20", input_shape=(3, 32, 32)), torch.zeros(1, 3, 32, 32), 0.5, "merge")


def test_sensitivity_allocation_in_study_meets_flops_budget_and_options_are_checked():
    torch.manual_seed(0)
    model = build_model("cnn-s", input_shape=(3, 32, 32), activation="relu").eval()
    x = torch.randn(8, 3, 32, 32)
    ref = model(x).detach()

    def fidelity(m: nn.Module) -> float:
        with torch.no_grad():
            return -float((m(x) - ref).pow(2).mean())

    res = apply_structured(
        model,
        x[:1],
        0.4,
        "l1",
        evaluate_fn=fidelity,
        options={"allocation": "sensitivity", "budget": "flops", "scan_ratios": [0.25, 0.5]},
    )
    assert res.flops_after <= 0.6 * res.flops_before
    with pytest.raises(ConfigError, match="options.budget"):
        apply_structured(
            copy.deepcopy(model),
            x[:1],
            0.4,
            "l1",
            evaluate_fn=fidelity,
            options={"allocation": "sensitivity", "budget": "energy"},
        )


def test_latency_budget_allocation_prunes_until_the_latency_model_meets_it():
    torch.manual_seed(0)
    model = build_model("cnn-s", input_shape=(3, 32, 32), activation="relu").eval()
    x = torch.randn(8, 3, 32, 32)
    scan = sensitivity_scan(model, x[:1], lambda m: 0.0, ratios=(0.25, 0.5, 0.75))
    dense = scan.dense_flops
    from prunezoo.models.flops import dense_flops

    # A deterministic stand-in for timing: latency shrinks slower than FLOPs (fixed 30 % overhead).
    def latency_model(m: nn.Module) -> float:
        return 0.3 + 0.7 * dense_flops(m, (3, 32, 32)) / dense

    by_flops = allocate_from_sensitivity(scan, flops_budget=0.85, model=model, example_input=x[:1])
    by_latency = allocate_from_sensitivity(
        scan, latency_budget=0.85, model=model, example_input=x[:1], latency_fraction_fn=latency_model
    )
    pruned = copy.deepcopy(model)
    prune_channels(pruned, x[:1], by_latency)
    assert latency_model(pruned) <= 0.85
    assert sum(by_latency.values()) > sum(by_flops.values())  # had to prune past the FLOPs budget
    real = allocate_from_sensitivity(
        scan, latency_budget=1.0, model=model, example_input=x[:1], latency_input=x, latency_repeats=2
    )  # real paired timing runs
    assert isinstance(real, dict)
    with pytest.raises(ConfigError, match="latency_budget"):
        allocate_from_sensitivity(scan, latency_budget=1.5, model=model, example_input=x[:1])
    with pytest.raises(ConfigError, match="exactly one"):
        allocate_from_sensitivity(scan, latency_budget=0.5, flops_budget=0.5, model=model, example_input=x[:1])


def test_study_accepts_issue_names_procedures_and_sensitivity_allocation(tmp_path):
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    cfg = parse_config(
        {
            "name": "t",
            "dataset": {"name": "digits"},
            "model": {"name": "resnet-cifar", "options": {"depth": 8, "width": 4}},
            "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
            "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
            "methods": [
                {"name": "l1-filter", "kind": "structured", "criterion": "l1-filter", "sparsities": [0.5]},
                {"name": "thinet", "kind": "structured", "criterion": "thinet", "sparsities": [0.5]},
                {
                    "name": "slim",
                    "kind": "structured",
                    "criterion": "network-slimming",
                    "sparsities": [0.3],
                    "options": {"l1": 1e-3},
                },
                {
                    "name": "sens",
                    "kind": "structured",
                    "criterion": "l2",
                    "sparsities": [0.4],
                    "options": {"allocation": "sensitivity", "budget": "flops", "scan_ratios": [0.25, 0.5, 0.75]},
                },
            ],
        }
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    dense = rows["dense"]
    for name in ("l1-filter", "thinet", "slim", "sens"):
        assert rows[name]["kind"] == "structured" and rows[name]["flops_sparse"] < dense["flops_dense"], name
        assert rows[name]["latency_ms"] > 0 and rows[name]["latency_speedup"] > 0
    assert rows["sens"]["flops_sparse"] <= 0.6 * dense["flops_dense"]
    assert (res.directory / "runs" / rows["slim"]["run_id"] / "slimming").is_dir()  # BN-L1 fine-tune ran
    from prunezoo.analysis import write_report

    html = write_report(res.directory)
    assert (html.parent / "structured.png").stat().st_size > 0 and "vs measured CPU latency" in html.read_text()
    with pytest.raises(ConfigError, match="criterion"):
        parse_config({"methods": [{"name": "x", "kind": "structured", "criterion": "l3-filter", "sparsities": [0.5]}]})


def test_structured_zero_masked_resnet_compacts_to_equal_outputs(tmp_path):
    from prunezoo.structured import compact_zero_channels, load_compact, save_compact

    torch.manual_seed(0)
    masked = build_model("resnet-cifar", input_shape=(3, 16, 16), depth=8).eval()
    randomize_bn(masked)
    x = torch.randn(4, 3, 16, 16)

    def zero(conv: str, bn: str, idx: list[int]) -> None:
        with torch.no_grad():
            masked.get_submodule(conv).weight[idx] = 0
            masked.get_submodule(bn).weight[idx] = 0
            masked.get_submodule(bn).bias[idx] = 0

    zero("layer2.0.conv1", "layer2.0.bn1", [0, 3, 5])  # inside a block: feeds only conv2
    for conv, bn in (("conv1", "bn1"), ("layer1.0.conv2", "layer1.0.bn2")):  # both sides of stage 1's sum
        zero(conv, bn, [1, 2])
    zero("layer3.0.conv2", "layer3.0.bn2", [7])  # one side of a residual sum only: must stay
    with torch.no_grad():
        ref = masked(x)
    compact = copy.deepcopy(masked)
    res = compact_zero_channels(compact, x[:1])
    assert res.channels_after["layer2.0.conv1"] == 29 and res.channels_after["conv1"] == 14
    assert res.channels_after["layer1.0.conv2"] == 14 and res.channels_after["layer3.0.conv2"] == 64
    assert res.params_after < res.params_before and res.flops_after < res.flops_before
    with torch.no_grad():
        assert torch.allclose(compact(x), ref, atol=1e-5)
    save_compact(
        compact,
        tmp_path / "c",
        {"model": "resnet-cifar", "num_classes": 10, "input_shape": [3, 16, 16], "options": {"depth": 8}},
    )
    with torch.no_grad():
        assert torch.equal(load_compact(tmp_path / "c")(x), compact(x))


def test_round_to_keeps_channel_counts_multiples_of_it():
    model = build_model("resnet-cifar", input_shape=(3, 16, 16), depth=8, width=16)
    res = prune_channels(model, torch.zeros(1, 3, 16, 16), 0.3, round_to=8)
    counts = {n: c for n, c in res.channels_after.items() if n != "fc"}
    assert all(c % 8 == 0 for c in counts.values()) and res.flops_after < res.flops_before
    plain = prune_channels(
        build_model("resnet-cifar", input_shape=(3, 16, 16), depth=8, width=16), torch.zeros(1, 3, 16, 16), 0.3
    )
    assert any(c % 8 for n, c in plain.channels_after.items() if n != "fc")  # 16 -> 11 without rounding
