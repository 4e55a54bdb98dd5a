"""Shared piece of in-training schedules: own a MaskSet, keep it enforced, re-prune on demand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prunezoo.pruning import prune
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.selection import prunable_parameters
from prunezoo.training.callbacks import Callback


class MaskingSchedule(Callback):
    """Base for schedules that prune during training. Subclasses call ``self.prune_to(trainer, d)``."""

    def __init__(
        self,
        *,
        criterion: str | Callable = "magnitude",
        scheme: str = "global",
        masks: MaskSet | None = None,
        seed: int = 0,
        **prune_options: Any,
    ):
        self.criterion, self.scheme, self.seed = criterion, scheme, seed
        self.prune_options = prune_options
        self.initial_masks = masks
        self.masks: MaskSet | None = None
        self.handle = None
        self.events: list[dict] = []
        self.restored: MaskSet | None = None  # masks from a checkpoint: resume without re-pruning

    def on_train_begin(self, trainer) -> None:
        selection = {k: self.prune_options[k] for k in ("include", "exclude") if k in self.prune_options}
        start = self.restored or self.initial_masks or MaskSet.dense(prunable_parameters(trainer.model, **selection))
        self.masks = start.clone()
        self.handle = self.masks.attach(trainer.model, trainer.optimizer)

    def state_dict(self) -> dict:
        return {"meta": {"events": self.events}, "tensors": dict(self.masks.items()) if self.masks else {}}

    def load_state_dict(self, state: dict) -> None:
        self.events = list(state["meta"].get("events", []))
        if state["tensors"]:
            self.restored = MaskSet(state["tensors"])

    def prune_to(self, trainer, density: float) -> MaskSet:
        new = prune(
            trainer.model,
            density,
            criterion=self.criterion,
            scheme=self.scheme,
            masks=self.masks,
            seed=self.seed + len(self.events),
            **self.prune_options,
        )
        self.handle.update(new)
        self.events.append({"step": trainer.step, "density": self.masks.density()})
        return self.masks

    def on_train_end(self, trainer) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
