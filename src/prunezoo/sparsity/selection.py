"""Which parameters are prunable: Conv/Linear weights by default, never biases or norm params."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import torch
from torch import nn

DEFAULT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def prunable_parameters(
    model: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    module_types: Sequence[type[nn.Module]] | None = None,
) -> dict[str, nn.Parameter]:
    """Prunable weights keyed by parameter name (e.g. ``"fc1.weight"``), in module order.

    ``include``/``exclude`` are glob patterns on parameter names (``"fc3.*"``, ``"*.conv1.weight"``);
    ``include`` replaces the default type-based choice; ``exclude`` is applied last.
    Only parameters named ``weight`` of the chosen module types qualify by default, so biases and
    normalisation parameters are never pruned unless explicitly included.
    """
    types = tuple(module_types) if module_types else DEFAULT_PRUNABLE_TYPES
    chosen: dict[str, nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if include is not None:
                ok = _matches(full, include)
            else:
                ok = isinstance(module, types) and p_name == "weight"
            if ok and not (exclude and _matches(full, exclude)):
                chosen[full] = param
    if include is not None and not chosen:
        raise ValueError(f"include={list(include)!r} matches no parameter of the model")
    return chosen


def parameter_sizes(params: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: p.numel() for name, p in params.items()}
