"""Edge-popup (Ramanujan et al., CVPR 2020, "What's Hidden in a Randomly Weighted Neural Network?").

Weights are frozen at their (random) values; each weight gets a learned score ``scores`` and the
forward pass uses only the top-k edges by |score| among the *allowed* entries::

    w_eff = w ⊙ M,   M = topk_mask(|scores| restricted to allowed, k_l),   k_l = round(d_l · n_allowed_l)

so ``density`` is relative to the allowed entries (absolute layer density = d_l × allowed density;
with no allowed mask, n_allowed = numel). Disallowed entries are ranked at -inf and never selected.
Backward is straight-through: ∂L/∂M := ∂L/∂w_eff ⊙ w, passed to |scores| unchanged (the paper's
update s ← s - η ∂L/∂w_eff · w), so ∂L/∂scores = sign(scores) ⊙ ∂L/∂w_eff ⊙ w on allowed entries and
0 outside them (scores outside the allowed set never move). Scores start Kaiming-uniform
(a=√5, as ``nn.Linear`` weights and the paper's code). ``weight_init="signed_constant"`` replaces
the weights by sign(w)·√(2/fan_in) (the paper's best-performing "signed Kaiming constant").

Converted in place by class swap: ``fc1.weight`` keeps its name (``requires_grad=False``), scores
are ``fc1.scores``. Biases of converted layers are frozen too unless ``freeze_bias=False``; other
parameters (norm layers...) are left as they are. :func:`squash_edge_popup` returns a plain model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import nn

from prunezoo.reparam._common import (
    allowed_for,
    forward_with_weight,
    layers_of,
    restore_class,
    select_layers,
    swap_class,
)
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.topk import keep_count, keep_top_k


class _TopKStraightThrough(torch.autograd.Function):
    """Forward: 0/1 mask of the k largest ``ranks`` among ``allowed``. Backward: identity on allowed entries."""

    @staticmethod
    def forward(ctx, ranks: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(allowed)
        return keep_top_k(ranks.masked_fill(~allowed, float("-inf")), k).to(ranks.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (allowed,) = ctx.saved_tensors
        return grad * allowed, None, None


class EdgePopupLayer:
    """Mixin of an edge-popup layer: frozen ``weight``, learned ``scores``, bool ``allowed_mask``, ``k``."""

    weight: nn.Parameter
    scores: nn.Parameter
    allowed_mask: torch.Tensor
    k: int

    def subnet(self) -> torch.Tensor:
        """The 0/1 mask M (differentiable w.r.t. ``scores`` by straight-through)."""
        return _TopKStraightThrough.apply(self.scores.abs(), self.allowed_mask, self.k)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.subnet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_with_weight(self, x, self.effective_weight())


class EdgePopupLinear(EdgePopupLayer, nn.Linear):
    """Edge-popup ``nn.Linear``."""


class EdgePopupConv1d(EdgePopupLayer, nn.Conv1d):
    """Edge-popup ``nn.Conv1d``."""


class EdgePopupConv2d(EdgePopupLayer, nn.Conv2d):
    """Edge-popup ``nn.Conv2d``."""


class EdgePopupConv3d(EdgePopupLayer, nn.Conv3d):
    """Edge-popup ``nn.Conv3d``."""


_TABLE = {
    nn.Linear: EdgePopupLinear,
    nn.Conv1d: EdgePopupConv1d,
    nn.Conv2d: EdgePopupConv2d,
    nn.Conv3d: EdgePopupConv3d,
}


def apply_edge_popup(
    model: nn.Module,
    density: float | Mapping[str, float],
    *,
    allowed: MaskSet | Mapping[str, torch.Tensor] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    freeze_bias: bool = True,
    weight_init: Literal["keep", "signed_constant"] = "keep",
    seed: int | None = None,
) -> nn.Module:
    """Convert the selected Linear/Conv layers to edge-popup layers, in place; returns ``model``.

    ``density``: one value for every layer, or ``{weight name: density}`` covering each selected
    layer (e.g. ``allocate(...).densities``), each relative to the layer's allowed entries.
    ``seed`` makes the score initialisation reproducible independently of the global RNG.
    Build the optimizer afterwards: it must see ``scores`` and not the frozen weights.
    """
    layers = select_layers(model, include, exclude)
    if allowed is not None and (unknown := set(allowed) - set(layers)):
        raise ValueError(f"allowed masks for unselected layers: {sorted(unknown)}")
    if isinstance(density, Mapping) and (missing := set(layers) - set(density)):
        raise ValueError(f"no density given for layers {sorted(missing)}")
    if weight_init not in ("keep", "signed_constant"):
        raise ValueError(f"weight_init must be 'keep' or 'signed_constant', got {weight_init!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for name, (_, module) in layers.items():
        d = float(density[name] if isinstance(density, Mapping) else density)
        if not 0.0 < d <= 1.0:
            raise ValueError(f"density of {name!r} must be in (0, 1], got {d}")
        w = module.weight
        mask = allowed_for(allowed, name, w)
        if mask is None:
            mask = torch.ones_like(w, dtype=torch.bool)
        # Scores drawn on CPU from the optional generator, then moved: same scores on any device.
        scores = torch.empty(w.shape, dtype=w.dtype)
        nn.init.kaiming_uniform_(scores, a=math.sqrt(5), generator=gen)
        if weight_init == "signed_constant":
            fan_in = nn.init._calculate_fan_in_and_fan_out(w)[0]
            with torch.no_grad():
                w.copy_(torch.sign(w) * math.sqrt(2.0 / fan_in))
        module._ep_requires_grad = (w.requires_grad, None if module.bias is None else module.bias.requires_grad)
        swap_class(module, _TABLE)
        module.register_parameter("scores", nn.Parameter(scores.to(w.device)))
        module.register_buffer("allowed_mask", mask)
        module.k = keep_count(d, int(mask.sum()))
        w.requires_grad_(False)
        if freeze_bias and module.bias is not None:
            module.bias.requires_grad_(False)
    return model


def edge_popup_layers(model: nn.Module) -> dict[str, EdgePopupLayer]:
    """``{weight name: edge-popup layer}`` of a converted model."""
    return layers_of(model, EdgePopupLayer)


@torch.no_grad()
def current_masks(model: nn.Module) -> MaskSet:
    """The currently selected edges M per layer (what :func:`squash_edge_popup` would return)."""
    return MaskSet({n: m.subnet().bool() for n, m in edge_popup_layers(model).items()})


@torch.no_grad()
def squash_edge_popup(model: nn.Module) -> MaskSet:
    """Zero the unselected weights, drop ``scores``/``allowed_mask``, restore the plain class and the
    original ``requires_grad`` flags (in place). Returns the selected-edge mask, keyed ``fc1.weight``.

    The mask is the selection M (it may include weights that happen to be exactly 0)."""
    masks = {}
    for name, module in edge_popup_layers(model).items():
        mask = module.subnet().bool()
        module.weight.mul_(mask)
        masks[name] = mask
        w_flag, b_flag = module._ep_requires_grad
        module.weight.requires_grad_(w_flag)
        if module.bias is not None and b_flag is not None:
            module.bias.requires_grad_(b_flag)
        del module.scores, module.allowed_mask, module.k, module._ep_requires_grad
        restore_class(module)
    if not masks:
        raise ValueError("model has no edge-popup layers")
    return MaskSet(masks)
