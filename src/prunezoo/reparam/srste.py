"""SR-STE: training N:M sparse networks from scratch (Zhou et al., ICLR 2021, arXiv:2102.04010,
"Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch").

Each converted layer keeps its *dense* weight ``w``; every forward pass recomputes the N:M mask
from it (the ``n`` largest |w| of every group of ``m`` along the input, :mod:`prunezoo.sparsity.nm`)
and uses w̃ = mask ⊙ w. The backward pass is the sparse-refined straight-through estimator::

    ∂L/∂w = ∂L/∂w̃ + λ_w (1 - mask) ⊙ w

(straight through to every weight, pruned ones included, plus a decay that pulls the currently
pruned weights towards zero, so the mask settles instead of flipping). This is the authors' code
(``Sparse.backward`` of aojunzz/NM-sparsity): the decay lives in the gradient, so with momentum it
goes through the optimizer like the loss gradient. ``decay`` = λ_w, 2e-4 as in their code.

Layers are converted in place (class swap, see ``_common``); layers whose input size is not a
multiple of ``m`` cannot hold the pattern and stay plain dense layers. :func:`squash_srste` bakes
the final N:M mask into the weights (exact zeros) and restores the plain classes, so the exported
model satisfies N:M exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunezoo.reparam._common import forward_with_weight, layers_of, restore_class, select_layers, swap_class
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.nm import is_eligible, nm_keep, parse_pattern
from prunezoo.sparsity.selection import prunable_parameters


class _SparseSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, n: int, m: int, decay: float) -> torch.Tensor:
        mask = nm_keep(weight.abs(), n, m).to(weight.dtype)
        ctx.save_for_backward(weight, mask)
        ctx.decay = decay
        return weight * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, mask = ctx.saved_tensors
        return grad + ctx.decay * (1.0 - mask) * weight, None, None, None


class SRSTELayer:
    """Mixin of an SR-STE layer: dense ``weight``, ``nm = (n, m)``, ``srste_decay`` (λ_w)."""

    weight: nn.Parameter
    nm: tuple[int, int]
    srste_decay: float

    def current_mask(self) -> torch.Tensor:
        return nm_keep(self.weight.detach().abs(), *self.nm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_with_weight(self, x, _SparseSTE.apply(self.weight, *self.nm, self.srste_decay))


class SRSTELinear(SRSTELayer, nn.Linear):
    """SR-STE ``nn.Linear``."""


class SRSTEConv1d(SRSTELayer, nn.Conv1d):
    """SR-STE ``nn.Conv1d``."""


class SRSTEConv2d(SRSTELayer, nn.Conv2d):
    """SR-STE ``nn.Conv2d``."""


class SRSTEConv3d(SRSTELayer, nn.Conv3d):
    """SR-STE ``nn.Conv3d``."""


_TABLE = {nn.Linear: SRSTELinear, nn.Conv1d: SRSTEConv1d, nn.Conv2d: SRSTEConv2d, nn.Conv3d: SRSTEConv3d}


def apply_srste(
    model: nn.Module,
    pattern: str = "2:4",
    *,
    decay: float = 2e-4,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> nn.Module:
    """Convert the selected Linear/Conv layers that can hold ``pattern`` to SR-STE layers, in place."""
    n, m = parse_pattern(pattern)
    if not (isinstance(decay, (int, float)) and not isinstance(decay, bool) and decay >= 0):
        raise ValueError(f"decay must be a number >= 0, got {decay!r}")
    converted = 0
    for _, (_, module) in select_layers(model, include, exclude, tuple(_TABLE)).items():
        if not is_eligible(module.weight.shape, m):
            continue  # stays dense: no whole groups of m along its input
        swap_class(module, _TABLE)
        module.nm, module.srste_decay = (n, m), float(decay)
        converted += 1
    if not converted:
        raise ValueError(f"no selected layer has an input size divisible by {m}; nothing can hold {n}:{m}")
    return model


def srste_layers(model: nn.Module) -> dict[str, nn.Module]:
    return layers_of(model, SRSTELayer)


def srste_masks(model: nn.Module) -> MaskSet:
    """The N:M masks the SR-STE layers use right now (recomputed from the dense weights)."""
    return MaskSet({name: layer.current_mask() for name, layer in srste_layers(model).items()})


@torch.no_grad()
def squash_srste(model: nn.Module) -> MaskSet:
    """Bake each SR-STE layer's N:M mask into its weight (exact zeros), restore plain layers.

    Returns masks over every prunable weight (layers left dense get all-True masks), for the
    reported sparsity and for keeping the pattern while fine-tuning (``MaskSet.attach``).
    """
    layers = srste_layers(model)
    masks = {}
    for name, layer in layers.items():
        mask = layer.current_mask()
        layer.weight.mul_(mask)
        restore_class(layer)
        for attr in ("nm", "srste_decay"):
            delattr(layer, attr)
        masks[name] = mask
    params = prunable_parameters(model)  # model order; layers left dense get all-True masks
    return MaskSet({n: masks[n] if n in masks else torch.ones_like(p, dtype=torch.bool) for n, p in params.items()})
