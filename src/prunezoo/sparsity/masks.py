"""MaskSet: named boolean masks over a model's prunable weights, applied in place.

Masks are enforced without re-parametrising the model (no ``weight_orig``/``weight_mask`` keys).
``attach`` zeroes the pruned weights once, then, through hooks on the optimizer:

- before every step (after any gradient clipping), the gradients of pruned entries are zeroed
  (``mask_gradients``, on by default), so optimizer state cannot build up at an entry while it is
  pruned: state that is zero when the entry is pruned (a fresh optimizer; RigL's regrowth and AC/DC's
  ``reset_momentum`` reset it) stays exactly zero; state from before the entry was pruned is not
  erased (SGD momentum decays by its factor each step);
- after every step, the pruned weights are re-zeroed.

Guarantee: pruned weights are exactly 0 after every optimizer step, whatever the optimizer, weight
decay or stale state. Kept weights train identically with or without gradient masking (every
built-in optimizer updates elementwise), so it changes no result, only the state at pruned entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from prunezoo.sparsity.selection import prunable_parameters
from prunezoo.sparsity.torch_prune import (
    apply_torch_prune,
    masks_from_torch_prune,
    torch_prune_hint,
    torch_pruned_tensors,
)
from prunezoo.utils.io import atomic_path


class MaskSet(Mapping[str, torch.Tensor]):
    """Boolean keep-masks keyed by parameter name (``True`` = weight kept)."""

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self._masks: dict[str, torch.Tensor] = {}
        for name, m in masks.items():
            if not isinstance(m, torch.Tensor):
                raise TypeError(f"mask {name!r} must be a tensor, got {type(m).__name__}")
            self._masks[name] = m.detach().to(torch.bool).clone()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def dense(cls, params: Mapping[str, torch.Tensor]) -> MaskSet:
        return cls({n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()})

    @classmethod
    def from_model(cls, model: nn.Module, names: list[str] | None = None) -> MaskSet:
        """Masks from a model's current nonzero pattern (for models pruned elsewhere)."""
        params = prunable_parameters(model) if names is None else _lookup(model, names)
        return cls({n: p.detach() != 0 for n, p in params.items()})

    @classmethod
    def from_torch_prune(cls, model: nn.Module, *, remove: bool = True) -> MaskSet:
        """The masks ``torch.nn.utils.prune`` put on ``model``; ``remove=True`` (default) also removes its
        reparametrisation in place, leaving the zeros in plain weights (:mod:`prunezoo.sparsity.torch_prune`)."""
        return cls(masks_from_torch_prune(model, remove=remove))

    def to_torch_prune(self, model: nn.Module) -> nn.Module:
        """Install these masks with ``torch.nn.utils.prune.custom_from_mask`` (torch's forward pre-hook then
        enforces them); returns ``model``, modified in place. :meth:`from_torch_prune` converts back."""
        return apply_torch_prune(model, self._masks)

    # -- mapping protocol ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return f"MaskSet({len(self)} layers, density={self.density():.4f})"

    def clone(self) -> MaskSet:
        return MaskSet(self._masks)

    # -- statistics ---------------------------------------------------------------------------
    def nnz(self) -> int:
        return int(sum(int(m.sum()) for m in self._masks.values()))

    def numel(self) -> int:
        return int(sum(m.numel() for m in self._masks.values()))

    def density(self) -> float:
        total = self.numel()
        return self.nnz() / total if total else 1.0

    def sparsity(self) -> float:
        return 1.0 - self.density()

    def layer_densities(self) -> dict[str, float]:
        return {n: float(m.float().mean()) for n, m in self._masks.items()}

    def layer_nnz(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self._masks.items()}

    def iou(self, other: MaskSet) -> float:
        """|both kept| / |either kept| over the layers the two mask sets share."""
        inter = union = 0
        for name in self._masks.keys() & other._masks.keys():
            a = self._masks[name]
            b = other._masks[name].to(a.device)  # one set may come from a file (CPU), the other from the GPU
            inter += int((a & b).sum())
            union += int((a | b).sum())
        return inter / union if union else 1.0

    def channel_sparsity(self) -> dict[str, float]:
        """Fraction of output channels/units (dim 0) whose weights are all pruned, per layer."""
        out = {}
        for n, m in self._masks.items():
            rows = m.reshape(m.shape[0], -1)
            out[n] = float((~rows.any(dim=1)).float().mean())
        return out

    def global_channel_sparsity(self) -> float:
        dead = total = 0
        for m in self._masks.values():
            rows = m.reshape(m.shape[0], -1)
            dead += int((~rows.any(dim=1)).sum())
            total += rows.shape[0]
        return dead / total if total else 0.0

    def is_subset_of(self, other: MaskSet) -> bool:
        return all(not bool((m & ~other._masks[n].to(m.device)).any()) for n, m in self._masks.items())

    def summary(self) -> dict:
        return {
            "density": self.density(),
            "nnz": self.nnz(),
            "numel": self.numel(),
            "layers": {
                n: {"density": float(m.float().mean()), "nnz": int(m.sum()), "numel": m.numel()}
                for n, m in self._masks.items()
            },
        }

    # -- application --------------------------------------------------------------------------
    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned entries of the model's weights in place."""
        for name, p in _lookup(model, list(self._masks)).items():
            mask = self._masks[name]
            if mask.shape != p.shape:
                raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, weight {tuple(p.shape)}")
            if mask.device != p.device:
                self._masks[name] = mask = mask.to(p.device)
            p.mul_(mask)

    def attach(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, mask_gradients: bool = True
    ) -> MaskHandle:
        """Apply now and keep enforcing: mask gradients before and re-mask weights after each optimizer step."""
        self.apply(model)
        return MaskHandle(self, model, optimizer, mask_gradients)

    # -- persistence --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: m.cpu().to(torch.uint8).contiguous() for n, m in self._masks.items()}

    def save(self, path: str | Path) -> None:
        """Save as safetensors (uint8 tensors), written atomically."""
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            save_file(self.state_dict(), str(tmp), metadata={"format": "prunezoo.maskset/1"})

    @classmethod
    def load(cls, path: str | Path) -> MaskSet:
        from safetensors.torch import load_file

        return cls({n: t.to(torch.bool) for n, t in load_file(str(path)).items()})

    def to_json_summary(self) -> str:
        return json.dumps(self.summary(), indent=2)


class MaskHandle:
    """Keeps a MaskSet enforced on a model (and optionally an optimizer) until ``remove()``.

    Re-masking after each optimizer step alone keeps pruned weights exactly zero, because every
    built-in optimizer (SGD momentum, Adam moments, weight decay) updates elementwise. Gradient
    masking (``mask_gradients=True``, the default: an in-place fused multiply in an optimizer
    step pre-hook, so after gradient clipping and after callbacks that read the dense gradient,
    e.g. RigL's growth) keeps optimizer state from building up at pruned entries, which matters
    to methods that regrow weights. Without an optimizer nothing is enforced after ``attach``.
    """

    def __init__(
        self,
        masks: MaskSet,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        mask_gradients: bool = True,
    ):
        self.masks = masks
        self.model = model
        self._params = _lookup(model, list(masks))
        self._refresh()
        self.mask_gradients = mask_gradients
        self._opt_hooks: list = []
        if optimizer is not None:
            self.bind_optimizer(optimizer)

    def _refresh(self) -> None:
        # Float copies of the masks in the weights' dtype/device: one fused multiply per step.
        self._param_list: list[torch.Tensor] = list(self._params.values())
        self._float_masks = [self.masks[n].to(device=p.device, dtype=p.dtype) for n, p in self._params.items()]

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self._remove_optimizer_hooks()
        if self.mask_gradients:
            self._opt_hooks.append(optimizer.register_step_pre_hook(lambda *_: self.mask_grads()))
        self._opt_hooks.append(optimizer.register_step_post_hook(lambda *_: self.enforce()))

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of pruned entries in place (called before every optimizer step)."""
        pairs = [(p.grad, m) for p, m in zip(self._param_list, self._float_masks) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    @torch.no_grad()
    def enforce(self) -> None:
        """Re-zero pruned weights (called after every optimizer step)."""
        torch._foreach_mul_(self._param_list, self._float_masks)

    def update(self, masks: MaskSet) -> None:
        """Swap in new masks (e.g. after a pruning step) and apply them."""
        self.masks._masks = masks.clone()._masks
        self.masks.apply(self.model)
        self._refresh()

    def _remove_optimizer_hooks(self) -> None:
        for h in self._opt_hooks:
            h.remove()
        self._opt_hooks = []

    def remove(self) -> None:
        self._remove_optimizer_hooks()


def _lookup(model: nn.Module, names: list[str]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        hidden = [n for n in missing if n in torch_pruned_tensors(model)]
        raise KeyError(f"model has no parameter(s) {missing}" + (f"; {torch_prune_hint(hidden)}" if hidden else ""))
    return {n: params[n] for n in names}
