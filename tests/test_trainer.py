"""Trainer: determinism, resume from checkpoint, LR schedules, optimizers, schedules as callbacks."""

import pytest
import torch
from pydantic import ValidationError

from prunezoo.data import load_dataset
from prunezoo.models import build_model
from prunezoo.schedules import GradualMagnitudePruning, OneShot
from prunezoo.sparsity import MaskSet
from prunezoo.training import Callback, Trainer, TrainingConfig, seed_everything
from prunezoo.training.optim import lr_at


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(data, seed=0):
    seed_everything(seed)
    return build_model("mlp", num_classes=data.num_classes, input_shape=data.input_shape, hidden=[32])


def _strip(history):
    return [{k: v for k, v in h.items() if k != "time_s"} for h in history]


def test_same_seed_same_metrics_and_weights(digits):
    cfg = TrainingConfig(epochs=2, batch_size=32, lr=0.05, seed=3)
    runs = []
    for _ in range(2):
        model = _model(digits)
        hist = Trainer(model, digits.train, cfg, eval_sets={"test": digits.test}).fit()
        runs.append((hist, model.state_dict()))
    assert _strip(runs[0][0]) == _strip(runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    h = runs[0][0][-1]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "test_entropy", "lr", "step", "epoch"):
        assert key in h
    assert h["test_acc"] > 0.5


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch + 1 == self.epochs:
            trainer.stop_requested = True


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_resume_from_checkpoint_matches_uninterrupted(digits, tmp_path, optimizer):
    cfg = TrainingConfig(epochs=3, batch_size=64, lr=0.01, optimizer=optimizer, lr_schedule="cosine", weight_decay=1e-3)
    full = _model(digits)
    full_hist = Trainer(full, digits.train, cfg, eval_sets={"test": digits.test}).fit()

    part = _model(digits)
    Trainer(part, digits.train, cfg, eval_sets={"test": digits.test}, callbacks=[StopAfter(1)]).fit(
        checkpoint_dir=tmp_path / "ckpt"
    )
    resumed = _model(digits, seed=99)  # different init: everything must come from the checkpoint
    hist = Trainer(resumed, digits.train, cfg, eval_sets={"test": digits.test}).fit(resume_from=tmp_path / "ckpt")
    assert _strip(hist) == _strip(full_hist)
    assert all(torch.equal(resumed.state_dict()[k], full.state_dict()[k]) for k in full.state_dict())


def test_start_step_runs_remaining_steps(digits):
    cfg = TrainingConfig(epochs=2, batch_size=64)
    trainer = Trainer(_model(digits), digits.train, cfg)
    hist = trainer.fit(start_step=trainer.steps_per_epoch + 3)
    assert trainer.step == trainer.total_steps
    assert len(hist) == 1 and hist[0]["epoch"] == 2
    with pytest.raises(ValueError, match="start_step"):
        Trainer(_model(digits), digits.train, cfg).fit(start_step=10_000)


def test_steps_unit_overrides_epochs(digits):
    trainer = Trainer(_model(digits), digits.train, TrainingConfig(epochs=50, steps=7, batch_size=64))
    trainer.fit()
    assert trainer.step == 7


def test_lr_schedules():
    c = TrainingConfig(lr=1.0, lr_schedule="step", milestones=[1, 2], gamma=0.1)
    assert [lr_at(s, 30, 10, c) for s in (0, 9, 10, 20)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    c = TrainingConfig(lr=1.0, lr_schedule="cosine")
    assert lr_at(0, 100, 10, c) == 1.0 and lr_at(50, 100, 10, c) == pytest.approx(0.5)
    c = TrainingConfig(lr=1.0, lr_schedule="linear", warmup_epochs=1)
    assert lr_at(0, 110, 10, c) == pytest.approx(0.1) and lr_at(9, 110, 10, c) == pytest.approx(1.0)
    assert lr_at(60, 110, 10, c) == pytest.approx(0.5)


def test_label_smoothing_changes_the_loss(digits):
    losses = []
    for ls in (0.0, 0.3):
        h = Trainer(_model(digits), digits.train, TrainingConfig(epochs=1, label_smoothing=ls, lr=0.01)).fit()
        losses.append(h[-1]["train_loss"])
    assert losses[1] > losses[0]


@pytest.mark.parametrize(
    "bad",
    [
        dict(epochs=-1),
        dict(lr=0),
        dict(optimizer="rmsprop"),
        dict(batch_size=0),
        dict(nesterov=True, optimizer="adam"),
        dict(bogus=1),
    ],
)
def test_config_errors_name_the_field(bad):
    with pytest.raises(ValidationError) as err:
        TrainingConfig(**bad)
    field = next(iter(bad)) if "nesterov" not in bad else "nesterov"
    assert field in str(err.value)


def test_gradual_magnitude_pruning_reaches_target_monotonically(digits):
    model = _model(digits)
    gmp = GradualMagnitudePruning(0.9, frequency=5, end_epoch=2)
    Trainer(model, digits.train, TrainingConfig(epochs=3, batch_size=64, lr=0.05), callbacks=[gmp]).fit()
    dens = [e["density"] for e in gmp.events]
    assert dens == sorted(dens, reverse=True)
    assert gmp.masks.density() == pytest.approx(0.1, abs=1e-3)
    assert MaskSet.from_model(model).density() <= 0.1 + 1e-3


def test_one_shot_then_fine_tune_keeps_density(digits):
    model = _model(digits)
    sched = OneShot(0.2, criterion="magnitude")
    Trainer(model, digits.train, TrainingConfig(epochs=1, optimizer="adam", lr=1e-3), callbacks=[sched]).fit()
    assert MaskSet.from_model(model).density() == pytest.approx(0.2, abs=1e-3)


class _L1(Callback):
    def __init__(self, weight):
        self.weight = weight

    def extra_loss(self, trainer, step):
        return self.weight * sum(p.abs().sum() for n, p in trainer.model.named_parameters() if n.endswith("weight"))


def test_callback_loss_terms_are_optimised_but_not_reported(digits):
    cfg = TrainingConfig(epochs=2, batch_size=32, lr=0.05)
    plain, penalised = _model(digits), _model(digits)
    h_plain = Trainer(plain, digits.train, cfg).fit()
    h_pen = Trainer(penalised, digits.train, cfg, callbacks=[_L1(1e-3)]).fit()
    l1 = lambda m: sum(p.abs().sum().item() for n, p in m.named_parameters() if n.endswith("weight"))
    assert l1(penalised) < 0.8 * l1(plain)
    # the reported train loss is the data term only: the L1 term (~several units) is not in it
    assert h_pen[-1]["train_loss"] < 1.0 and abs(h_pen[-1]["train_loss"] - h_plain[-1]["train_loss"]) < 0.5


def test_checkpoint_every_k_epochs_saves_less_and_resumes_exactly(digits, tmp_path, monkeypatch):
    import prunezoo.training.trainer as trainer_module

    saved_steps = []
    real_save = trainer_module.save_checkpoint
    monkeypatch.setattr(
        trainer_module, "save_checkpoint", lambda *a, **k: (saved_steps.append(k["step"]), real_save(*a, **k))[1]
    )
    every = TrainingConfig(epochs=5, batch_size=64, lr=0.02, checkpoint_every=3)
    full = _model(digits)
    full_hist = Trainer(full, digits.train, TrainingConfig(epochs=5, batch_size=64, lr=0.02)).fit()
    model = _model(digits)
    trainer = Trainer(model, digits.train, every)
    hist = trainer.fit(checkpoint_dir=tmp_path / "ckpt")
    spe = trainer.steps_per_epoch
    assert saved_steps == [3 * spe, 5 * spe]  # every 3rd epoch and after the last
    assert _strip(hist) == _strip(full_hist)  # checkpointing less changes nothing computed
    # the epoch-3 checkpoint (kept as .previous) resumes to the same final weights
    resumed = _model(digits, seed=99)
    hist2 = Trainer(resumed, digits.train, every).fit(resume_from=tmp_path / "ckpt.previous")
    assert _strip(hist2) == _strip(full_hist)
    assert all(torch.equal(resumed.state_dict()[k], full.state_dict()[k]) for k in full.state_dict())


def test_checkpoint_every_is_not_part_of_study_or_job_identity():
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.plan import plan_study

    base = {
        "dataset": {"name": "digits"},
        "model": {"name": "mlp"},
        "methods": [{"name": "gm", "kind": "oneshot", "sparsities": [0.5]}],
    }
    a = parse_config({**base, "training": {"epochs": 2}, "finetune": {"epochs": 1}})
    b = parse_config(
        {**base, "training": {"epochs": 2, "checkpoint_every": 4}, "finetune": {"epochs": 1, "checkpoint_every": 2}}
    )
    assert b.training.checkpoint_every == 4
    assert a.canonical() == b.canonical()
    assert [j.id for j in plan_study(a)] == [j.id for j in plan_study(b)]
    with pytest.raises(ValidationError):
        TrainingConfig(checkpoint_every=0)
