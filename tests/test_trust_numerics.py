"""Numerical-correctness regressions of issue 19: GMP reaches its target, top-k counts survive NaN,
criteria score in their paper's train/eval mode, RigL follows the reference update, and pruned
weights stay exactly zero (with zero optimizer state) under momentum."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunezoo.data.datasets import ArrayDataset
from prunezoo.schedules import GradualMagnitudePruning
from prunezoo.sparsity import MaskSet
from prunezoo.training import Callback, Trainer, TrainingConfig, seed_everything


def _data(n=64, d=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :classes].argmax(1)).long()
    return ArrayDataset(x, y)


def _mlp(d=12, classes=3, seed=0):
    seed_everything(seed)
    return nn.Sequential(nn.Linear(d, 20), nn.ReLU(), nn.Linear(20, classes))


class _StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, metrics):
        trainer.stop_requested = epoch + 1 >= self.epochs


def _gmp_run(steps, frequency, *, momentum=0.9, callbacks=(), **gmp_kwargs):
    model = _mlp()
    gmp = GradualMagnitudePruning(0.9, frequency=frequency, **gmp_kwargs)
    cfg = TrainingConfig(steps=steps, batch_size=8, lr=0.05, momentum=momentum)
    trainer = Trainer(model, _data(), cfg, callbacks=[*callbacks, gmp], progress=False)
    trainer.fit()
    return model, gmp, trainer


# -- item 1: GMP always reaches its final sparsity -----------------------------------------------
@pytest.mark.parametrize("steps,frequency", [(100, 25), (50, 100), (40, 40), (41, 10), (7, 1)])
def test_gmp_reaches_final_sparsity_exactly(steps, frequency):
    model, gmp, _ = _gmp_run(steps, frequency)
    assert gmp.prune_steps[-1] <= steps - 1  # the last event is a step that runs
    assert [e["step"] for e in gmp.events][-1] == gmp.prune_steps[-1]
    expected = 1 - round(0.1 * gmp.masks.numel()) / gmp.masks.numel()
    assert gmp.masks.sparsity() == pytest.approx(expected, abs=1e-12)
    assert MaskSet.from_model(model).is_subset_of(gmp.masks)


def test_gmp_schedule_keeps_its_cadence_and_only_ends_earlier():
    _, gmp, _ = _gmp_run(100, 25)
    assert gmp.prune_steps == [0, 25, 50, 75]
    _, gmp, _ = _gmp_run(50, 100)  # training shorter than one interval: one event, straight to the target
    assert gmp.prune_steps == [0] and len(gmp.events) == 1


def test_gmp_start_after_training_is_a_clear_error():
    with pytest.raises(ValueError, match="start_epoch"):
        _gmp_run(10, 5, start_epoch=5)


def test_gmp_resume_from_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    cfg = TrainingConfig(epochs=4, batch_size=16, lr=0.05, momentum=0.9)  # 4 steps per epoch, 16 steps
    full_model = _mlp()
    full = GradualMagnitudePruning(0.9, frequency=3)
    Trainer(full_model, _data(), cfg, callbacks=[full], progress=False).fit()

    part_model = _mlp()
    part = GradualMagnitudePruning(0.9, frequency=3)
    # a job killed after two epochs (the checkpoint of epoch 2 is written, then training stops)
    Trainer(part_model, _data(), cfg, callbacks=[part, _StopAfter(2)], progress=False).fit(
        checkpoint_dir=tmp_path / "ckpt"
    )
    assert part.events and part.events[-1]["step"] < 8 < full.events[-1]["step"]
    resumed_model = _mlp(seed=1)  # different weights: everything must come from the checkpoint
    resumed = GradualMagnitudePruning(0.9, frequency=3)
    Trainer(resumed_model, _data(), cfg, callbacks=[resumed], progress=False).fit(resume_from=tmp_path / "ckpt")
    assert [e["step"] for e in resumed.events] == [e["step"] for e in full.events]
    assert resumed.masks.sparsity() == full.masks.sparsity()
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)


# -- item 4: NaN scores never break the exact top-k count ------------------------------------------
def test_keep_top_k_ranks_nan_lowest_and_keeps_the_exact_count():
    from prunezoo.sparsity.topk import keep_top_k

    nan = float("nan")
    assert keep_top_k(torch.tensor([nan, 1.0, 2.0, 3.0]), 2).tolist() == [False, False, True, True]
    # NaN below -inf: a restricted (-inf) entry is kept before a NaN one
    assert keep_top_k(torch.tensor([nan, float("-inf"), 5.0]), 2).tolist() == [False, True, True]
    # more kept than there are numbers: NaNs fill the rest in index order
    assert keep_top_k(torch.tensor([nan, 1.0, nan, nan]), 3).tolist() == [True, True, True, False]
    assert int(keep_top_k(torch.tensor([nan] * 5), 2).sum()) == 2
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        s = torch.tensor([3.0, nan, 1.0, 2.0, nan], dtype=dtype)
        assert keep_top_k(s, 2).tolist() == [True, False, False, True, False]


def test_float64_scores_keep_exactly_k_when_float32_would_tie():
    from prunezoo.sparsity.topk import global_keep_masks, keep_top_k

    s = torch.tensor([1 + 1e-12, 1 + 3e-12, 1 + 2e-12, 0.0], dtype=torch.float64)  # all 1.0 in float32
    assert keep_top_k(s, 1).tolist() == [False, True, False, False]
    out = global_keep_masks({"a": s[:2], "b": s[2:]}, 2)
    assert out["a"].tolist() == [False, True] and out["b"].tolist() == [True, False]


def test_prune_and_global_selection_keep_exact_counts_with_a_nan_score():
    from prunezoo.pruning import prune
    from prunezoo.sparsity.topk import global_keep_masks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 10))  # 200 prunable weights

    def crit(ctx):
        scores = {n: p.detach().abs().clone() for n, p in ctx.params.items()}
        scores["0.weight"][3, 4] = float("nan")
        return scores

    for scheme in ("global", "uniform", "erk"):
        with pytest.warns(RuntimeWarning, match=r"0\.weight"):
            masks = prune(model, 0.5, criterion=crit, scheme=scheme)
        assert masks.nnz() == 100, scheme
        assert not bool(masks["0.weight"][3, 4])
    scores = {"a": torch.tensor([float("nan"), 1.0, 2.0]), "b": torch.tensor([0.5, float("nan")])}
    out = global_keep_masks(scores, 3)
    assert out["a"].tolist() == [False, True, True] and out["b"].tolist() == [True, False]


# -- item 5: each criterion scores in its paper's train/eval mode -----------------------------------
def _bn_cnn():
    seed_everything(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    )
    from helpers import randomize_bn

    randomize_bn(model)
    return model


def _bn_batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 2, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]


@pytest.mark.filterwarnings("ignore:per-sample gradients")  # vmap cannot run BatchNorm in train mode
@pytest.mark.parametrize(
    "name,mode",
    [("snip", "eval"), ("grasp", "train"), ("taylor", "train"), ("obd", "eval"), ("obs", "eval"), ("synflow", "eval")],
)
def test_criteria_score_in_their_papers_mode_whatever_mode_the_model_is_in(name, mode):
    from prunezoo.criteria import SCORING_MODES, ScoringContext, criterion_with_mode, get_criterion
    from prunezoo.sparsity.selection import prunable_parameters

    assert SCORING_MODES[name] == mode
    model, batches = _bn_cnn(), _bn_batches()

    def scores(criterion, model_mode):
        model.train(model_mode == "train")
        ctx = ScoringContext(
            model=model, params=prunable_parameters(model), batches=batches, generator=torch.Generator().manual_seed(0)
        )
        out = get_criterion(criterion)(ctx)
        assert model.training == (model_mode == "train")  # the caller's mode is restored
        assert all(m.training == model.training for m in model.modules())
        return out

    default_from_train, default_from_eval = scores(name, "train"), scores(name, "eval")
    explicit = scores(criterion_with_mode(name, mode), "train")
    other = scores(criterion_with_mode(name, "train" if mode == "eval" else "eval"), "train")
    for n in default_from_train:
        assert torch.equal(default_from_train[n], default_from_eval[n]), n
        assert torch.equal(default_from_train[n], explicit[n]), n
    if name != "synflow":  # SynFlow feeds all-ones input: BN batch statistics of one sample differ too
        assert any(not torch.allclose(default_from_train[n], other[n]) for n in other)


def test_score_mode_errors_name_the_field():
    from prunezoo.criteria import criterion_with_mode
    from prunezoo.errors import ConfigError

    with pytest.raises(ConfigError, match="score_mode"):
        criterion_with_mode("snip", "inference")
    with pytest.raises(ConfigError, match="magnitude"):
        criterion_with_mode("magnitude", "eval")
    assert criterion_with_mode("magnitude", None) == "magnitude"


def test_obs_prune_scores_in_eval_mode_by_default():
    from prunezoo.pruning import obs_prune

    masks = []
    for model_mode in (True, False):
        model = _bn_cnn()
        model.train(model_mode)
        masks.append(obs_prune(model, 0.5, _bn_batches(), block_size=8))
        assert model.training == model_mode
    assert masks[0].iou(masks[1]) == 1.0


def test_study_method_score_mode_option_is_validated_and_used():
    from pydantic import ValidationError

    from prunezoo.criteria import ScoringContext, get_criterion, make_snip
    from prunezoo.experiments.config import MethodConfig
    from prunezoo.experiments.jobs import scoring_criterion
    from prunezoo.sparsity.selection import prunable_parameters

    method = MethodConfig(
        name="snip-train", kind="at-init", criterion="snip", sparsities=[0.5], options={"score_mode": "train"}
    )
    assert scoring_criterion(MethodConfig(name="s", kind="oneshot", criterion="snip", sparsities=[0.5])) == "snip"
    model, batches = _bn_cnn(), _bn_batches()
    model.eval()
    ctx = lambda: ScoringContext(model=model, params=prunable_parameters(model), batches=batches)
    got = get_criterion(scoring_criterion(method))(ctx())
    want = make_snip("train")(ctx())
    paper = get_criterion("snip")(ctx())
    assert all(torch.equal(got[n], want[n]) for n in got)
    assert not all(torch.equal(got[n], paper[n]) for n in got)
    for options, needle in [({"score_mode": "inference"}, "score_mode"), ({"score_mode": "eval"}, "magnitude")]:
        with pytest.raises(ValidationError, match=needle):
            MethodConfig(
                name="m",
                kind="oneshot",
                criterion="snip" if needle == "score_mode" else "magnitude",
                sparsities=[0.5],
                options=options,
            )
    MethodConfig(name="o", kind="oneshot", criterion="obs", sparsities=[0.5], options={"score_mode": "train"})


# -- item 13: pruned weights are exactly 0 after every step; gradient masking is real ---------------
class _CheckPrunedZero(Callback):
    """Placed after the schedule: after every optimizer step, every pruned weight must be exactly 0."""

    def __init__(self, sched):
        self.sched, self.checked_events = sched, set()

    def on_step_end(self, trainer, step, loss):
        params = dict(trainer.model.named_parameters())
        for name, m in self.sched.masks.items():
            assert torch.all(params[name].detach()[~m] == 0), (step, name)
        self.checked_events.add(len(self.sched.events))


def test_gmp_pruned_weights_stay_exactly_zero_after_later_pruning_events_under_momentum():
    model = _mlp()
    gmp = GradualMagnitudePruning(0.9, frequency=5)
    check = _CheckPrunedZero(gmp)
    cfg = TrainingConfig(steps=40, batch_size=8, lr=0.1, momentum=0.9, weight_decay=1e-3)
    Trainer(model, _data(), cfg, callbacks=[gmp, check], progress=False).fit()
    assert len(gmp.events) >= 4 and {2, 3, len(gmp.events)} <= check.checked_events
    assert gmp.masks.sparsity() > 0.89


def test_gradient_masking_is_on_by_default_and_keeps_pruned_momentum_zero():
    from prunezoo.pruning import prune
    from prunezoo.training.callbacks import EnforceMasks

    model = _mlp()
    masks = prune(model, 0.3)
    trainer = Trainer(
        model,
        _data(),
        TrainingConfig(steps=10, batch_size=8, lr=0.1, momentum=0.9),
        callbacks=[EnforceMasks(masks)],
        progress=False,
    )
    trainer.fit()
    params = dict(model.named_parameters())
    for name, m in masks.items():
        buf = trainer.optimizer.state[params[name]]["momentum_buffer"]
        assert torch.all(buf[~m] == 0) and torch.any(buf[m] != 0), name


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2),
    ],
)
def test_gradient_masking_changes_no_kept_weight(make_opt):
    from prunezoo.pruning import prune

    results = []
    for mask_gradients in (True, False):
        model = _mlp()
        masks = prune(model, 0.4, criterion="random", seed=1)
        opt = make_opt(model.parameters())
        masks.attach(model, opt, mask_gradients=mask_gradients)
        g = torch.Generator().manual_seed(0)
        for _ in range(5):
            x, y = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # clipping sees the dense gradient either way
            opt.step()
        results.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_structured_channel_selection_prunes_a_nan_channel_first_and_keeps_the_count(scope):
    from prunezoo.structured.prune import prune_channels

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 3)
    )
    with torch.no_grad():
        model[0].weight[5, 0, 0, 0] = float("nan")  # its l1 filter norm is NaN
    res = prune_channels(model, torch.randn(1, 2, 6, 6), 0.5, criterion="l1", scope=scope)
    assert 5 in res.removed["0"]
    assert sum(len(v) for v in res.removed.values()) == 8  # half of the 16 prunable channels


def test_oneshot_obs_without_update_uses_its_fisher_options():
    from prunezoo.criteria import ScoringContext, get_criterion, make_obs
    from prunezoo.experiments.config import MethodConfig
    from prunezoo.experiments.jobs import scoring_criterion
    from prunezoo.sparsity.selection import prunable_parameters

    method = MethodConfig(
        name="o",
        kind="oneshot",
        criterion="obs",
        sparsities=[0.5],
        options={"update": False, "block_size": 4, "damp": 1e-2},
    )
    model = _mlp()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g))]
    ctx = lambda: ScoringContext(model=model, params=prunable_parameters(model), batches=batches)
    got = get_criterion(scoring_criterion(method))(ctx())
    want = make_obs(block_size=4, damp=1e-2)(ctx())
    default = get_criterion("obs")(ctx())
    assert all(torch.equal(got[n], want[n]) for n in got)
    assert not all(torch.allclose(got[n], default[n]) for n in got)
