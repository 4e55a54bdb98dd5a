"""AC/DC: Alternating Compressed/DeCompressed training (Peste et al. 2021) and AC/DC++ (Kuznedelev
et al. 2023, "Accurate Neural Network Pruning Requires Rethinking Sparse Optimization").

Dense warm-up, then cycles of a *compressed* phase (top-k mask recomputed at its start, training on
that fixed support, weights re-masked after every step — IHT-style) and a *decompressed* phase (mask
removed; pruned weights restart at exactly 0), and a longer final compressed phase. The reference
100-epoch layout is dense 0-10; compressed [10,15), [20,25), ..., [70,75); decompressed [15,20), ...,
[65,70) and [75,85); final compressed [85,100). AC/DC++ trains 2.5x/5x/10x longer with more phases of
the same length (``scale_with_epochs=True``).

Variants: ``ramp`` (compressed phase j of J at s_j = s_0 + (s - s_0) j / (J - 1), s_0 = ``ramp_start``),
``min_decompressed_sparsity`` ("sparse decompression": after every step of a decompressed phase the
weights are projected onto the top (1 - s_min) by global magnitude, so pruned weights can still come
back), ``reset_momentum`` (zero the optimizer state of pruned weights at each phase change).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from prunezoo.pruning import prune
from prunezoo.schedules.base import MaskingSchedule
from prunezoo.schedules.dst import zero_optimizer_state
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.selection import prunable_parameters

Phase = tuple[float, float, str]  # (start_epoch, end_epoch, kind)
SPARSE_KINDS = ("compressed", "final")
_EPS = 1e-9


def _clean(x: float) -> float:
    # 0.15 * 100 = 15.000000000000002: snap float noise so the layout compares exactly
    return float(round(x, 9))


def acdc_phases(
    total_epochs: float,
    *,
    warmup_epochs: float | None = None,
    compressed_epochs: float | None = None,
    decompressed_epochs: float | None = None,
    final_sparse_epochs: float | None = None,
    scale_with_epochs: bool = False,
    base_epochs: float = 100,
) -> list[Phase]:
    """The AC/DC phase plan: ``[(start_epoch, end_epoch, kind)]``, kind in warmup/compressed/decompressed/final.

    Defaults are proportional to ``total_epochs``: warm-up 10%, compressed 5%, decompressed 5%, final 15%.
    ``scale_with_epochs`` (AC/DC++) fixes the compressed/decompressed lengths at 5% of ``base_epochs``
    so longer runs get more phases (warm-up and final stay proportional). As many (compressed,
    decompressed) cycles as fit between warm-up and final are laid out; the remainder lengthens the
    last decompressed phase (for 100 epochs: 7 cycles, the last dense phase is 75-85).
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}")
    unit = base_epochs if scale_with_epochs else total_epochs
    w = total_epochs * 10 / 100 if warmup_epochs is None else warmup_epochs
    c = unit * 5 / 100 if compressed_epochs is None else compressed_epochs
    d = unit * 5 / 100 if decompressed_epochs is None else decompressed_epochs
    f = total_epochs * 15 / 100 if final_sparse_epochs is None else final_sparse_epochs
    if min(w, c, d, f) < 0 or c <= 0:
        raise ValueError(f"phase lengths must be >= 0 (compressed > 0), got {w}, {c}, {d}, {f}")
    cycles_end = total_epochs - f
    if cycles_end < w - _EPS:
        raise ValueError(f"warm-up ({w}) + final ({f}) epochs exceed the {total_epochs} training epochs")
    phases: list[list] = [[0.0, w, "warmup"]] if w > _EPS else []
    t = w
    while t + c + d <= cycles_end + _EPS:
        phases += [[t, t + c, "compressed"], [t + c, t + c + d, "decompressed"]]
        t += c + d
    if cycles_end - t > _EPS:  # remainder: a longer last dense phase before the final one
        if phases and phases[-1][2] in ("decompressed", "warmup"):
            phases[-1][1] = cycles_end
        else:
            phases.append([t, cycles_end, "decompressed" if phases else "warmup"])
    if f > _EPS:
        phases.append([cycles_end, total_epochs, "final"])
    return [(_clean(s), _clean(e), k) for s, e, k in phases]


class ACDC(MaskingSchedule):
    """AC/DC (and AC/DC++ with ``scale_with_epochs=True``) as a trainer callback.

    Phase boundaries are epochs (fractional allowed), converted to steps as round(epoch · steps/epoch).
    Events (``self.events``):
      ``{"event": "compress", "step", "epoch", "phase", "kind", "sparsity", "iou"}`` at every
      compressed phase start (``iou`` with the previous compressed phase's mask, None for the first);
      ``{"event": "decompress", "step", "epoch", "phase"}`` at every decompressed phase start;
      ``{"event": "decompressed_end", "step", "epoch", "phase", "zero_fraction"}`` after the last step
      of every decompressed phase (fraction of prunable weights exactly 0).
    """

    def __init__(
        self,
        sparsity: float,
        *,
        warmup_epochs: float | None = None,
        compressed_epochs: float | None = None,
        decompressed_epochs: float | None = None,
        final_sparse_epochs: float | None = None,
        scale_with_epochs: bool = False,
        base_epochs: float = 100,
        ramp: bool = False,
        ramp_start: float = 0.9,
        min_decompressed_sparsity: float = 0.0,
        reset_momentum: bool = False,
        criterion: Any = "magnitude",
        scheme: str = "global",
        seed: int = 0,
        **prune_options: Any,
    ):
        if "masks" in prune_options:
            raise ValueError("ACDC starts dense and recomputes its masks; masks= is not supported")
        super().__init__(criterion=criterion, scheme=scheme, seed=seed, **prune_options)
        if not 0.0 < sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {sparsity}")
        if not 0.0 <= min_decompressed_sparsity < sparsity:
            raise ValueError(f"min_decompressed_sparsity must be in [0, sparsity), got {min_decompressed_sparsity}")
        if ramp and not 0.0 < ramp_start <= sparsity:
            raise ValueError(f"ramp_start must be in (0, sparsity={sparsity}], got {ramp_start}")
        self.sparsity, self.ramp, self.ramp_start = sparsity, ramp, ramp_start
        self.min_decompressed_sparsity, self.reset_momentum = min_decompressed_sparsity, reset_momentum
        self.plan_options = dict(
            warmup_epochs=warmup_epochs,
            compressed_epochs=compressed_epochs,
            decompressed_epochs=decompressed_epochs,
            final_sparse_epochs=final_sparse_epochs,
            scale_with_epochs=scale_with_epochs,
            base_epochs=base_epochs,
        )
        self.phases: list[Phase] = []
        self.phase_steps: list[tuple[int, int, str]] = []
        self.phase_sparsity: dict[int, float] = {}
        self.phase = -1  # index into phase_steps of the phase entered last
        self.previous_compressed: MaskSet | None = None

    # -- plan -------------------------------------------------------------------------------------
    def plan(self, total_steps: int, steps_per_epoch: int) -> list[tuple[int, int, str]]:
        """Phases in steps; also fills ``phase_sparsity`` (target sparsity of each sparse phase)."""
        self.phases = acdc_phases(total_steps / steps_per_epoch, **self.plan_options)
        to_step = lambda e: min(total_steps, int(math.floor(e * steps_per_epoch + 0.5)))
        steps = [(to_step(s), to_step(e), k) for s, e, k in self.phases]
        self.phase_steps = [p for p in steps if p[1] > p[0]]  # phases shorter than a step vanish
        sparse = [i for i, p in enumerate(self.phase_steps) if p[2] in SPARSE_KINDS]
        s0 = self.ramp_start if self.ramp else self.sparsity
        self.phase_sparsity = {
            i: self.sparsity if len(sparse) == 1 else s0 + (self.sparsity - s0) * j / (len(sparse) - 1)
            for j, i in enumerate(sparse)
        }
        return self.phase_steps

    def phase_at(self, step: int) -> int:
        for i, (s, e, _) in enumerate(self.phase_steps):
            if s <= step < e:
                return i
        return len(self.phase_steps) - 1

    # -- callback hooks ---------------------------------------------------------------------------
    def on_train_begin(self, trainer) -> None:
        self.plan(trainer.total_steps, trainer.steps_per_epoch)
        self._selection = {k: self.prune_options[k] for k in ("include", "exclude") if k in self.prune_options}
        params = prunable_parameters(trainer.model, **self._selection)
        if self.restored is None:  # a fresh run (the callback may be reused): no phase entered yet
            self.phase, self.previous_compressed = -1, None
        self.masks = (self.restored or MaskSet.dense(params)).clone()
        # Gradient masking: compressed phases train only on the support, so momentum/Adam moments
        # of pruned weights do not build up and push them the moment they are restored.
        self.handle = self.masks.attach(trainer.model, trainer.optimizer, mask_gradients=True)
        if self.restored is None and trainer.step > 0 and self.phase_steps:
            # resumed from a checkpoint without this callback's state: re-enter the current phase
            i = self.phase_at(trainer.step)
            if self.phase_steps[i][0] < trainer.step:
                self._enter(trainer, i, trainer.step)
        self.restored = None

    def on_step_begin(self, trainer, step: int) -> None:
        for i, (s, _, _) in enumerate(self.phase_steps):
            if s == step and i != self.phase:
                self._enter(trainer, i, step)
                break

    def on_step_end(self, trainer, step: int, loss) -> None:
        if not self.phase_steps:
            return
        i = self.phase_at(step)
        s, e, kind = self.phase_steps[i]
        if kind == "decompressed":
            if self.min_decompressed_sparsity > 0:
                self._project(trainer)
            if step + 1 == e:
                self.events.append(
                    {
                        "event": "decompressed_end",
                        "step": step + 1,
                        "epoch": self._epoch(trainer, step + 1),
                        "phase": i,
                        "zero_fraction": self.zero_fraction(trainer.model),
                    }
                )

    # -- phase changes ----------------------------------------------------------------------------
    def _enter(self, trainer, i: int, step: int) -> None:
        kind = self.phase_steps[i][2]
        self.phase = i
        if kind in SPARSE_KINDS:
            new = prune(
                trainer.model,
                1.0 - self.phase_sparsity[i],
                criterion=self.criterion,
                scheme=self.scheme,
                seed=self.seed + i,
                **self.prune_options,
            )
            iou = new.iou(self.previous_compressed) if self.previous_compressed is not None else None
            if self.reset_momentum:
                self._reset_state(trainer, {n: ~m for n, m in new.items()})
            self.handle.update(new)  # zeroes the pruned weights; re-masked after every step from now on
            self.previous_compressed = new.clone()
            self.events.append(
                {
                    "event": "compress",
                    "step": step,
                    "epoch": self._epoch(trainer, step),
                    "phase": i,
                    "kind": kind,
                    "sparsity": new.sparsity(),
                    "iou": iou,
                }
            )
        elif kind == "decompressed":
            if self.reset_momentum:  # the weights about to return restart with fresh optimizer state
                self._reset_state(trainer, {n: ~m for n, m in self.masks.items()})
            # Pruned weights are exactly 0 here (re-masked after every step); a dense mask lets them train.
            self.handle.update(MaskSet.dense(dict(self.masks.items())))
            self.events.append({"event": "decompress", "step": step, "epoch": self._epoch(trainer, step), "phase": i})

    @torch.no_grad()
    def _project(self, trainer) -> None:
        """Sparse decompression: keep the top (1 - s_min) weights by global magnitude (IHT projection)."""
        alloc = {k: v for k, v in self.prune_options.items() if k not in ("batches", "loss_fn")}
        keep = prune(
            trainer.model, 1.0 - self.min_decompressed_sparsity, criterion="magnitude", scheme=self.scheme, **alloc
        )
        keep.apply(trainer.model)

    def _reset_state(self, trainer, where: dict[str, torch.Tensor]) -> None:
        params = dict(trainer.model.named_parameters())
        for name, m in where.items():
            zero_optimizer_state(trainer.optimizer, params[name], m)

    @staticmethod
    def _epoch(trainer, step: int) -> float:
        return step / trainer.steps_per_epoch

    def zero_fraction(self, model) -> float:
        """Fraction of the prunable weights that are exactly 0."""
        params = prunable_parameters(model, **self._selection)
        zeros = sum(int((p == 0).sum()) for p in params.values())
        return zeros / max(1, sum(p.numel() for p in params.values()))

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        tensors = {f"mask/{n}": m for n, m in self.masks.items()} if self.masks is not None else {}
        if self.previous_compressed is not None:
            tensors.update({f"prev/{n}": m for n, m in self.previous_compressed.items()})
        return {"meta": {"events": self.events, "phase": self.phase}, "tensors": tensors}

    def load_state_dict(self, state: dict) -> None:
        meta, tensors = state["meta"], state["tensors"]
        self.events = list(meta.get("events", []))
        self.phase = int(meta.get("phase", -1))
        masks = {k[5:]: v for k, v in tensors.items() if k.startswith("mask/")}
        prev = {k[5:]: v for k, v in tensors.items() if k.startswith("prev/")}
        self.restored = MaskSet(masks) if masks else None
        self.previous_compressed = MaskSet(prev) if prev else None
