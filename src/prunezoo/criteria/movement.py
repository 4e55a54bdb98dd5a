"""Movement pruning (Sanh, Wolf & Rush, NeurIPS 2020, "Movement Pruning: Adaptive Sparsity by
Fine-Tuning"): keep the weights that move *away from zero* during training.

The importance accumulates S ← S - lr · (∂L/∂W) ⊙ W after every backward pass (the paper's
S = -α Σ_t (∂L/∂W)_t W_t, with the step's learning rate as α). A weight the SGD step pushes
away from zero (gradient of opposite sign to the weight) gains score; one pushed towards zero
loses it. Scores depend on the training trajectory, so they live in a training callback:

>>> tracker = MovementTracker()
>>> schedule = GradualMagnitudePruning(0.9, criterion=tracker.criterion)
>>> Trainer(model, data, cfg, callbacks=[tracker, schedule]).fit()
>>> masks = prune(model, 0.1, criterion=tracker.criterion)  # or one-shot after training

There is deliberately no registered ``"movement"`` criterion: names in the registry are what
configs validate against and what ``prunezoo list`` shows as usable with ``prune(criterion=name)``,
and a name that can only raise would pass validation and fail at run time. Pass
``tracker.criterion`` (a plain Criterion callable) instead.

In study configs ``criterion: movement`` is accepted by the method kinds listed in
``TRAINING_CRITERIA`` (``gmp``): the job puts a tracker made by :func:`make_tracker` in front of the
schedule's callback and prunes with ``tracker.criterion``; ``options: {from_dense: true}`` prunes
while fine-tuning the trained dense model (the paper's setting) instead of while training from init.

Difference from the paper: masks here zero the weights themselves and gradual schedules only ever
remove weights, so a pruned weight's score stops changing and it cannot return; the paper's hard
movement pruning keeps the dense weights, masks in the forward pass and lets scores of pruned weights
move through a straight-through estimator. Measured on ``examples/methods-90.yaml`` (one seed):
from init, movement 96.4% = magnitude GMP 96.4%; while fine-tuning the converged dense model for 5
epochs, movement 32.8% vs magnitude 94.2% — near a minimum the gradients, hence the scores, are tiny
and noisy (the paper fine-tunes a model pre-trained on a *different* task).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prunezoo.criteria.base import ScoringContext
from prunezoo.errors import ConfigError
from prunezoo.sparsity.selection import prunable_parameters
from prunezoo.training.callbacks import Callback


class MovementTracker(Callback):
    """Accumulates movement scores of the prunable weights (``include``/``exclude`` as in prune).

    Put it in the trainer's callback list; its state (the scores and the step count) is saved
    in checkpoints and restored on resume through ``state_dict``/``load_state_dict``.
    """

    def __init__(self, *, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None):
        self.include, self.exclude = include, exclude
        self.scores: dict[str, torch.Tensor] = {}
        self.steps = 0
        self._params: dict[str, torch.nn.Parameter] = {}

    def on_train_begin(self, trainer) -> None:
        params = prunable_parameters(trainer.model, include=self.include, exclude=self.exclude)
        for name, p in params.items():
            s = self.scores.get(name)
            if s is None or s.shape != p.shape:  # scores restored from a checkpoint are kept
                self.scores[name] = torch.zeros_like(p, dtype=torch.float32, requires_grad=False)
            else:
                self.scores[name] = s.to(p.device)
        self._params = params

    @torch.no_grad()
    def on_after_backward(self, trainer, step: int) -> None:
        lr = float(trainer.optimizer.param_groups[0]["lr"])
        for name, p in self._params.items():
            if p.grad is not None:
                self.scores[name].sub_(lr * p.grad.float() * p.detach().float())
        self.steps += 1

    def criterion(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        """A Criterion returning the accumulated scores (higher = moved further from zero)."""
        missing = [n for n in ctx.params if n not in self.scores]
        if missing:
            raise ConfigError(
                "criterion",
                f"MovementTracker has no scores for {missing}: add it to the trainer's callbacks "
                "and train before pruning with tracker.criterion",
            )
        return {n: self.scores[n].to(p.device).clone() for n, p in ctx.params.items()}

    def state_dict(self) -> dict:
        return {"meta": {"steps": self.steps}, "tensors": {n: s.detach().cpu().clone() for n, s in self.scores.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state.get("meta", {}).get("steps", 0))
        self.scores = {n: t.detach().clone().float() for n, t in state.get("tensors", {}).items()}


# Criteria scored from the training trajectory: name -> study method kinds that train with them.
TRAINING_CRITERIA: dict[str, tuple[str, ...]] = {"movement": ("gmp",)}


def make_tracker(
    name: str, *, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> MovementTracker:
    """The training callback accumulating the scores of training-time criterion ``name``."""
    if name != "movement":
        raise ConfigError("criterion", f"{name!r} is not a training-time criterion; known: {sorted(TRAINING_CRITERIA)}")
    return MovementTracker(include=include, exclude=exclude)
