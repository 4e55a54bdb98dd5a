"""Schedules: IMP level densities and reset modes, cubic GMP ramp, one-shot."""

import math

import pytest
import torch
from torch import nn

from prunezoo.schedules import IterativeSchedule, ResetMode, cubic_sparsity, run_iterative
from prunezoo.sparsity import prunable_parameters


def test_imp_level_densities_follow_0_8_power():
    total = 266_200
    dens = IterativeSchedule(levels=17, fraction=0.2).densities(total)
    assert dens[0] == 1.0
    for level, d in enumerate(dens):
        assert d == pytest.approx(0.8**level, abs=2e-5 * (level + 1))
    # OpenLTH rule: remove ceil(0.2 * remaining) each level
    counts = IterativeSchedule(levels=3, fraction=0.2).keep_counts(1001)
    assert counts == [1001, 1001 - math.ceil(200.2), 800 - 160, 640 - 128]


@pytest.mark.parametrize(
    "bad",
    [
        dict(levels=-1),
        dict(levels=2, fraction=0.0),
        dict(levels=2, fraction=1.0),
        dict(levels=2, rewind_step=-3),
        dict(levels=2, reset="bogus"),
    ],
)
def test_iterative_schedule_validation(bad):
    with pytest.raises(ValueError):
        IterativeSchedule(**bad)


def test_cubic_sparsity_ramp():
    assert cubic_sparsity(0, 0.0, 0.9, 0, 100) == 0.0
    assert cubic_sparsity(100, 0.0, 0.9, 0, 100) == 0.9
    assert cubic_sparsity(50, 0.0, 0.9, 0, 100) == pytest.approx(0.9 + (0 - 0.9) * 0.5**3)
    values = [cubic_sparsity(t, 0.1, 0.95, 10, 90) for t in range(0, 120, 5)]
    assert values == sorted(values)  # monotone, fastest early


class FakeTrainer:
    """Records what IMP asks of a trainer; 'training' adds a constant to every weight."""

    def __init__(self, model, callbacks, finetune, log):
        self.model, self.callbacks, self.finetune, self.log = model, callbacks, finetune, log
        self.total_steps, self.step, self.start_step = 10, 0, 0
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    def fit(self, start_step=0, **_checkpointing):
        self.start_step = self.step = start_step
        self.log.append(
            {
                "start": start_step,
                "finetune": self.finetune,
                "w": {k: v.clone() for k, v in self.model.state_dict().items()},
            }
        )
        for cb in self.callbacks:
            cb.on_train_begin(self)
        for s in range(start_step, self.total_steps):
            with torch.no_grad():
                for p in self.model.parameters():
                    p.add_(0.01)
            self.optimizer.step()
            self.step = s + 1
            for cb in self.callbacks:
                cb.on_step_end(self, s, 0.0)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return [{"test_acc": 0.5}]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4))


@pytest.mark.parametrize("reset", list(ResetMode))
def test_run_iterative_reset_modes(reset):
    model, log = _model(), []
    init = {k: v.clone() for k, v in model.state_dict().items()}
    schedule = IterativeSchedule(levels=3, fraction=0.2, reset=reset, rewind_step=4)
    results = run_iterative(model, lambda m, cbs, ft: FakeTrainer(m, cbs, ft, log), schedule, seed=0)
    total = sum(p.numel() for p in prunable_parameters(model).values())
    assert [r.masks.nnz() for r in results] == schedule.keep_counts(total)
    for prev, cur in zip(results, results[1:]):
        assert cur.masks.is_subset_of(prev.masks)
    level1 = log[1]
    pruned = ~results[1].masks["0.weight"]
    assert torch.all(level1["w"]["0.weight"][pruned] == 0)
    kept = results[1].masks["0.weight"]
    w = level1["w"]["0.weight"][kept]
    if reset is ResetMode.REWIND_INIT:
        assert torch.allclose(w, init["0.weight"][kept]) and level1["start"] == 0
    elif reset is ResetMode.REWIND:
        assert torch.allclose(w, init["0.weight"][kept] + 0.04) and level1["start"] == 4
    elif reset in (ResetMode.LR_REWIND, ResetMode.FINETUNE):
        assert torch.allclose(w, init["0.weight"][kept] + 0.10)
        assert level1["finetune"] == (reset is ResetMode.FINETUNE)
    else:  # reinit: neither the init nor the trained weights
        assert not torch.allclose(w, init["0.weight"][kept]) and not torch.allclose(w, init["0.weight"][kept] + 0.1)
    # pruned weights stay exactly zero through "training"
    final = dict(model.named_parameters())["0.weight"]
    assert torch.all(final[~results[-1].masks["0.weight"]] == 0)


def test_rewind_step_beyond_training_is_an_error():
    with pytest.raises(ValueError, match="rewind_step"):
        run_iterative(
            _model(),
            lambda m, cbs, ft: FakeTrainer(m, cbs, ft, []),
            IterativeSchedule(levels=1, reset="rewind", rewind_step=50),
        )
