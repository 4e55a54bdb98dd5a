"""The trainer side of tracking: a :class:`Callback` forwarding each epoch's metrics (the trainer knows no sink)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunezoo.models.flops import weight_densities
from prunezoo.tracking.base import Tracker
from prunezoo.training.callbacks import Callback

if TYPE_CHECKING:
    from prunezoo.training.trainer import Trainer


class EpochMetrics(Callback):
    """Sends every epoch's metrics (the trainer's history entry) and per-layer weight densities to ``tracker``.

    The step is ``clock["epochs"]`` at the start of this trainer plus the epoch number: a job running
    several trainers one after the other (pruning rounds) shares one ``clock``, so its curves continue.
    Reads only; stateless (nothing in checkpoints)."""

    def __init__(self, tracker: Tracker, clock: dict[str, int]):
        self.tracker, self.clock = tracker, clock
        self.offset = clock["epochs"]

    def on_train_begin(self, trainer: Trainer) -> None:
        self.offset = self.clock["epochs"]

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict) -> None:
        step = self.offset + int(metrics.get("epoch", epoch + 1))
        self.clock["epochs"] = max(self.clock["epochs"], step)
        if not self.tracker:
            return
        self.tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)
        self.tracker.log_densities(weight_densities(trainer.model), step)
