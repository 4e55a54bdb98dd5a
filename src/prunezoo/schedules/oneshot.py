"""One-shot pruning: prune once to ``density`` at ``at_step`` (0 = before training: prune-then-
fine-tune, or pruning at initialisation), then keep the mask fixed."""

from __future__ import annotations

from prunezoo.schedules.base import MaskingSchedule


class OneShot(MaskingSchedule):
    def __init__(self, density: float, *, at_step: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.density, self.at_step = density, at_step

    def on_train_begin(self, trainer) -> None:
        super().on_train_begin(trainer)
        if trainer.step >= self.at_step and self.restored is None:
            self.prune_to(trainer, self.density)

    def on_step_end(self, trainer, step: int, loss: float) -> None:
        if step + 1 == self.at_step and trainer.start_step < self.at_step:
            self.prune_to(trainer, self.density)
