"""Reparameterised sparse training: STR, edge-popup, sparse variational dropout (prunezoo.reparam)."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.data import load_dataset
from prunezoo.models import build_model
from prunezoo.pruning import random_er_masks
from prunezoo.reparam import (
    Conv2dSVDO,
    LinearSVDO,
    VariationalDropoutLoss,
    apply_edge_popup,
    apply_str,
    current_sparsity,
    edge_popup_masks,
    from_variational,
    kl_divergence,
    neg_kl,
    sparsity_ratio,
    squash_edge_popup,
    squash_str,
    str_masks,
    thresholds,
    to_variational,
)
from prunezoo.reparam import variational_dropout as vdmod
from prunezoo.sparsity import MaskSet
from prunezoo.sparsity.topk import keep_count
from prunezoo.training import Trainer, TrainingConfig, evaluate, seed_everything


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _mlp(data, seed=0, hidden=(32,)):
    seed_everything(seed)
    return build_model("mlp", num_classes=10, input_shape=data.input_shape, hidden=list(hidden))


def _cnn(seed=0):
    seed_everything(seed)
    return build_model("cnn-s", num_classes=10, input_shape=(1, 28, 28))


def _train(model, data, epochs=2, **cfg):
    cfg = {"batch_size": 64, "lr": 0.05, **cfg}
    trainer = Trainer(
        model, data.train, TrainingConfig(epochs=epochs, **cfg), eval_sets={"test": data.test}, progress=False
    )
    return trainer, trainer.fit()


def _mlp_forward(x, weights, biases):
    """The digits MLP (fc1 -> relu -> fc2) with explicit weights."""
    h = F.relu(F.linear(x.flatten(1), weights[0], biases[0]))
    return F.linear(h, weights[1], biases[1])


# ---------------------------------------------------------------------------------------------------
# STR
# ---------------------------------------------------------------------------------------------------
def _str_eff(w, s, allowed=None):
    eff = torch.sign(w) * torch.clamp(w.abs() - 1.0 / (1.0 + math.exp(-s)), min=0)
    return eff if allowed is None else eff * allowed


def test_str_forward_equals_formula_and_keeps_names(digits):
    model = _mlp(digits)
    w1 = model.fc1.weight
    apply_str(model, s_init=-2.5)
    names = dict(model.named_parameters())
    assert names["fc1.weight"] is w1 and "fc1.s" in names and "fc2.s" in names and "fc1.bias" in names
    assert isinstance(model.fc1, nn.Linear)  # still a Linear: prunable_parameters/MaskSet see fc1.weight
    x = torch.randn(7, 1, 8, 8)
    effs = [_str_eff(model.fc1.weight.detach(), -2.5), _str_eff(model.fc2.weight.detach(), -2.5)]
    assert 0 < float((effs[0] == 0).float().mean()) < 1  # the threshold actually cuts something
    expected = _mlp_forward(x, effs, [model.fc1.bias, model.fc2.bias])
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    assert thresholds(model)["fc1.weight"] == pytest.approx(1 / (1 + math.exp(2.5)))

    cnn = _cnn()
    apply_str(cnn, s_init=-3.0)
    x = torch.randn(2, 1, 28, 28)
    conv = cnn.conv1
    torch.testing.assert_close(conv(x), F.conv2d(x, _str_eff(conv.weight.detach(), -3.0), conv.bias), rtol=0, atol=1e-6)


def test_str_threshold_gradient_matches_closed_form(digits):
    model = _mlp(digits).double()
    apply_str(model, s_init=-3.0)
    x, y = torch.randn(16, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (16,))
    F.cross_entropy(model(x), y).backward()
    # reference: gradient w.r.t. leaf effective weights, then the chain rule through the threshold
    effs = [m.effective_weight().detach().requires_grad_() for m in (model.fc1, model.fc2)]
    F.cross_entropy(_mlp_forward(x, effs, [model.fc1.bias, model.fc2.bias]), y).backward()
    for layer, eff in zip((model.fc1, model.fc2), effs):
        w, g = layer.weight.detach(), torch.sigmoid(layer.s.detach())
        active = (w.abs() > g).double()
        expected_s = -(g * (1 - g)) * (torch.sign(w) * active * eff.grad).sum()
        assert layer.s.grad is not None and float(layer.s.grad.abs()) > 0
        torch.testing.assert_close(layer.s.grad, expected_s)
        torch.testing.assert_close(layer.weight.grad, active * eff.grad)  # no gradient under the threshold


def test_str_squash_gives_plain_model_with_same_outputs(digits):
    model = _mlp(digits)
    apply_str(model, s_init=-3.0)
    _train(model, digits, epochs=1, weight_decay=5e-3)
    x = torch.randn(9, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
    predicted = str_masks(model)
    masks = squash_str(model)
    assert type(model.fc1) is nn.Linear and type(model.fc2) is nn.Linear
    assert not any(n.endswith(".s") or "allowed_mask" in n for n in model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-6)
    assert set(masks) == {"fc1.weight", "fc2.weight"}
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.equal(masks[name], p != 0) and torch.equal(masks[name], predicted[name])
    assert 0 < masks.sparsity() < 1


def test_str_allowed_mask_respected_through_training(digits):
    model = _mlp(digits)
    allowed = random_er_masks(model, 0.3, "uniform", seed=1)
    apply_str(model, s_init=-4.0, allowed=allowed)
    for name, layer in (("fc1.weight", model.fc1), ("fc2.weight", model.fc2)):
        assert not bool(layer.effective_weight()[~allowed[name]].any())
    _train(model, digits, epochs=2, weight_decay=1e-3)
    for name, layer in (("fc1.weight", model.fc1), ("fc2.weight", model.fc2)):
        assert not bool(layer.effective_weight()[~allowed[name]].any())
        assert bool(layer.effective_weight()[allowed[name]].any())
    masks = squash_str(model)
    assert masks.is_subset_of(allowed) and masks.density() <= allowed.density()
    assert not bool(model.fc1.weight[~allowed["fc1.weight"]].any())


def test_str_weight_decay_drives_sparsity(digits):
    reached = {}
    for wd in (0.0, 5e-3):
        model = _mlp(digits)
        apply_str(model, s_init=-3.2)
        _train(model, digits, epochs=10, weight_decay=wd)
        reached[wd] = current_sparsity(model)
    assert reached[5e-3] > reached[0.0] + 0.05


def test_str_rejects_bad_selection(digits):
    model = _mlp(digits)
    with pytest.raises(ValueError, match="not the weight"):
        apply_str(model, include=["fc1.bias"])
    apply_str(model, exclude=["fc2.*"])
    assert type(model.fc2) is nn.Linear and not hasattr(model.fc2, "s")
    with pytest.raises(ValueError, match="already reparameterised"):
        apply_str(model, include=["fc1.weight"])
    with pytest.raises(ValueError, match="unselected"):
        apply_str(_mlp(digits), allowed=random_er_masks(model, 0.5), exclude=["fc2.*"])


# ---------------------------------------------------------------------------------------------------
# edge-popup
# ---------------------------------------------------------------------------------------------------
def test_edge_popup_selects_exactly_k_inside_allowed(digits):
    model = _mlp(digits)
    allowed = random_er_masks(model, 0.4, "uniform", seed=3)
    dens = {"fc1.weight": 0.3, "fc2.weight": 0.7}
    apply_edge_popup(model, dens, allowed=allowed, seed=0)
    sel = edge_popup_masks(model)
    for name in dens:
        assert sel[name].sum() == keep_count(dens[name], int(allowed[name].sum()))
    assert sel.is_subset_of(allowed)
    # the top-k are the largest |scores| among the allowed entries
    s = model.fc1.scores.detach().abs()
    assert s[sel["fc1.weight"]].min() >= s[allowed["fc1.weight"] & ~sel["fc1.weight"]].max()
    # without an allowed mask k counts the whole layer; conv layers work the same
    cnn = _cnn()
    apply_edge_popup(cnn, 0.25, seed=0)
    for name, m in edge_popup_masks(cnn).items():
        assert int(m.sum()) == keep_count(0.25, m.numel()), name
    with pytest.raises(ValueError, match="no density"):
        apply_edge_popup(_mlp(digits), {"fc1.weight": 0.5})


def test_edge_popup_straight_through_gradient(digits):
    model = _mlp(digits).double()
    allowed = random_er_masks(model, 0.6, "uniform", seed=4)
    apply_edge_popup(model, 0.5, allowed=allowed, seed=0)
    x, y = torch.randn(16, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (16,))
    F.cross_entropy(model(x), y).backward()
    layers = (model.fc1, model.fc2)
    effs = [m.effective_weight().detach().requires_grad_() for m in layers]
    F.cross_entropy(_mlp_forward(x, effs, [model.fc1.bias, model.fc2.bias]), y).backward()
    for (name, layer), eff in zip((("fc1.weight", model.fc1), ("fc2.weight", model.fc2)), effs):
        assert layer.weight.grad is None  # frozen
        # dL/dM = dL/dw_eff * w passed straight through |scores| (hence the sign), 0 outside allowed
        expected = torch.sign(layer.scores.detach()) * eff.grad * layer.weight * allowed[name]
        torch.testing.assert_close(layer.scores.grad, expected)
        assert bool(layer.scores.grad[~allowed[name] & (eff.grad != 0)].eq(0).all())
        assert float(layer.scores.grad.abs().sum()) > 0


def test_edge_popup_training_moves_scores_not_weights(digits):
    model = _mlp(digits, hidden=(64,))
    allowed = random_er_masks(model, 0.5, "uniform", seed=5)
    apply_edge_popup(model, 0.5, allowed=allowed, seed=0, weight_init="signed_constant")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith("scores")}
    scores0 = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("scores")}
    sel0 = edge_popup_masks(model)
    trainer, hist = _train(model, digits, epochs=3, lr=0.1)
    opt_params = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert opt_params == {id(model.fc1.scores), id(model.fc2.scores)}
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n  # weights and biases untouched
        else:
            assert not torch.equal(p, scores0[n]), n
    sel = edge_popup_masks(model)
    assert sel.iou(sel0) < 1 and sel.is_subset_of(allowed)
    assert sel.layer_nnz() == sel0.layer_nnz()
    assert hist[-1]["test_acc"] > 0.3  # well above chance (0.1): the selected subnetwork learns


def test_edge_popup_squash(digits):
    model = _mlp(digits)
    allowed = random_er_masks(model, 0.5, "uniform", seed=6)
    apply_edge_popup(model, 0.4, allowed=allowed, seed=1)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
    sel = edge_popup_masks(model)
    masks = squash_edge_popup(model)
    assert type(model.fc1) is nn.Linear and not hasattr(model.fc1, "scores")
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(masks[n], sel[n]) for n in sel)
    assert not bool(model.fc1.weight[~masks["fc1.weight"]].any())
    assert masks.is_subset_of(allowed)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-6)


def test_edge_popup_seed_reproducible(digits):
    a, b = _mlp(digits), _mlp(digits)
    torch.manual_seed(123)
    apply_edge_popup(a, 0.5, seed=7)
    torch.manual_seed(999)  # global RNG state must not matter
    apply_edge_popup(b, 0.5, seed=7)
    assert torch.equal(a.fc1.scores, b.fc1.scores)


# ---------------------------------------------------------------------------------------------------
# sparse variational dropout
# ---------------------------------------------------------------------------------------------------
def test_vd_constants_init_and_clamps():
    assert (vdmod.K1, vdmod.K2, vdmod.K3) == (0.63576, 1.87320, 1.48695)
    lin, conv = LinearSVDO(4, 3), Conv2dSVDO(2, 3, 3)
    for layer, (lo, hi) in ((lin, (-10.0, 10.0)), (conv, (-8.0, 8.0))):
        assert bool((layer.log_sigma2 == -10).all())
        with torch.no_grad():
            layer.weight.fill_(0.5)
            layer.log_sigma2.fill_(-1.0)
        torch.testing.assert_close(layer.log_alpha, torch.full_like(layer.weight, -1.0 - 2 * math.log(0.5)))
        with torch.no_grad():
            layer.log_sigma2.fill_(50.0)
        assert bool((layer.log_alpha == hi).all())
        with torch.no_grad():
            layer.log_sigma2.fill_(-50.0)
        assert bool((layer.log_alpha == lo).all())
        with torch.no_grad():
            layer.weight.zero_()  # log(0 + 1e-15) finite: clamps to the top
            layer.log_sigma2.fill_(-10.0)
        assert bool((layer.log_alpha == hi).all())


def test_vd_kl_values_by_hand():
    def by_hand(a):
        return -(0.63576 / (1 + math.exp(-(1.87320 + 1.48695 * a))) - 0.5 * math.log(1 + math.exp(-a)) - 0.63576)

    points = [-10.0, -3.0, 0.0, 1.5, 3.0, 8.0]
    got = -neg_kl(torch.tensor(points, dtype=torch.float64))
    for a, g in zip(points, got.tolist()):
        assert g == pytest.approx(by_hand(a), rel=1e-12)
    assert by_hand(0.0) == pytest.approx(0.5 * math.log(2) + 0.63576 * (1 - 1 / (1 + math.exp(-1.8732))))
    assert all(x > y for x, y in zip(got.tolist(), got.tolist()[1:]))  # KL falls as alpha grows
    # kl_divergence sums over all layers and weights: weights 1 make log alpha = log sigma^2
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    vd = to_variational(model)
    with torch.no_grad():
        for layer, ls2 in ((vd[0], -2.0), (vd[2], 1.0)):
            layer.weight.fill_(1.0)
            layer.log_sigma2.fill_(ls2)
    assert float(kl_divergence(vd).detach()) == pytest.approx(12 * by_hand(-2.0) + 8 * by_hand(1.0), rel=1e-5)


def _weight_noise_outputs(layer, x, samples, gen):
    """Outputs of the weight-noise model w ~ N(theta, alpha theta^2), one weight draw per sample."""
    theta, sigma = layer.weight, layer.log_alpha.exp().sqrt() * layer.weight.abs()
    w = theta + sigma * torch.randn((samples, *theta.shape), generator=gen, dtype=theta.dtype)
    if isinstance(layer, nn.Linear):
        return torch.einsum("mok,k->mo", w, x[0]) + layer.bias
    patches = F.unfold(x, layer.kernel_size, padding=layer.padding)[0]  # (c_in*kh*kw, L)
    out = torch.einsum("mok,kl->mol", w.flatten(2), patches) + layer.bias[:, None]
    return out.reshape(samples, layer.out_channels, *x.shape[2:])  # padding keeps the size


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_vd_local_reparameterisation_matches_weight_noise(kind):
    torch.manual_seed(1)
    if kind == "linear":
        layer, x, op = LinearSVDO(6, 4).double(), torch.randn(1, 6, dtype=torch.float64), F.linear
    else:
        layer = Conv2dSVDO(2, 3, 3, padding=1).double()
        x, op = torch.randn(1, 2, 4, 4, dtype=torch.float64), layer._conv_forward
    with torch.no_grad():  # alpha between ~0.05 and ~2: visible noise
        layer.log_sigma2.copy_(2 * torch.log(layer.weight.abs()) + torch.empty_like(layer.weight).uniform_(-3, 0.7))
    samples = 20000
    torch.manual_seed(0)
    layer.train()
    with torch.no_grad():
        mu = op(x, layer.weight, layer.bias)[0]
        var = op(x * x, layer.log_alpha.exp() * layer.weight**2, None)[0]
        lrt = layer(x.expand(samples, *x.shape[1:]))
        mc = _weight_noise_outputs(layer, x, samples, torch.Generator().manual_seed(0))
    assert float(var.min()) > 0
    for draws in (lrt, mc):
        # means within 5 standard errors, variances within 5 % (std of the ratio sqrt(2/n) = 1 %)
        assert bool(((draws.mean(0) - mu).abs() <= 5 * (var / samples).sqrt()).all())
        torch.testing.assert_close(draws.var(0), var, rtol=0.05, atol=0)
    # the noise is really there: a deterministic forward would have zero variance
    assert float(lrt.var(0).min()) > 0.5 * float(var.min())


def test_vd_eval_zeroes_weights_at_threshold():
    layer = LinearSVDO(4, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0)  # log alpha == log sigma^2
        layer.log_sigma2.copy_(torch.tensor([[2.9, 3.0, 3.1, -5.0], [8.0, -1.0, 2.999, 3.0001]]))
    keep = torch.tensor([[True, False, False, True], [False, True, True, False]])
    assert torch.equal(layer.keep_mask(), keep)
    assert sparsity_ratio(nn.Sequential(layer)) == pytest.approx(4 / 8)
    x = torch.randn(5, 4)
    layer.eval()
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight * keep, layer.bias), rtol=0, atol=0)
    assert torch.equal(layer(x), layer(x))  # deterministic in eval
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # noisy in training


def test_vd_conversion_reproduces_original(digits):
    model = _mlp(digits)
    _train(model, digits, epochs=3)
    model.eval()
    vd = to_variational(model)
    assert type(model.fc1) is nn.Linear  # default works on a copy
    assert isinstance(vd.fc1, LinearSVDO) and isinstance(vd.fc2, LinearSVDO)
    keys = set(vd.state_dict())
    assert {"fc1.weight", "fc1.bias", "fc1.log_sigma2", "fc2.weight"} <= keys
    missing = vd.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["fc1.log_sigma2", "fc2.log_sigma2"]
    vd.eval()
    x = digits.test.prepare(digits.test.x[:200])
    cut = math.exp((-10 - 3) / 2)  # |theta| below this has log alpha >= 3 already at conversion
    with torch.no_grad():
        # exact where nothing is that small ...
        for p in (model.fc1.weight, model.fc2.weight):
            tiny = p.abs() < cut
            assert 0 < int(tiny.sum()) < 0.05 * p.numel()  # a few such weights do exist here
        expected = _mlp_forward(
            x,
            [model.fc1.weight * (model.fc1.weight.abs() >= cut), model.fc2.weight * (model.fc2.weight.abs() >= cut)],
            [model.fc1.bias, model.fc2.bias],
        )
        torch.testing.assert_close(vd(x), expected, rtol=1e-6, atol=1e-6)
        big = copy.deepcopy(model)
        for p in (big.fc1.weight, big.fc2.weight):
            p.copy_(torch.where(p.abs() < cut, torch.full_like(p, 2 * cut), p))
        twin = to_variational(big).eval()
        assert torch.equal(twin(x), big(x))  # bit-exact: nothing zeroed, weights x 1
    # the zoo's sanity check: same test accuracy, same loss up to the tiny weights
    ref, got = evaluate(model, digits.test), evaluate(vd, digits.test)
    assert got["acc"] == ref["acc"] and got["loss"] == pytest.approx(ref["loss"], abs=1e-3)
    # conv layers are converted too; include/exclude select like elsewhere
    cnn = to_variational(_cnn(), exclude=["fc2.*"])
    assert isinstance(cnn.conv1, Conv2dSVDO) and isinstance(cnn.fc1, LinearSVDO) and type(cnn.fc2) is nn.Linear
    inplace = _cnn()
    assert to_variational(inplace, inplace=True) is inplace and isinstance(inplace.conv2, Conv2dSVDO)


def test_from_variational_mask_and_plain_model():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 5))
    vd = to_variational(model)
    with torch.no_grad():
        for layer in (vd[0], vd[3]):
            layer.log_sigma2.copy_(2 * torch.log(layer.weight.abs()) + torch.empty_like(layer.weight).uniform_(-2, 6))
    plain, masks = from_variational(vd)
    assert set(masks) == {"0.weight", "3.weight"}
    for name, layer in (("0.weight", vd[0]), ("3.weight", vd[3])):
        assert torch.equal(masks[name], layer.log_alpha < 3)
    assert 0.2 < masks.sparsity() < 0.8 and masks.sparsity() == pytest.approx(sparsity_ratio(vd))
    assert type(plain[0]) is nn.Conv2d and type(plain[3]) is nn.Linear
    assert torch.equal(MaskSet.from_model(plain)["3.weight"], masks["3.weight"] & (vd[3].weight != 0))
    assert isinstance(vd[0], Conv2dSVDO)  # source untouched
    x = torch.randn(4, 1, 4, 4)
    vd.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), vd(x), rtol=0, atol=1e-6)
    _, strict = from_variational(vd, threshold=0.0)
    assert strict.is_subset_of(masks) and strict.nnz() < masks.nnz()


def test_vd_loss_schedules():
    vd = to_variational(nn.Sequential(nn.Linear(3, 2)))
    elbo = VariationalDropoutLoss(1437)
    assert elbo.kl_weight(0, 23) == elbo.kl_weight(10_000, 23) == pytest.approx(1 / 1437)
    ramp = VariationalDropoutLoss(1437, "ramp")  # min(1, 0.01 * epoch / 25), epoch 0-based
    spe = 10
    assert [ramp.kl_weight(s, spe) for s in (0, 9, 10, 125, 250)] == pytest.approx([0, 0, 0.0004, 0.0048, 0.01])
    assert ramp.kl_weight(3000 * spe, spe) == 1.0
    held = VariationalDropoutLoss(1437, "ramp", ramp_cap=0.01)
    assert held.kl_weight(1000 * spe, spe) == pytest.approx(0.01)
    steps = VariationalDropoutLoss(1437, "ramp", ramp_unit="step", ramp_length=100, ramp_to=0.5)
    assert steps.kl_weight(20, spe) == pytest.approx(0.1)
    trainer = SimpleNamespace(model=vd, steps_per_epoch=spe)
    assert ramp.extra_loss(trainer, 5) is None
    torch.testing.assert_close(ramp.extra_loss(trainer, 50), 0.002 * kl_divergence(vd))
    with pytest.raises(ValueError, match="no SVDO"):
        elbo.on_train_begin(SimpleNamespace(model=nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="schedule"):
        VariationalDropoutLoss(10, "cosine")


def test_vd_training_with_elbo_sparsifies(digits):
    model = _mlp(digits)
    _train(model, digits, epochs=10)
    dense_acc = evaluate(model, digits.test)["acc"]
    vd = to_variational(model)
    torch.manual_seed(0)
    hist = Trainer(
        vd,
        digits.train,
        TrainingConfig(epochs=5, batch_size=64, optimizer="adam", lr=3e-3, seed=1),
        eval_sets={"test": digits.test},
        callbacks=[VariationalDropoutLoss(len(digits.train))],
        progress=False,
    ).fit()
    ratios = [h["sparsity_ratio"] for h in hist]
    assert ratios[-1] > 0.5 and ratios[-1] > ratios[0]
    assert hist[-1]["kl_weight"] == pytest.approx(1 / len(digits.train))
    plain, masks = from_variational(vd)
    assert masks.sparsity() == pytest.approx(ratios[-1])
    acc = evaluate(plain, digits.test)["acc"]
    assert acc == pytest.approx(hist[-1]["test_acc"]) and acc > dense_acc - 0.04


def test_vd_options_from_a_study_config(tmp_path):
    import json

    from prunezoo.errors import ConfigError
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    base = {
        "name": "vd",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "options": {"hidden": [16]}},
        "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
        "finetune": {"epochs": 3, "batch_size": 64, "lr": 0.01},
    }
    cfg = parse_config(
        {
            **base,
            "methods": [
                {"name": "elbo", "kind": "vd"},
                {
                    "name": "ramp",
                    "kind": "vd",
                    "options": {
                        "schedule": "ramp",
                        "ramp_to": 0.01,
                        "ramp_length": 2,
                        "ramp_cap": 0.005,
                        "threshold": 2.0,
                    },
                },
            ],
        }
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    hist = json.loads((res.directory / "histories.json").read_text())
    n_train = len(load_dataset("digits").train)
    assert [h["kl_weight"] for h in hist[rows["elbo"]["run_id"]]] == pytest.approx([1 / n_train] * 3)
    # zoo-style ramp λ = min(cap, ramp_to · epoch / ramp_length): 0, 0.005, then held at the cap
    assert [h["kl_weight"] for h in hist[rows["ramp"]["run_id"]]] == pytest.approx([0.0, 0.005, 0.005])
    # the row's sparsity is the threshold-2 mask of the trained model (ratio logged by the loss callback)
    assert rows["ramp"]["sparsity"] == pytest.approx(hist[rows["ramp"]["run_id"]][-1]["sparsity_ratio"], abs=1e-6)
    for bad in ({"schedule": "cosine"}, {"thresold": 3}, {"threshold": "high"}):  # rejected before training
        with pytest.raises(ConfigError) as err:
            parse_config({**base, "methods": [{"name": "v", "kind": "vd", "options": bad}]})
        assert err.value.field == "methods.0" and next(iter(bad)) in str(err.value)


@pytest.mark.parametrize("kind", ["vd", "structured"])
def test_start_mask_is_rejected_where_a_kind_would_ignore_it(kind):
    from prunezoo.errors import ConfigError
    from prunezoo.experiments.config import parse_config

    method = {"name": "m", "kind": kind, "start": {"density": 0.5}}
    if kind == "structured":
        method |= {"criterion": "l1", "sparsities": [0.5]}
    with pytest.raises(ConfigError, match="start"):
        parse_config({"methods": [method]})
    parse_config({"methods": [{"name": "m", "kind": "str", "start": {"density": 0.5}}]})  # STR keeps it
