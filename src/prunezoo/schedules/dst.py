"""Dynamic sparse training: RigL (Evci et al. 2020, "Rigging the Lottery") and SET (Mocanu et al.
2018, "Scalable training of artificial neural networks with adaptive sparse connectivity").

Sparse from step 0 at a fixed per-layer density (random initial mask, ERK densities by default, or
a given ``masks=`` for sparse-to-sparse). Every ΔT steps, for t < T_end, each layer l with n_l
active weights

    drops  k_l = floor(f(t) n_l) active weights with the smallest |w|,
    grows  k_l weights outside the kept ones: largest |∂L/∂w| (RigL, dense gradient) or uniformly
           at random (SET),
    f(t) = (α/2)(1 + cos(π t / T_end))            (cosine decay; α = 0.3, ΔT = 100, T_end = 0.75 T).

This is the reference implementation's rule (google-research/rigl, ``sparse_optimizers.py``,
``_get_update_op``): n_prune = int(f·n), and only the *kept* weights are excluded from growth, so a
weight dropped by an update can be grown back by it; it then keeps its value and optimizer state.
Newly grown weights (inactive before the update) start at exactly 0 with zeroed optimizer state
(momentum, Adam moments); per-layer nnz is exactly constant. ``regrow_dropped=False`` and
``drop_count="round"`` give prunezoo's earlier rule (grow only among weights inactive before the
update; k = round(f·n)). Not ported: the reference's 1e-5 noise on the drop scores (ties here are
broken by index) and its skipping of the optimizer step on update iterations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch

from prunezoo.pruning import random_er_masks
from prunezoo.schedules.base import MaskingSchedule
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.topk import keep_top_k

GrowMode = Literal["gradient", "random"]


def drop_fraction(step: int, alpha: float, t_end: int, decay: str = "cosine") -> float:
    """f(t) = (α/2)(1 + cos(π t / T_end)) for t < T_end (``decay="constant"``: α), else 0."""
    if step >= t_end:
        return 0.0
    if decay == "constant":
        return alpha
    return alpha / 2.0 * (1.0 + math.cos(math.pi * step / t_end))


class DynamicSparseTraining(MaskingSchedule):
    """Drop-and-grow at fixed sparsity; ``grow="gradient"`` is RigL, ``grow="random"`` is SET.

    The update runs in ``on_after_backward``: the gradient of the current batch is still dense
    there, because the handle masks gradients in an optimizer step pre-hook, which runs only
    later, with the new masks (and re-zeroes pruned weights after the step). The optimizer
    step of that iteration then trains the new mask (grown weights move off 0 by -lr·grad).
    """

    def __init__(
        self,
        sparsity: float | None = None,
        *,
        grow: GrowMode = "gradient",
        delta_t: int = 100,
        alpha: float = 0.3,
        end_fraction: float = 0.75,
        t_end: int | None = None,
        decay: Literal["cosine", "constant"] = "cosine",
        regrow_dropped: bool = True,
        drop_count: Literal["floor", "round"] = "floor",
        scheme: str = "erk",
        masks: MaskSet | None = None,
        seed: int = 0,
        **alloc_options: Any,
    ):
        super().__init__(criterion="magnitude", scheme=scheme, masks=masks, seed=seed, **alloc_options)
        if grow not in ("gradient", "random"):
            raise ValueError(f"grow must be 'gradient' or 'random', got {grow!r}")
        if sparsity is None and masks is None:
            raise ValueError("give a target sparsity or initial masks=")
        if sparsity is not None and not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        if delta_t < 1 or not 0.0 <= alpha <= 1.0 or not 0.0 < end_fraction <= 1.0:
            raise ValueError(
                f"need delta_t >= 1, alpha in [0, 1], end_fraction in (0, 1]; got {delta_t}, {alpha}, {end_fraction}"
            )
        if decay not in ("cosine", "constant"):
            raise ValueError(f"decay must be 'cosine' or 'constant', got {decay!r}")
        if not isinstance(regrow_dropped, bool):
            raise ValueError(f"regrow_dropped must be true or false, got {regrow_dropped!r}")
        if drop_count not in ("floor", "round"):
            raise ValueError(f"drop_count must be 'floor' (the reference's int(f·n)) or 'round', got {drop_count!r}")
        self.regrow_dropped, self.drop_count = regrow_dropped, drop_count
        self.sparsity, self.grow, self.delta_t, self.alpha = sparsity, grow, delta_t, alpha
        self.end_fraction, self.t_end_steps, self.decay = end_fraction, t_end, decay
        self.t_end = 0
        # net changes of the latest update (inspection): newly active / newly inactive positions
        self.last_grown: dict[str, torch.Tensor] = {}
        self.last_dropped: dict[str, torch.Tensor] = {}

    # -- setup ------------------------------------------------------------------------------------
    def on_train_begin(self, trainer) -> None:
        total = trainer.total_steps
        self.t_end = self.t_end_steps if self.t_end_steps is not None else int(round(self.end_fraction * total))
        start = self.restored or self.initial_masks
        if start is None:
            # Random (Erdős–Rényi) support with exact per-layer counts at the scheme's densities.
            start = random_er_masks(
                trainer.model, 1.0 - self.sparsity, self.scheme, seed=self.seed, exact=True, **self.prune_options
            )
        self.masks = start.clone()
        self.handle = self.masks.attach(trainer.model, trainer.optimizer)

    def is_update_step(self, step: int) -> bool:
        return 0 < step < self.t_end and step % self.delta_t == 0

    def on_after_backward(self, trainer, step: int) -> None:
        if self.is_update_step(step):
            self.update_masks(trainer, step)

    # -- the drop/grow update -----------------------------------------------------------------------
    @torch.no_grad()
    def update_masks(self, trainer, step: int, grads: Mapping[str, torch.Tensor] | None = None) -> dict:
        """One drop/grow update at ``step`` (uses ``p.grad`` unless ``grads`` is given); returns its event."""
        frac = drop_fraction(step, self.alpha, self.t_end, self.decay)
        params = dict(trainer.model.named_parameters())
        old = self.masks.clone()
        # Per-update generator derived from (seed, step): SET draws identically after a resume.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        new: dict[str, torch.Tensor] = {}
        self.last_grown, self.last_dropped = {}, {}
        changed = 0
        for name, mask in old.items():
            p = params[name]
            mask = mask.to(p.device)  # the start mask (random ER) is drawn on the CPU; the update runs by the weights
            grad = grads[name] if grads is not None else p.grad
            n_active = int(mask.sum())
            k = int(frac * n_active) if self.drop_count == "floor" else int(math.floor(frac * n_active + 0.5))
            if not self.regrow_dropped:
                k = min(k, mask.numel() - n_active)  # the grow pool (inactive weights) bounds k
            if k == 0 or (self.grow == "gradient" and grad is None):
                new[name] = mask
                continue
            neg_inf = torch.tensor(float("-inf"), device=mask.device)
            # drop: the k active weights with the smallest |w| (top-k of -|w|; inactive never chosen)
            dropped = keep_top_k(torch.where(mask, -p.detach().abs().float(), neg_inf), k)
            kept = mask & ~dropped
            if self.grow == "gradient":
                score = grad.detach().abs().float().to(mask.device)
            else:
                score = torch.rand(mask.shape, generator=gen).to(mask.device)
            # grow: outside the kept weights (reference), or only among weights inactive before the update
            grown = keep_top_k(torch.where(kept if self.regrow_dropped else mask, neg_inf, score), k)
            new[name] = kept | grown
            fresh = grown & ~mask  # regrown ones were active: they keep their value and optimizer state
            p.masked_fill_(fresh.to(p.device), 0.0)  # new weights start at exactly 0
            zero_optimizer_state(trainer.optimizer, p, fresh)
            self.last_grown[name], self.last_dropped[name] = fresh, dropped & ~grown
            changed += int(fresh.sum())
        new_masks = MaskSet(new)
        self.handle.update(new_masks)  # zeroes the dropped weights
        event = {
            "step": step,
            "fraction": frac,
            "changed": changed,
            "iou": new_masks.iou(old),
            "density": new_masks.density(),
        }
        self.events.append(event)
        return event


def zero_optimizer_state(optimizer: torch.optim.Optimizer | None, p: torch.Tensor, where: torch.Tensor) -> None:
    """Zero the per-element optimizer state of ``p`` at ``where`` (SGD momentum, Adam moments...)."""
    if optimizer is None or p not in optimizer.state:
        return
    where = where.to(p.device)
    for value in optimizer.state[p].values():
        if isinstance(value, torch.Tensor) and value.shape == p.shape:
            value.masked_fill_(where, 0)


def RigL(sparsity: float | None = None, **kwargs: Any) -> DynamicSparseTraining:
    """RigL (Evci et al. 2020): drop smallest |w|, grow largest dense |grad|; ERK, α=0.3, ΔT=100."""
    return DynamicSparseTraining(sparsity, grow="gradient", **kwargs)


def SET(sparsity: float | None = None, **kwargs: Any) -> DynamicSparseTraining:
    """SET (Mocanu et al. 2018): drop smallest |w|, regrow uniformly at random (seeded)."""
    return DynamicSparseTraining(sparsity, grow="random", **kwargs)
