"""STR: Soft Threshold weight Reparameterization (Kusupati et al., ICML 2020, arXiv:2002.03231).

Each converted layer l keeps its raw weight ``w`` and gains one learnable scalar ``s`` (``fc1.s``)::

    w_eff = S ⊙ sign(w) ⊙ relu(|w| - sigmoid(s_l))

with ``S`` an optional fixed *allowed* mask (sparse-to-sparse: start from an ER mask; ``w_eff`` is
zero outside it and every later mask is a subset of it). Gradients: ∂w_eff/∂w = S ⊙ 1[|w| > g(s)]
(weights under the threshold get no loss gradient), ∂w_eff/∂s = -S ⊙ sign(w) ⊙ 1[|w| > g(s)] g'(s).

Sparsity is not targeted, it *emerges*: weight decay on ``s`` (the Trainer's ``weight_decay``
covers every trainable parameter, ``s`` included) pulls s_l towards 0, i.e. the threshold
sigmoid(s_l) up towards 0.5, against the loss gradient; stronger decay / longer training ⇒ sparser.
``s_init`` sets the starting threshold: sigmoid(-3.2) ≈ 0.039 already zeroes weights below 0.039 (a
good share of a wide layer's Kaiming-initialised weights); STR's own code starts far more negative
(dense start) and relies on long runs. Read the reached sparsity with :func:`current_sparsity`.

Layers are converted in place (class swap, see ``_common``): ``fc1.weight`` stays the raw weight
``w``; :func:`squash_str` bakes ``w_eff`` into it and restores the plain layer class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


class STRLayer:
    """Mixin of an STR layer: ``weight`` (raw w), ``s`` (scalar threshold logit), ``allowed_mask``."""

    weight: nn.Parameter
    s: nn.Parameter
    allowed_mask: torch.Tensor | None

    def threshold(self) -> torch.Tensor:
        return torch.sigmoid(self.s)

    def effective_weight(self) -> torch.Tensor:
        w = self.weight
        eff = torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(self.s))
        return eff if self.allowed_mask is None else eff * self.allowed_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_with_weight(self, x, self.effective_weight())


class STRLinear(STRLayer, nn.Linear):
    """STR ``nn.Linear``."""


class STRConv1d(STRLayer, nn.Conv1d):
    """STR ``nn.Conv1d``."""


class STRConv2d(STRLayer, nn.Conv2d):
    """STR ``nn.Conv2d``."""


class STRConv3d(STRLayer, nn.Conv3d):
    """STR ``nn.Conv3d``."""


_TABLE = {nn.Linear: STRLinear, nn.Conv1d: STRConv1d, nn.Conv2d: STRConv2d, nn.Conv3d: STRConv3d}


def apply_str(
    model: nn.Module,
    *,
    s_init: float = -3.2,
    allowed: MaskSet | Mapping[str, torch.Tensor] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> nn.Module:
    """Convert the selected Linear/Conv layers of ``model`` to STR layers, in place; returns ``model``.

    ``allowed`` (e.g. :func:`~prunezoo.pruning.random_er_masks`) fixes S per layer; the raw weights
    outside it are zeroed too so the state dict agrees with it. Build the optimizer afterwards (the
    ``s`` parameters are new).
    """
    layers = select_layers(model, include, exclude)
    if allowed is not None and (unknown := set(allowed) - set(layers)):
        raise ValueError(f"allowed masks for unselected layers: {sorted(unknown)}")
    for name, (_, module) in layers.items():
        w = module.weight
        mask = allowed_for(allowed, name, w)
        swap_class(module, _TABLE)
        module.register_parameter("s", nn.Parameter(torch.full((), float(s_init), dtype=w.dtype, device=w.device)))
        module.register_buffer("allowed_mask", None if mask is None else mask.to(w.dtype))
        if mask is not None:
            with torch.no_grad():
                w.mul_(mask)
    return model


def str_layers(model: nn.Module) -> dict[str, STRLayer]:
    """``{weight name: STR layer}`` of a converted model."""
    return layers_of(model, STRLayer)


@torch.no_grad()
def current_masks(model: nn.Module) -> MaskSet:
    """Nonzero pattern of the effective weights (the mask :func:`squash_str` would return)."""
    return MaskSet({n: m.effective_weight() != 0 for n, m in str_layers(model).items()})


def current_sparsity(model: nn.Module) -> float:
    """Fraction of zero effective weights over all STR layers (allowed-mask zeros included)."""
    return current_masks(model).sparsity()


@torch.no_grad()
def thresholds(model: nn.Module) -> dict[str, float]:
    """Per-layer threshold sigmoid(s_l)."""
    return {n: float(m.threshold()) for n, m in str_layers(model).items()}


@torch.no_grad()
def squash_str(model: nn.Module) -> MaskSet:
    """Bake ``w_eff`` into each layer's plain ``weight``, remove ``s``/``allowed_mask``, restore the
    plain class (in place). Returns the mask of nonzero weights, keyed ``fc1.weight`` etc."""
    masks = {}
    for name, module in str_layers(model).items():
        eff = module.effective_weight()
        module.weight.copy_(eff)
        masks[name] = eff != 0
        del module.s
        del module.allowed_mask
        restore_class(module)
    if not masks:
        raise ValueError("model has no STR layers")
    return MaskSet(masks)
