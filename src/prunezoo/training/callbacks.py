"""Callbacks: how schedules and methods drive the trainer without the trainer knowing them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from prunezoo.models.flops import weight_densities
from prunezoo.training.checkpoint import load_state, save_state

if TYPE_CHECKING:
    from prunezoo.training.trainer import Trainer


class Callback:
    """All hooks are optional no-ops. ``step`` is the global optimizer-step index."""

    def on_train_begin(self, trainer: Trainer) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...
    def on_step_begin(self, trainer: Trainer, step: int) -> None: ...
    def on_after_backward(self, trainer: Trainer, step: int) -> None: ...
    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...

    def extra_loss(self, trainer: Trainer, step: int) -> torch.Tensor | None:
        """A term added to the training loss (KL of variational dropout, L1 on BN scales...)."""
        return None


class CallbackList(Callback):
    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = list(callbacks)

    def extra_loss(self, trainer: Trainer, step: int) -> torch.Tensor | None:
        terms = [
            t
            for t in (cb.extra_loss(trainer, step) for cb in self.callbacks if hasattr(cb, "extra_loss"))
            if t is not None
        ]
        return sum(terms[1:], terms[0]) if terms else None

    def __getattribute__(self, name: str):
        if name.startswith("on_"):
            cbs = object.__getattribute__(self, "callbacks")
            return lambda *a, **k: [getattr(cb, name)(*a, **k) for cb in cbs]
        return object.__getattribute__(self, name)


class EnforceMasks(Callback):
    """Keeps a MaskSet enforced for the whole run (grad masking + re-mask after each step)."""

    def __init__(self, masks):
        self.masks = masks
        self.handle = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.handle = self.masks.attach(trainer.model, trainer.optimizer)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


class SnapshotAtStep(Callback):
    """Copies the model's state when ``step`` optimizer steps have been taken (rewind point).

    With ``path`` the snapshot is also saved there (safetensors) and reloaded by a resumed run
    that has already passed ``step``.
    """

    def __init__(self, step: int, path: str | Path | None = None):
        self.step = step
        self.path = Path(path) if path is not None else None
        self.state: dict[str, torch.Tensor] | None = None

    def _take(self, trainer: Trainer) -> None:
        self.state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        if self.path is not None:
            save_state(self.path, self.state)

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.start_step == self.step:
            self._take(trainer)
        elif trainer.start_step > self.step and self.path is not None and self.path.exists():
            self.state = load_state(self.path)

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        if step + 1 == self.step:
            self._take(trainer)


class StopAtStep(Callback):
    """Ends training once ``step`` optimizer steps have been taken (the LR schedule stays the full one)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        if step + 1 >= self.step:
            trainer.stop_requested = True


class TrainingFlops(Callback):
    """Accumulates training FLOPs ≈ 3 × forward FLOPs per sample (forward + 2× backward, RigL's
    convention) with each layer's forward cost scaled by its *measured* weight density, re-measured
    every epoch — so dense phases (AC/DC), gradual pruning and static masks are all counted.
    Costs of dense gradients for growth (RigL) and of scoring are not included."""

    def __init__(self, layer_flops: dict[str, int], total_flops: int):
        self.layer_flops, self.total_flops = layer_flops, total_flops
        self.flops = 0.0
        self._per_sample = float(total_flops)

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        dens = weight_densities(trainer.model)
        self._per_sample = self.total_flops - sum(f * (1 - dens.get(n, 1.0)) for n, f in self.layer_flops.items())

    def on_step_end(self, trainer: Trainer, step: int, loss: torch.Tensor) -> None:
        self.flops += 3.0 * self._per_sample * trainer.config.batch_size

    def state_dict(self) -> dict:
        return {"meta": {"flops": self.flops}, "tensors": {}}

    def load_state_dict(self, state: dict) -> None:
        self.flops = float(state["meta"]["flops"])
