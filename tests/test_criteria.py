"""Pruning criteria: SNIP, GraSP, SynFlow (+ iterative rounds), Taylor, OBD, OBS, movement, oracle."""

import copy
import math
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.criteria import (
    CRITERIA,
    MovementTracker,
    ScoringContext,
    criterion_quality,
    get_criterion,
    make_grasp,
    make_obd,
    obs_saliency,
    obs_update,
    oracle_scores,
)
from prunezoo.errors import ConfigError
from prunezoo.pruning import obs_prune, prune, prune_iteratively, round_densities
from prunezoo.sparsity import MaskSet, prunable_parameters

DATA_FREE = {"magnitude", "random", "synflow"}


def ctx_for(model, batches=None, loss_fn=None, seed=0):
    params = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    return ScoringContext(
        model=model, params=params, batches=batches, loss_fn=loss_fn, generator=torch.Generator().manual_seed(seed)
    )


def batch(n, d, classes, seed, shape=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *(shape or (d,)), generator=g)
    return x, torch.randint(0, classes, (n,), generator=g)


def mlp(seed=0, widths=(12, 10, 8, 4)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def conv_bn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )


def snapshot(model):
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [(p.requires_grad, p.grad) for p in model.parameters()],
    )


def assert_unchanged(model, snap):
    state, modes, flags = snap
    now = snapshot(model)
    assert all(torch.equal(state[k], v) for k, v in now[0].items())
    assert now[1] == modes
    assert [(r, g is None) for r, g in now[2]] == [(r, g is None) for r, g in flags]


# -- SNIP / Taylor ---------------------------------------------------------------------------------
def linear_ce_grad(w, b, x, y):
    """dCE/dW of logits = x Wᵀ + b, by hand: (softmax - onehot)ᵀ x / N."""
    p = torch.softmax(x @ w.T + b, dim=1)
    return (p - F.one_hot(y, w.shape[0]).double()).T @ x / len(y)


def test_snip_equals_hand_computed_and_batch_count_matters():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    b1, b2 = batch(8, 5, 3, 1), batch(8, 5, 3, 2)
    b1, b2 = (b1[0].double(), b1[1]), (b2[0].double(), b2[1])
    w, b = model.weight.detach(), model.bias.detach()
    one = get_criterion("snip")(ctx_for(model, [b1]))["weight"]
    assert torch.allclose(one, (w * linear_ce_grad(w, b, *b1)).abs())
    two = get_criterion("snip")(ctx_for(model, [b1, b2]))["weight"]
    assert torch.allclose(two, (w * (linear_ce_grad(w, b, *b1) + linear_ce_grad(w, b, *b2))).abs())
    # pitfall: the number of batches changes the ranking, not just the scale
    assert not torch.allclose(one / one.sum(), two / two.sum(), atol=1e-3)
    assert not torch.equal(one.flatten().argsort(), two.flatten().argsort())


def test_taylor_sums_gradients_before_abs():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    x, y = batch(8, 5, 3, 1)
    x = x.double()
    w, b = model.weight.detach(), model.bias.detach()
    # second batch: same inputs, other labels -> per-batch gradients partly cancel
    y2 = (y + 1) % 3
    got = get_criterion("taylor")(ctx_for(model, [(x, y), (x, y2)]))["weight"]
    g1, g2 = linear_ce_grad(w, b, x, y), linear_ce_grad(w, b, x, y2)
    assert torch.allclose(got, ((g1 + g2) * w).abs())
    assert not torch.allclose(got, (g1 * w).abs() + (g2 * w).abs())


@pytest.mark.parametrize("name", ["snip", "taylor", "grasp", "obd", "obs"])
def test_data_criteria_need_batches(name):
    with pytest.raises(ConfigError) as err:
        prune(mlp(), 0.5, criterion=name)
    assert err.value.field == "batches"


# -- GraSP -----------------------------------------------------------------------------------------
def test_grasp_matches_finite_difference_hessian_gradient_product():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = batch(10, 4, 3, 0)
    x = x.double()
    names = ["0.weight", "2.weight"]
    params = dict(model.named_parameters())

    def grad_at(delta, eps):
        with torch.no_grad():
            for n in names:
                params[n].add_(eps * delta[n])
        g = torch.autograd.grad(F.cross_entropy(model(x), y), [params[n] for n in names])
        with torch.no_grad():
            for n in names:
                params[n].sub_(eps * delta[n])
        return dict(zip(names, g))

    g = grad_at({n: torch.zeros_like(params[n]) for n in names}, 0.0)
    eps = 1e-5
    plus, minus = grad_at(g, eps), grad_at(g, -eps)
    hg = {n: (plus[n] - minus[n]) / (2 * eps) for n in names}
    scores = make_grasp(1.0)(ctx_for(model, [(x, y)]))
    for n in names:
        # sign convention: keep-score = +w ⊙ Hg (= -S_GraSP), prune GraSP's largest S
        assert torch.allclose(scores[n], params[n].detach() * hg[n], rtol=1e-5, atol=1e-9)
    assert any(bool((s < 0).any()) for s in scores.values())  # signed, not absolute
    # the registered "grasp" is the authors' recipe: the same formula on logits / 200
    tempered = get_criterion("grasp")(ctx_for(model, [(x, y)]))
    by_hand = make_grasp(1.0)(ctx_for(model, [(x, y)], loss_fn=lambda z, t: F.cross_entropy(z / 200, t)))
    assert all(torch.allclose(tempered[n], by_hand[n], rtol=1e-6, atol=1e-15) for n in names)
    assert not all(
        torch.allclose(tempered[n] / tempered[n].abs().max(), scores[n] / scores[n].abs().max(), atol=1e-3)
        for n in names
    )
    with pytest.raises(ConfigError):
        make_grasp(0.0)


# -- SynFlow ---------------------------------------------------------------------------------------
def test_synflow_is_data_free_and_equals_path_products():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    snap = snapshot(model)
    scores = get_criterion("synflow")(ctx_for(model))  # no batches: shape from the first Linear
    a1, a2 = model[0].weight.detach().abs().double(), model[2].weight.detach().abs().double()
    s1 = torch.zeros(4, 3, dtype=torch.float64)
    s2 = torch.zeros(2, 4, dtype=torch.float64)
    # sum over input->output paths i -> j -> k of |w1_ji| |w2_kj|, credited to each weight on it
    for i in range(3):
        for j in range(4):
            for k in range(2):
                path = a1[j, i] * a2[k, j]
                s1[j, i] += path
                s2[k, j] += path
    assert torch.allclose(scores["0.weight"].double(), s1, rtol=1e-6)
    assert torch.allclose(scores["2.weight"].double(), s2, rtol=1e-6)
    assert_unchanged(model, snap)


def test_synflow_ignores_weight_signs_unlike_the_signed_network():
    # The |θ| linearisation is SynFlow's point: flow is a sum of positive path products, so flipping
    # any weight's sign changes nothing. The pitfall (scoring the signed network) lets paths cancel.
    model = mlp(seed=1)
    scores = get_criterion("synflow")(ctx_for(model))
    flipped = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in flipped.parameters():
            p.mul_(torch.where(torch.rand(p.shape, generator=g) < 0.5, -1.0, 1.0))
    again = get_criterion("synflow")(ctx_for(flipped))
    assert all(torch.allclose(scores[n], again[n], rtol=1e-5) for n in scores)
    params = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    out = model(torch.ones(1, 12)).sum()  # no abs: R of the signed network
    grads = torch.autograd.grad(out, list(params.values()))
    signed = {n: (p * g_).abs().detach() for (n, p), g_ in zip(params.items(), grads)}
    assert not all(torch.allclose(scores[n], signed[n], rtol=1e-3) for n in scores)
    signed_keep = prune(model, 0.2, criterion=lambda ctx: signed)
    assert signed_keep.iou(prune(model, 0.2, criterion="synflow")) < 0.9


def test_synflow_double_precision_survives_float32_overflow():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(40, 40, bias=False) for _ in range(25)])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0)  # path products ~ (40 * 20 * 0.5)^25 ≈ 1e65: inf in float32
    scores = get_criterion("synflow")(ctx_for(model))
    flat = torch.cat([s.flatten() for s in scores.values()])
    assert torch.isfinite(flat).all() and flat.max() > 0
    assert flat.unique().numel() > flat.numel() // 2  # a ranking, not a flood of ties


def test_synflow_conv_bn_needs_a_batch_and_scores_in_eval_mode():
    model = conv_bn()
    model.train()
    with pytest.raises(ConfigError, match="input shape"):
        get_criterion("synflow")(ctx_for(model))
    with torch.no_grad():
        model[1].running_mean.fill_(0.3)
        model[1].running_var.fill_(4.0)
    snap = snapshot(model)
    x = torch.randn(7, 1, 8, 8)
    scores = get_criterion("synflow")(ctx_for(model, [(x, torch.zeros(7, dtype=torch.long))]))
    assert_unchanged(model, snap)  # train mode, BN running stats and weights restored
    # eval-mode BN uses |running stats|: scores scale with 1/sqrt(running_var) after the conv
    with torch.no_grad():
        model[1].running_var.fill_(16.0)
    again = get_criterion("synflow")(ctx_for(model, [(x, torch.zeros(7, dtype=torch.long))]))
    ratio = math.sqrt((4.0 + 1e-5) / (16.0 + 1e-5))  # BN scale 1/sqrt(var+eps) on every conv path
    assert torch.allclose(again["0.weight"], ratio * scores["0.weight"], rtol=1e-4)


# -- iterative rounds ------------------------------------------------------------------------------
def deep_mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def connected(masks):
    """True if some input-to-output path survives every layer."""
    flow = torch.ones(1, masks["0.weight"].shape[1])
    for n in masks:
        flow = flow @ masks[n].float().T
    return bool(flow.sum() > 0)


def test_iterative_synflow_avoids_layer_collapse_where_single_shot_collapses():
    model = deep_mlp()
    snap = snapshot(model)
    it = prune_iteratively(model, 0.01, criterion="synflow", rounds=100)
    assert it.nnz() == round(0.01 * it.numel())
    assert all(k > 0 for k in it.layer_nnz().values()) and connected(it)
    one = prune(model, 0.01, criterion="synflow")
    assert min(one.layer_nnz().values()) == 0 and not connected(one)
    assert_unchanged(model, snap)


def test_one_round_equals_single_shot_prune():
    from prunezoo.allocation import layer_densities
    from prunezoo.sparsity.topk import keep_count, keep_top_k

    model = mlp()
    b = [batch(16, 12, 4, 0)]
    params = prunable_parameters(model)
    dens = layer_densities(model, 0.2, "erk")
    for crit in ("snip", "random", "synflow"):
        a = prune_iteratively(model, 0.2, criterion=crit, rounds=1, batches=b, seed=3, scheme="erk")
        s = prune(model, 0.2, criterion=crit, batches=b, seed=3, scheme="erk")
        assert all(torch.equal(a[n], s[n]) for n in s)
        # both equal single-shot selection assembled by hand: score once (seed 3), ERK budgets, top-k
        ctx = ScoringContext(model=model, params=params, batches=b, generator=torch.Generator().manual_seed(3))
        scores = get_criterion(crit)(ctx)
        for n, p in params.items():
            assert torch.equal(a[n], keep_top_k(scores[n], keep_count(dens[n], p.numel()))), (crit, n)


@pytest.mark.parametrize("schedule", ["exponential", "linear"])
def test_rounds_are_nested_follow_schedule_and_see_masked_weights(schedule):
    model = mlp()
    seen: list[MaskSet] = []

    def recording(ctx):
        seen.append(MaskSet({n: p.detach() != 0 for n, p in ctx.params.items()}))
        return get_criterion("magnitude")(ctx)

    final = prune_iteratively(model, 0.1, criterion=recording, rounds=5, schedule=schedule)
    dens = round_densities(0.1, 5, schedule)
    expected = (
        [0.1 ** (r / 5) for r in range(1, 6)] if schedule == "exponential" else [1 - 0.9 * r / 5 for r in range(1, 6)]
    )
    assert dens == pytest.approx(expected)
    assert seen[0].density() == 1.0
    for prev, nxt, d in zip(seen, seen[1:], dens):  # round r scores the network pruned by round r-1
        assert nxt.is_subset_of(prev) and nxt.density() == pytest.approx(d, abs=0.01)
    assert final.is_subset_of(seen[-1]) and final.density() == pytest.approx(0.1, abs=0.005)
    with pytest.raises(ConfigError):
        prune_iteratively(model, 0.1, criterion="magnitude", rounds=0)


# -- OBD -------------------------------------------------------------------------------------------
def test_obd_is_half_fisher_times_w_squared_with_per_sample_fisher():
    model = mlp(widths=(6, 5, 3))
    batches = [batch(7, 6, 3, 0), batch(5, 6, 3, 1)]
    names = ["0.weight", "2.weight"]
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(params[n]) for n in names}
    count = 0
    for x, y in batches:
        for i in range(len(y)):
            g = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), [params[n] for n in names])
            for n, gi in zip(names, g):
                fisher[n] += gi**2
            count += 1
    scores = get_criterion("obd")(ctx_for(model, batches))
    for n in names:
        assert torch.allclose(scores[n], 0.5 * fisher[n] / count * params[n].detach() ** 2, rtol=1e-4, atol=1e-10)
    # per_sample=False: mean squared *batch* gradient, a different (biased) estimate
    per_batch = make_obd(per_sample=False)(ctx_for(model, batches))
    gb = [torch.autograd.grad(F.cross_entropy(model(x), y), [params[n] for n in names]) for x, y in batches]
    for k, n in enumerate(names):
        fb = sum(g[k] ** 2 for g in gb) / len(gb)
        assert torch.allclose(per_batch[n], 0.5 * fb * params[n].detach() ** 2, rtol=1e-4, atol=1e-10)
        assert not torch.allclose(per_batch[n], scores[n])


def test_obd_falls_back_with_a_warning_when_vmap_cannot_run_the_model():
    model = conv_bn().train()  # BatchNorm in train mode: no per-sample gradients via vmap
    b = [batch(6, 0, 5, 0, shape=(1, 8, 8))]
    with pytest.warns(RuntimeWarning, match="per-batch"):
        auto = make_obd(mode="train")(ctx_for(model, b))  # "obd" scores in eval mode, where vmap runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explicit = make_obd(per_sample=False, mode="train")(ctx_for(model, b))
        get_criterion("obd")(ctx_for(model, b))  # eval mode: per-sample gradients, no fallback
    assert all(torch.allclose(auto[n], explicit[n]) for n in auto)


# -- OBS -------------------------------------------------------------------------------------------
def test_obs_saliency_values_on_a_hand_built_non_diagonal_inverse():
    # s_k = w_k² / (2 [F⁻¹]_kk); two blocks of 2, off-diagonal entries must not matter for the saliency
    w = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    finv = torch.tensor([[[2.0, 0.5], [0.5, 1.0]], [[4.0, 1.0], [1.0, 0.5]]], dtype=torch.float64)
    s = obs_saliency(w, finv)
    assert s.shape == w.shape
    assert torch.allclose(s, torch.tensor([[1 / 4, 4 / 2], [1 / 8, 0.25 / 1]], dtype=torch.float64), rtol=0, atol=1e-15)


def least_squares_problem(d=6, n=20, c=0.7, seed=0):
    """y = w·x + c on x and -x: residuals all c, gradient 0, empirical Fisher = c² × Hessian."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(d, dtype=torch.float64) + 0.8 * torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix  # correlated features
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
    w = model.weight.detach()[0]
    xs = torch.cat([x, -x])
    ys = torch.cat([x @ w + c, -(x @ w) + c])
    return model, [(xs[:n], ys[:n]), (xs[n:], ys[n:])], xs, ys


def mse(out, y):
    return 0.5 * ((out.squeeze(-1) - y) ** 2).mean()


def test_obs_update_beats_magnitude_and_is_the_optimal_refit():
    model, batches, xs, ys = least_squares_problem()
    loss = lambda m: float(mse(m(xs), ys).detach())
    mag = copy.deepcopy(model)
    prune(mag, 0.5, criterion="magnitude").apply(mag)
    obs = copy.deepcopy(model)
    masks = obs_prune(obs, 0.5, batches, block_size=6, damp=1e-10, loss_fn=mse)
    w = obs.weight.detach()[0]
    keep = masks["weight"][0]
    assert int(keep.sum()) == 3 and bool((w[~keep] == 0).all())
    assert loss(obs) < loss(mag)
    # exact OBS on a quadratic = least-squares refit of the survivors
    sol = torch.linalg.lstsq(xs[:, keep], ys.unsqueeze(1)).solution[:, 0]
    refit = 0.5 * float(((xs[:, keep] @ sol - ys) ** 2).mean())
    assert loss(obs) == pytest.approx(refit, rel=1e-6)
    assert torch.allclose(w[keep], sol, rtol=1e-5)


def test_obs_joint_update_zeroes_pruned_weights_within_blocks_only():
    g = torch.Generator().manual_seed(0)
    d, block = 10, 4  # three blocks, the last padded
    a = torch.randn(3, block, block, generator=g, dtype=torch.float64)
    finv = a @ a.transpose(1, 2) + 0.1 * torch.eye(block, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    pruned = torch.zeros(d, dtype=torch.bool)
    pruned[[0, 2, 3, 9]] = True  # two-plus in block 0, none in block 1, one in block 2
    new = obs_update(w, finv, pruned)
    assert torch.allclose(new[pruned], torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.equal(new[4:8], w[4:8])  # block without pruned weights: untouched
    assert not torch.allclose(new[1], w[1])  # survivor in a pruned block: corrected
    # joint formula for block 0: δw = -F⁻¹[:, P] ([F⁻¹]_PP)⁻¹ w_P
    p = torch.tensor([0, 2, 3])
    delta = -finv[0][:, p] @ torch.linalg.solve(finv[0][p][:, p], w[p])
    assert torch.allclose(new[:4], w[:4] + delta)


# -- movement --------------------------------------------------------------------------------------
def test_movement_rewards_weights_moving_away_from_zero():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleNamespace(model=model, optimizer=opt)
    tracker = MovementTracker()
    tracker.on_train_begin(trainer)
    for _ in range(3):
        # SGD moves w - lr*g: entries (0,0) and (1,0) away from zero, (0,1) and (1,1) towards it
        model.weight.grad = torch.tensor([[-0.5, 0.5], [0.5, -0.5]])
        tracker.on_after_backward(trainer, 0)
        opt.step()
    s = tracker.criterion(ctx_for(model))["weight"]
    assert s[0, 0] > 0 and s[1, 0] > 0 and s[0, 1] < 0 and s[1, 1] < 0
    assert bool((model.weight[:, 0].abs() > 1).all()) and bool((model.weight[:, 1].abs() < 1).all())
    masks = prune(model, 0.5, criterion=tracker.criterion)
    assert masks["weight"][:, 0].all() and not masks["weight"][:, 1].any()

    restored = MovementTracker()
    restored.load_state_dict(tracker.state_dict())
    assert torch.equal(restored.criterion(ctx_for(model))["weight"], s) and restored.steps == 3
    with pytest.raises(ConfigError):
        MovementTracker().criterion(ctx_for(model))


def _train_setup(epochs, callbacks):
    from prunezoo.data import ArrayDataset
    from prunezoo.training import Trainer, TrainingConfig

    x, y = batch(64, 8, 3, 0)
    model = mlp(widths=(8, 6, 3))
    cfg = TrainingConfig(epochs=epochs, batch_size=16, lr=0.05, optimizer="sgd", momentum=0.9, seed=0)
    return model, Trainer(model, ArrayDataset(x, y), cfg, callbacks=callbacks, progress=False)


def test_movement_scores_survive_checkpoint_resume(tmp_path):
    from prunezoo.training.callbacks import StopAtStep

    full = MovementTracker()
    _train_setup(2, [full])[1].fit()
    part = MovementTracker()
    _train_setup(2, [part, StopAtStep(4)])[1].fit(checkpoint_dir=tmp_path / "ckpt")
    assert part.steps == 4
    resumed = MovementTracker()
    _train_setup(2, [resumed])[1].fit(resume_from=tmp_path / "ckpt")
    assert resumed.steps == full.steps == 8
    for n, s in full.scores.items():
        assert torch.allclose(resumed.scores[n], s, atol=1e-7)
        assert not torch.allclose(part.scores[n], s)


def test_movement_criterion_drives_gradual_pruning():
    from prunezoo.schedules import GradualMagnitudePruning

    tracker = MovementTracker()
    gmp = GradualMagnitudePruning(0.75, criterion=tracker.criterion, start_epoch=1, frequency=2)
    model, trainer = _train_setup(3, [tracker, gmp])
    trainer.fit()
    assert gmp.masks.density() == pytest.approx(0.25, abs=0.02)
    assert MaskSet.from_model(model).is_subset_of(gmp.masks)  # pruned weights are zero
    # same run with magnitude scores: a different mask, so the movement scores were used
    by_magnitude = GradualMagnitudePruning(0.75, start_epoch=1, frequency=2)
    _train_setup(3, [by_magnitude])[1].fit()
    assert gmp.masks.iou(by_magnitude.masks) < 0.9


# -- oracle ----------------------------------------------------------------------------------------
def test_oracle_matches_brute_force_loop_and_is_its_own_perfect_criterion():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    batches = [batch(10, 4, 3, 0), batch(6, 4, 3, 1)]
    snap = snapshot(model)
    got = oracle_scores(model, batches)["weight"]
    xs = torch.cat([b[0] for b in batches]).double()
    ys = torch.cat([b[1] for b in batches])
    ref = copy.deepcopy(model).double()
    base = float(F.cross_entropy(ref(xs), ys).detach())
    for i in range(3):
        for j in range(4):
            m = copy.deepcopy(ref)
            with torch.no_grad():
                m.weight[i, j] = 0
            assert got[i, j].item() == pytest.approx(
                float(F.cross_entropy(m(xs), ys).detach()) - base, rel=1e-9, abs=1e-12
            )
    neuron = oracle_scores(model, batches, units="neuron")["weight"]
    for i in range(3):
        m = copy.deepcopy(ref)
        with torch.no_grad():
            m.weight[i] = 0
        assert neuron[i].item() == pytest.approx(float(F.cross_entropy(m(xs), ys).detach()) - base, rel=1e-9, abs=1e-12)
    assert_unchanged(model, snap)

    sub = oracle_scores(model, batches, max_items=5)["weight"]
    assert int((~sub.isnan()).sum()) == 5 and torch.allclose(sub[~sub.isnan()], got[~sub.isnan()])

    def oracle_criterion(ctx):
        return oracle_scores(ctx.model, ctx.batches, params=ctx.params)

    q = criterion_quality(model, oracle_criterion, batches)
    assert q["spearman"] == pytest.approx(1.0) and q["layers"]["weight"] == pytest.approx(1.0)
    assert q["items"] == {"weight": 12}
    neg = criterion_quality(model, lambda ctx: {n: -s for n, s in oracle_criterion(ctx).items()}, batches)
    assert neg["spearman"] == pytest.approx(-1.0)


def test_magnitude_tracks_the_oracle_on_a_trained_digits_mlp():
    from prunezoo.data import load_dataset
    from prunezoo.models import build_model

    data = load_dataset("digits")
    x, y = data.train.get_batch(torch.arange(len(data.train.y)))
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=10, input_shape=data.train.input_shape, hidden=[32])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):  # full-batch training: a few ms per step
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:512]
    batches = [(x[idx], y[idx])]
    q = criterion_quality(model, "magnitude", batches, max_items=150, seed=0)
    assert q["spearman"] > 0.2
    assert all(v > 0 for v in q["layers"].values()) and q["items"] == {"fc1.weight": 150, "fc2.weight": 150}
    random_q = criterion_quality(model, "random", batches, max_items=150, seed=0)
    assert abs(random_q["spearman"]) < q["spearman"]
    qn = criterion_quality(model, "magnitude", batches, units="neuron", max_items=20)
    assert qn["items"] == {"fc1.weight": 20, "fc2.weight": 10} and -1 <= qn["spearman"] <= 1


# -- every registered criterion through prune() ----------------------------------------------------
@pytest.mark.parametrize("name", sorted(CRITERIA))
@pytest.mark.parametrize("scheme", ["global", "erk"])
def test_every_criterion_prunes_deterministically_and_leaves_the_model_alone(name, scheme):
    for model, b in (
        (mlp(), [batch(16, 12, 4, 0), batch(8, 12, 4, 1)]),
        (conv_bn(), [batch(8, 0, 5, 0, shape=(1, 8, 8))]),
    ):
        model.train()
        snap = snapshot(model)
        rng = torch.get_rng_state()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # OBD/OBS fallback on the BN model
            a = prune(model, 0.1, criterion=name, batches=b, scheme=scheme, seed=5)
            again = prune(model, 0.1, criterion=name, batches=b, scheme=scheme, seed=5)
        assert a.density() == pytest.approx(0.1, abs=0.02)
        assert all(torch.equal(a[n], again[n]) for n in a)
        assert_unchanged(model, snap)
        assert torch.equal(torch.get_rng_state(), rng)  # scoring draws from its own generator


def test_scores_are_informative_not_constant():
    model, b = mlp(), [batch(16, 12, 4, 0)]
    for name in sorted(CRITERIA):
        scores = get_criterion(name)(ctx_for(model, b))
        flat = torch.cat([s.flatten().float() for s in scores.values()])
        assert torch.isfinite(flat).all() and flat.unique().numel() > flat.numel() // 2, name
        assert not math.isclose(float(flat.std()), 0.0), name


@pytest.mark.parametrize("name", ["snip", "grasp", "obd", "obs", "synflow"])
def test_frozen_weights_are_scored_and_stay_frozen(name):
    model = mlp()
    model[0].weight.requires_grad_(False)  # e.g. a frozen first layer
    scores = get_criterion(name)(ctx_for(model, [batch(16, 12, 4, 0)]))
    assert scores["0.weight"].abs().sum() > 0
    assert not model[0].weight.requires_grad and model[2].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_movement_is_a_study_criterion_for_gmp(tmp_path):
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    base = {
        "name": "mv",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "options": {"hidden": [16]}},
        "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
    }
    cfg = parse_config(
        {
            **base,
            "methods": [
                {"name": "movement", "kind": "gmp", "criterion": "movement", "sparsities": [0.8], "gmp_frequency": 5},
                {"name": "gmp", "kind": "gmp", "sparsities": [0.8], "gmp_frequency": 5},
            ],
        }
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    assert rows["movement"]["sparsity"] == pytest.approx(0.8, abs=2e-3) and rows["movement"]["test_acc"] > 0.3
    runs = res.directory / "runs"
    by_movement = MaskSet.load(runs / rows["movement"]["run_id"] / "masks.safetensors")
    by_magnitude = MaskSet.load(runs / rows["gmp"]["run_id"] / "masks.safetensors")
    assert by_movement.iou(by_magnitude) < 0.9  # same training, other scores: another mask
    again = run_study(cfg, tmp_path / "again", workers=1)  # same seed: same scores, same mask
    row = next(r for r in again.rows if r["method"] == "movement")
    repeat = MaskSet.load(again.directory / "runs" / row["run_id"] / "masks.safetensors")
    assert all(torch.equal(repeat[n], by_movement[n]) for n in by_movement)
    assert row["test_acc"] == rows["movement"]["test_acc"]
    for kind in ("oneshot", "at-init", "dst"):  # no training trajectory to score: rejected up front
        with pytest.raises(ConfigError, match="training-time") as err:
            parse_config(
                {**base, "methods": [{"name": "m", "kind": kind, "criterion": "movement", "sparsities": [0.5]}]}
            )
        assert err.value.field == "methods.0.criterion"


def test_obs_with_update_beats_obd_and_magnitude_on_loss_change():
    model, batches, xs, ys = least_squares_problem(d=12, n=40)
    loss = lambda m: float(mse(m(xs), ys).detach())
    after = {}
    for name in ("magnitude", "obd"):
        m = copy.deepcopy(model)
        prune(m, 0.5, criterion=name, batches=batches, loss_fn=mse).apply(m)
        after[name] = loss(m)
    obs = copy.deepcopy(model)
    obs_prune(obs, 0.5, batches, block_size=12, damp=1e-8, loss_fn=mse)
    no_update = copy.deepcopy(model)
    prune(no_update, 0.5, criterion="obs", batches=batches, loss_fn=mse).apply(no_update)
    assert loss(obs) < min(after.values()) and loss(obs) < loss(no_update)


def test_oneshot_obs_in_a_study_applies_the_weight_update(tmp_path):
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study
    from prunezoo.training.checkpoint import load_state

    cfg = parse_config(
        {
            "name": "obs",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [16]}},
            "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
            "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
            "methods": [
                {
                    "name": "obs",
                    "kind": "oneshot",
                    "criterion": "obs",
                    "sparsities": [0.7],
                    "options": {"block_size": 16},
                },
                {
                    "name": "obs-select",
                    "kind": "oneshot",
                    "criterion": "obs",
                    "sparsities": [0.7],
                    "options": {"update": False},
                },
            ],
        }
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    runs = res.directory / "runs"
    dense = load_state(runs / next(r for r in res.rows if r["method"] == "dense")["run_id"] / "final.safetensors")
    updated = runs / rows["obs"]["run_id"] / "obs-pruned.safetensors"
    assert updated.exists() and not (runs / rows["obs-select"]["run_id"] / "obs-pruned.safetensors").exists()
    pruned = load_state(updated)
    keep = MaskSet.load(runs / rows["obs"]["run_id"] / "masks.safetensors")
    w, w0 = pruned["fc1.weight"], dense["fc1.weight"]
    assert torch.all(w[~keep["fc1.weight"]] == 0)
    assert not torch.allclose(w[keep["fc1.weight"]], w0[keep["fc1.weight"]])  # survivors were corrected
    assert rows["obs"]["sparsity"] == pytest.approx(0.7, abs=2e-3)
    with pytest.raises(ConfigError, match="bogus") as err:  # rejected before anything trains
        parse_config(
            {
                **cfg.model_dump(mode="json"),
                "methods": [
                    {"name": "obs", "kind": "oneshot", "criterion": "obs", "sparsities": [0.7], "options": {"bogus": 1}}
                ],
            }
        )
    assert err.value.field == "methods.0"


def test_criteria_quality_of_a_study_from_the_cli(tmp_path):
    import json

    from typer.testing import CliRunner

    from prunezoo.analysis.criteria_quality import study_criteria_quality
    from prunezoo.cli import app
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    cfg = parse_config(
        {
            "name": "q",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [16]}},
            "training": {"epochs": 3, "batch_size": 64, "lr": 0.1},
            "methods": [],
        }
    )
    study_dir = run_study(cfg, tmp_path, workers=1).directory
    res = CliRunner().invoke(
        app,
        [
            "criteria-quality",
            str(study_dir),
            "--criteria",
            "magnitude,random,taylor",
            "--max-items",
            "40",
            "--batches",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "magnitude" in res.output and "fc1.weight" in res.output
    saved = json.loads((study_dir / "criteria-quality.json").read_text())
    q = saved["criteria"]
    assert set(q) == {"magnitude", "random", "taylor"} and saved["samples"] == 128
    assert q["magnitude"]["items"] == {"fc1.weight": 40, "fc2.weight": 40}
    assert q["magnitude"]["spearman"] > abs(q["random"]["spearman"])
    # same numbers as the library helper on the same model and batches (the oracle is shared, not redrawn)
    again = study_criteria_quality(study_dir, ["taylor"], max_items=40, batches=2)
    assert again["criteria"]["taylor"]["spearman"] == pytest.approx(q["taylor"]["spearman"])
    init = study_criteria_quality(study_dir, ["snip"], state="init", units="neuron", max_items=None, batches=1)
    assert init["criteria"]["snip"]["items"] == {"fc1.weight": 16, "fc2.weight": 10}
    bad = CliRunner().invoke(app, ["criteria-quality", str(study_dir), "--criteria", "movement"])
    assert bad.exit_code == 2 and "criteria" in bad.output


def test_movement_pruning_while_fine_tuning_the_trained_model(tmp_path):
    import json

    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.plan import plan_study
    from prunezoo.experiments.study import run_study

    base = {
        "name": "mvft",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "options": {"hidden": [32]}},
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.1},
        "finetune": {"epochs": 2, "batch_size": 64, "lr": 0.01},
    }
    cfg = parse_config(
        {
            **base,
            "methods": [
                {
                    "name": "mv",
                    "kind": "gmp",
                    "criterion": "movement",
                    "sparsities": [0.8],
                    "gmp_frequency": 5,
                    "options": {"from_dense": True},
                }
            ],
        }
    )
    jobs = {j.method: j for j in plan_study(cfg)}
    assert jobs["mv"].deps == (jobs["dense"].id,) and jobs["mv"].spec["parent"] == jobs["dense"].id
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    hist = json.loads((res.directory / "histories.json").read_text())[rows["mv"]["run_id"]]
    assert len(hist) == 2  # the fine-tuning budget, not the training one
    from prunezoo.training.checkpoint import load_state

    runs = res.directory / "runs"
    dense_dir, mv_dir = runs / rows["dense"]["run_id"], runs / rows["mv"]["run_id"]
    w = load_state(mv_dir / "final.safetensors")["fc1.weight"]
    keep = MaskSet.load(mv_dir / "masks.safetensors")["fc1.weight"]
    to_trained = (w - load_state(dense_dir / "final.safetensors")["fc1.weight"])[keep].norm()
    to_init = (w - load_state(dense_dir / "init.safetensors")["fc1.weight"])[keep].norm()
    assert to_trained < 0.5 * to_init  # started from the trained model, not from init
    assert rows["mv"]["sparsity"] == pytest.approx(0.8, abs=2e-3)
    with pytest.raises(ConfigError, match="from_dense"):
        parse_config({**base, "methods": [{"name": "g", "kind": "gmp", "sparsities": [0.5], "options": {"from": 1}}]})
