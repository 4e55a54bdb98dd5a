"""Which parameters are prunable: Conv/Linear weights by default, never biases or norm params."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.sparsity.torch_prune import pruned_tensor_names, torch_prune_hint

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
    normalisation parameters are never pruned unless explicitly included. A model with a
    ``prunezoo_prunable`` attribute (glob patterns, e.g. ``["blocks.*.weight"]`` of a transformer) narrows
    that default to the weights its patterns match (``include`` still replaces it).
    A chosen weight reparametrised by ``torch.nn.utils.prune`` (``weight_orig``/``weight_mask``) raises
    :class:`~prunezoo.errors.ConfigError` naming it: convert with ``MaskSet.from_torch_prune(model)``.
    """
    types = tuple(module_types) if module_types else DEFAULT_PRUNABLE_TYPES
    chosen: dict[str, nn.Parameter] = {}
    torch_pruned: list[str] = []  # chosen but hidden by torch.nn.utils.prune: an error, never a silent skip
    narrowed = getattr(model, "prunezoo_prunable", None) if include is None else None

    def wanted(module: nn.Module, full: str, p_name: str) -> bool:
        ok = _matches(full, include) if include is not None else isinstance(module, types) and p_name == "weight"
        ok = ok and (narrowed is None or _matches(full, narrowed))
        return ok and not (exclude and _matches(full, exclude))

    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if wanted(module, full, p_name):
                chosen[full] = param
        for t in pruned_tensor_names(module):
            full = f"{mod_name}.{t}" if mod_name else t
            if wanted(module, full, t):
                torch_pruned.append(full)
    if torch_pruned:
        raise ConfigError("model", torch_prune_hint(torch_pruned))
    if include is not None and not chosen:
        raise ValueError(f"include={list(include)!r} matches no parameter of the model")
    return chosen


def parameter_sizes(params: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: p.numel() for name, p in params.items()}
