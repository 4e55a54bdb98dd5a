"""Shared plumbing of the reparameterised layers: which layers to convert, and in-place class swaps.

STR and edge-popup convert a layer *in place* by swapping its class for a subclass whose forward
uses an effective weight (the way ``torch.nn.utils.parametrize`` works, minus the renaming to
``parametrizations.weight.original``): the module object, its hooks and its ``weight``/``bias``
Parameter objects stay the same, so names like ``fc1.weight`` and existing MaskSets keep working.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.selection import prunable_parameters

SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def select_layers(
    model: nn.Module,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    types: tuple[type[nn.Module], ...] = SUPPORTED_TYPES,
) -> dict[str, tuple[str, nn.Module]]:
    """``{weight name: (module name, module)}`` for the prunable weights ``include``/``exclude`` pick.

    Default selection = every ``weight`` of a module of ``types``; an explicit ``include`` that picks
    anything else (a bias, a norm weight, an unsupported layer type) is an error, not a silent skip.
    """
    params = prunable_parameters(model, include=include, exclude=exclude, module_types=types)
    modules = dict(model.named_modules())
    out: dict[str, tuple[str, nn.Module]] = {}
    for name in params:
        mod_name, _, leaf = name.rpartition(".")
        module = modules[mod_name]
        if leaf == "weight" and isinstance(module, types) and type(module) not in types:
            raise ValueError(f"{name!r} belongs to an already reparameterised {type(module).__name__}")
        if leaf != "weight" or type(module) not in types:
            allowed = ", ".join(t.__name__ for t in types)
            raise ValueError(f"{name!r} is not the weight of a plain {allowed} layer; cannot reparameterise it")
        out[name] = (mod_name, module)
    if not out:
        raise ValueError("no layer selected for reparameterisation")
    return out


def forward_with_weight(module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's own forward computation with ``weight`` in place of ``module.weight``."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, module.bias)
    return module._conv_forward(x, weight, module.bias)  # Conv1d/2d/3d: handles padding_mode too


def swap_class(module: nn.Module, table: Mapping[type[nn.Module], type[nn.Module]]) -> None:
    base = type(module)
    if base not in table:
        raise TypeError(f"cannot reparameterise a {base.__name__}")
    module.__class__ = table[base]


def restore_class(module: nn.Module) -> None:
    # The reparameterised classes are (Mixin, Base): the plain base is the second parent.
    module.__class__ = type(module).__bases__[1]


def allowed_for(
    allowed: MaskSet | Mapping[str, torch.Tensor] | None, name: str, weight: torch.Tensor
) -> torch.Tensor | None:
    """Boolean allowed mask of one layer (``None``: everything allowed), checked against the weight."""
    if allowed is None or name not in allowed:
        return None
    mask = torch.as_tensor(allowed[name]).to(device=weight.device, dtype=torch.bool)
    if mask.shape != weight.shape:
        raise ValueError(f"allowed mask {name!r} has shape {tuple(mask.shape)}, weight {tuple(weight.shape)}")
    return mask


def layers_of(model: nn.Module, kind: type) -> dict[str, nn.Module]:
    """``{weight name: module}`` of every layer of the reparameterised ``kind`` (a mixin class)."""
    return {f"{n}.weight" if n else "weight": m for n, m in model.named_modules() if isinstance(m, kind)}
