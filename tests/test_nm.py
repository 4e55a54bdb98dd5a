"""N:M sparsity: pattern parsing, selection, prune(pattern=...) for every mask-based method kind,
OBS-style N:M selection, SR-STE, and the pattern surviving training under each optimizer."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.pruning import prune
from prunezoo.sparsity import MaskSet
from prunezoo.sparsity.nm import check_model, group_counts, nm_core, nm_keep, parse_pattern, satisfies

PATTERNS = ["2:4", "1:4", "4:8"]


def _net(seed=0):
    torch.manual_seed(seed)
    # conv0 has 3*3*3 = 27 inputs: no whole groups of 4 or 8, so it cannot hold a pattern
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )


def _data(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_parse_pattern_accepts_n_colon_m_and_names_the_field():
    assert parse_pattern("2:4") == (2, 4) and parse_pattern(" 4 : 8 ") == (4, 8)
    for bad in ("2-4", "4:4", "0:4", "5:4", "", None):
        with pytest.raises(ConfigError, match="pattern"):
            parse_pattern(bad)


def test_nm_keep_keeps_the_n_highest_scores_of_each_group_with_positional_ties():
    s = torch.tensor([[0.1, 0.9, 0.5, 0.3, 1.0, 1.0, 1.0, 1.0]])
    assert nm_keep(s, 2, 4).tolist() == [[False, True, True, False, True, True, False, False]]
    w = torch.randn(16, 64)
    keep = nm_keep(w.abs(), 2, 4)
    assert bool((group_counts(keep, 4) == 2).all())
    # every kept |w| is >= every pruned |w| of the same group
    g, k = w.abs().reshape(16, 16, 4), keep.reshape(16, 16, 4)
    assert bool((g.masked_fill(~k, float("inf")).amin(-1) >= g.masked_fill(k, -1.0).amax(-1)).all())
    with pytest.raises(ValueError, match="whole groups"):
        nm_keep(torch.randn(4, 6), 2, 4)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("scheme", ["global", "uniform", "erk"])
def test_prune_with_pattern_gives_exactly_n_of_m_and_leaves_ineligible_layers_dense(pattern, scheme):
    n, m = parse_pattern(pattern)
    model = _net()
    masks = prune(model, n / m, pattern=pattern, scheme=scheme)
    assert not bool(masks["0.weight"].logical_not().any())  # 27 inputs: dense
    for name in ("2.weight", "5.weight", "7.weight"):
        assert satisfies(masks[name], pattern), name
    # a lower density is a floor: still exactly N:M, never sparser
    assert dict(prune(model, 0.05, pattern=pattern, scheme=scheme).items()).keys() == dict(masks.items()).keys()
    low = prune(model, 0.05, pattern=pattern, scheme=scheme)
    assert all(torch.equal(low[k], masks[k]) for k in masks)


def test_pattern_follows_any_criterion_score():
    model = _net()
    fixed = {
        n: torch.rand(p.shape, generator=torch.Generator().manual_seed(3))
        for n, p in model.named_parameters()
        if n.endswith("weight")
    }
    masks = prune(model, 0.5, criterion=lambda ctx: {n: fixed[n] for n in ctx.params}, pattern="2:4")
    assert torch.equal(masks["5.weight"], nm_keep(fixed["5.weight"], 2, 4))
    for crit in ("random", "snip", "synflow"):
        got = prune(model, 0.5, criterion=crit, pattern="2:4", batches=[_data()], seed=1)
        assert satisfies(got["5.weight"], "2:4") and satisfies(got["2.weight"], "2:4"), crit


def test_gradual_pattern_path_keeps_the_core_and_only_shrinks():
    model = _net()
    previous = None
    for d in (0.9, 0.75, 0.6, 0.5):
        masks = prune(model, d, pattern="2:4", masks=previous)
        if previous is not None:
            assert masks.is_subset_of(previous)
        counts = group_counts(masks["5.weight"], 4)
        assert bool((counts >= 2).all())  # never below the pattern on the way
        previous = masks
    assert satisfies(previous["5.weight"], "2:4") and satisfies(previous["7.weight"], "2:4")


def test_pattern_inside_a_mask_that_broke_it_is_an_error():
    model = _net()
    unstructured = prune(model, 0.1)  # some groups keep fewer than 2
    with pytest.raises(ValueError, match="fewer than 2"):
        prune(model, 0.5, pattern="2:4", masks=unstructured)


def test_obs_style_nm_selection_prunes_the_lowest_saliency_per_group_and_corrects_survivors():
    from prunezoo.criteria import ScoringContext
    from prunezoo.criteria.obs import fisher_inverse_blocks, obs_saliency
    from prunezoo.pruning import obs_prune
    from prunezoo.sparsity.selection import prunable_parameters

    model = _net()
    batches = [_data(32)]
    params = prunable_parameters(model)
    ctx = ScoringContext(
        model=model, params=params, batches=batches, loss_fn=None, generator=torch.Generator().manual_seed(0)
    )
    finv = fisher_inverse_blocks(ctx, block_size=16)
    sal = obs_saliency(params["5.weight"], finv["5.weight"])
    before = params["5.weight"].detach().clone()
    masks = obs_prune(model, 0.5, batches, block_size=16, pattern="2:4")
    assert torch.equal(masks["5.weight"], nm_keep(sal, 2, 4))
    w = model[5].weight.detach()
    assert satisfies(w, "2:4")
    assert not torch.equal(w[masks["5.weight"]], before[masks["5.weight"]])  # survivors corrected


def test_flops_and_nnz_account_for_the_pattern():
    from prunezoo.models.flops import layer_flops, sparse_flops

    model = _net()
    masks = prune(model, 0.5, pattern="2:4")
    masks.apply(model)
    per_layer = layer_flops(model, (3, 8, 8))
    dense_total = sum(per_layer.values())
    expected = per_layer["0.weight"] + 0.5 * (dense_total - per_layer["0.weight"])
    assert sparse_flops(model, (3, 8, 8)) == pytest.approx(expected, rel=1e-6)
    assert masks.nnz() == 8 * 27 + (8 * 72 + 32 * 128 + 4 * 32) // 2


# -- training keeps the pattern ---------------------------------------------------------------------
OPTIMIZERS = [
    dict(optimizer="sgd", momentum=0.9, weight_decay=5e-4),
    dict(optimizer="adam", weight_decay=1e-4),
    dict(optimizer="adamw", weight_decay=1e-2),
]


def _dataset():
    from prunezoo.data import ArrayDataset

    x, y = _data(128, seed=5)
    return ArrayDataset(x, y)


def _fit(model, callbacks, opt, epochs=2):
    from prunezoo.training import Trainer, TrainingConfig

    lr = 0.05 if opt["optimizer"] == "sgd" else 1e-2
    cfg = TrainingConfig(epochs=epochs, batch_size=32, lr=lr, **opt)
    Trainer(model, _dataset(), cfg, callbacks=callbacks, progress=False).fit()


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda o: o["optimizer"])
def test_every_group_keeps_exactly_n_after_training_under_each_optimizer(opt):
    from prunezoo.reparam.srste import apply_srste, squash_srste
    from prunezoo.schedules import GradualMagnitudePruning
    from prunezoo.training.callbacks import EnforceMasks

    fixed = _net()  # oneshot / at-init / imp: a fixed N:M mask enforced while training
    masks = prune(fixed, 0.5, pattern="2:4")
    masks.apply(fixed)
    _fit(fixed, [EnforceMasks(masks)], opt)
    assert check_model(fixed, "2:4") == {"2.weight": True, "5.weight": True, "7.weight": True}

    gradual = _net()  # gmp: shrinks to 2:4 during training
    sched = GradualMagnitudePruning(0.5, frequency=2, end_epoch=1.0, pattern="2:4")
    _fit(gradual, [sched], opt)
    assert all(check_model(gradual, "2:4").values()) and sched.masks.nnz() == masks.nnz()

    sr = apply_srste(_net(), "2:4")  # SR-STE: dense weights, pattern recomputed each step, baked at the end
    _fit(sr, [], opt)
    out = squash_srste(sr)
    assert all(check_model(sr, "2:4").values()) and out.nnz() == masks.nnz()
    assert all(type(m) in (nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten) for m in sr)


def test_srste_forward_uses_the_masked_weight_and_backward_adds_the_refine_decay():
    from prunezoo.reparam.srste import apply_srste, srste_masks

    torch.manual_seed(0)
    layer = nn.Linear(8, 3)
    model = apply_srste(nn.Sequential(layer), "2:4", decay=0.1)
    w = layer.weight.detach().clone()
    mask = nm_keep(w.abs(), 2, 4)
    x = torch.randn(5, 8)
    y = model(x)
    assert torch.allclose(y, F.linear(x, w * mask, layer.bias))
    y.pow(2).sum().backward()
    # straight-through: the gradient w.r.t. the masked weight, passed to every weight, + λ (1 - mask) w
    w_ref = (w * mask).requires_grad_(True)
    F.linear(x, w_ref, layer.bias.detach()).pow(2).sum().backward()
    assert torch.allclose(layer.weight.grad, w_ref.grad + 0.1 * (~mask) * w, atol=1e-6)
    assert torch.equal(srste_masks(model)["0.weight"], mask)
    with pytest.raises(ValueError, match="divisible by 4"):
        apply_srste(nn.Sequential(nn.Linear(6, 2)), "2:4")


# -- studies ------------------------------------------------------------------------------------------
def _study(methods, **extra):
    from prunezoo.experiments.config import parse_config

    return parse_config(
        {
            "name": "nm",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [32]}},
            "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
            "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
            "methods": methods,
            **extra,
        }
    )


def test_config_pattern_validation_names_the_field():
    ok = _study([{"name": "a", "kind": "oneshot", "pattern": "2:4"}]).methods[0]
    assert ok.sparsities == [0.5] and ok.pattern == "2:4"
    cases = [
        ({"kind": "oneshot", "pattern": "2-4"}, "pattern"),
        ({"kind": "oneshot", "pattern": "2:4", "sparsities": [0.9]}, "fixes the sparsity at 0.5"),
        ({"kind": "dst", "pattern": "2:4"}, "pattern: N:M is not supported for method kind 'dst'"),
        ({"kind": "edge-popup", "pattern": "2:4"}, "not supported"),
        ({"kind": "structured", "criterion": "l1", "pattern": "2:4"}, "not supported"),
        ({"kind": "vd", "pattern": "2:4"}, "not supported"),
        ({"kind": "str", "pattern": "2:4"}, "not supported"),
        ({"kind": "acdc", "pattern": "2:4"}, "not supported"),
        ({"kind": "imp", "pattern": "2:4", "levels": 3}, "set levels: 4"),
        ({"kind": "gmp", "pattern": "2:4", "start": {"density": 0.5}}, "pattern: a random sparse-to-sparse"),
        ({"kind": "sr-ste", "sparsities": [0.5]}, "needs a 'pattern'"),
    ]
    for method, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            _study([{"name": "a", **method}])


def test_default_configs_keep_their_hash():
    # new fields default to None/False and the hash covers non-default values only
    cfg = _study([{"name": "a", "kind": "oneshot", "sparsities": [0.9]}])
    assert "pattern" not in str(cfg.canonical()) and "sparse_export" not in str(cfg.canonical())


def test_study_methods_honour_the_pattern_end_to_end(tmp_path):
    from prunezoo.experiments.study import run_study
    from prunezoo.models.flops import layer_flops
    from prunezoo.training.checkpoint import load_state

    cfg = _study(
        [
            {"name": "oneshot", "kind": "oneshot", "pattern": "2:4"},
            {"name": "obs", "kind": "oneshot", "criterion": "obs", "pattern": "2:4", "options": {"block_size": 16}},
            {"name": "snip", "kind": "at-init", "criterion": "snip", "pattern": "1:4"},
            {"name": "gmp", "kind": "gmp", "pattern": "2:4", "gmp_frequency": 5},
            {"name": "imp", "kind": "imp", "pattern": "4:8", "levels": 4},
            {"name": "srste", "kind": "sr-ste", "pattern": "2:4"},
        ]
    )
    res = run_study(cfg, tmp_path, workers=1)
    want = {"oneshot": "2:4", "obs": "2:4", "snip": "1:4", "gmp": "2:4", "imp": "4:8", "srste": "2:4"}
    runs = res.directory / "runs"
    checked = 0
    for job_dir in runs.iterdir():
        spec = __import__("json").loads((job_dir / "job.json").read_text())["spec"]
        method = spec.get("method", {})
        if "pattern" not in method:
            continue
        level = job_dir / "level_04"
        state = load_state((level if level.exists() else job_dir) / "final.safetensors")
        for name in ("fc1.weight", "fc2.weight"):
            assert satisfies(state[name], method["pattern"]), (job_dir.name, name)
        checked += 1
    assert checked == 6
    rows = {(r["method"], r["level"]): r for r in res.rows}
    from prunezoo.models import build_model

    flops = layer_flops(build_model("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=[32]), (1, 8, 8))
    for name, pattern in want.items():
        row = rows[(name, 4 if name == "imp" else None)]
        n, m = parse_pattern(pattern)
        assert row["sparsity"] == pytest.approx(1 - n / m), name
        assert row["flops_sparse"] == pytest.approx(sum(flops.values()) * n / m, abs=1), name
    assert rows[("imp", 3)]["sparsity"] < 0.5  # the levels before the last approach the pattern


def test_nm_core_marks_ineligible_layers_fully_kept():
    scores = {"a": torch.randn(4, 8), "b": torch.randn(3, 5)}
    core = nm_core(scores, "2:4")
    assert satisfies(core["a"], "2:4") and bool(core["b"].all())
    assert isinstance(MaskSet(core), MaskSet)
