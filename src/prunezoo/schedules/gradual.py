"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").

s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))^3 at t = t0, t0+Δt, ..., t0+nΔt; pruned weights
never return. Start/end may be given in epochs so the schedule stretches with training length.

The final sparsity is always reached exactly: the ramp ends at the last pruning event that fits in
training, n = floor((end - t0) / Δt) with ``end`` at most the last training step (``total_steps - 1``;
the default when ``end_epoch`` is None), so t0 + nΔt is a step that runs; later steps fine-tune the
final mask. When fewer than Δt steps separate t0 and ``end`` (n = 0), the ramp collapses into one
pruning event at t0, straight to the final sparsity.
"""

from __future__ import annotations

from prunezoo.schedules.base import MaskingSchedule


def cubic_sparsity(step: int, initial: float, final: float, start: int, end: int) -> float:
    """Target sparsity at ``step`` for a cubic ramp from ``initial`` at ``start`` to ``final`` at ``end``."""
    if step >= end:  # first: a ramp with start == end is one event at the final sparsity
        return final
    if step <= start:
        return initial
    frac = (step - start) / (end - start)
    return final + (initial - final) * (1.0 - frac) ** 3


class GradualMagnitudePruning(MaskingSchedule):
    def __init__(
        self,
        final_sparsity: float,
        *,
        initial_sparsity: float = 0.0,
        start_epoch: float = 0.0,
        end_epoch: float | None = None,
        frequency: int = 100,
        **kwargs,
    ):
        kwargs.setdefault("criterion", "magnitude")
        super().__init__(**kwargs)
        if not 0 <= initial_sparsity <= final_sparsity < 1:
            raise ValueError(
                f"need 0 <= initial_sparsity <= final_sparsity < 1, got {initial_sparsity}, {final_sparsity}"
            )
        if frequency < 1:
            raise ValueError(f"frequency must be >= 1, got {frequency}")
        self.initial, self.final = initial_sparsity, final_sparsity
        self.start_epoch, self.end_epoch, self.frequency = start_epoch, end_epoch, frequency
        self.prune_steps: list[int] = []

    def on_train_begin(self, trainer) -> None:
        spe, last = trainer.steps_per_epoch, trainer.total_steps - 1
        self.t0 = int(round(self.start_epoch * spe))
        if self.t0 > last:
            raise ValueError(
                f"start_epoch={self.start_epoch} is step {self.t0}, but training has only "
                f"{trainer.total_steps} steps: the pruning schedule would never run"
            )
        # the last event must be a step that runs (a step == total_steps never does)
        end = last if self.end_epoch is None else min(last, int(round(self.end_epoch * spe)))
        n = max(0, (end - self.t0) // self.frequency)
        self.t_end = self.t0 + n * self.frequency
        self.prune_steps = [self.t0 + i * self.frequency for i in range(n + 1)]
        super().on_train_begin(trainer)
        if trainer.step > self.t0 and self.restored is None:
            # resumed without saved masks: re-prune to the target of the last pruning event
            self._prune_at(trainer, max(t for t in self.prune_steps if t < trainer.step))

    def _prune_at(self, trainer, step: int) -> None:
        s = cubic_sparsity(step, self.initial, self.final, self.t0, self.t_end)
        if s > 0:
            self.prune_to(trainer, 1.0 - s)

    def on_step_begin(self, trainer, step: int) -> None:
        if step in self.prune_steps:
            self._prune_at(trainer, step)
