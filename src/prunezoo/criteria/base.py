"""Criterion protocol and registry. A criterion scores prunable weights: higher = more important."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from prunezoo.errors import ConfigError


@dataclass
class ScoringContext:
    """Everything a criterion may look at. Data-free criteria ignore ``batches``/``loss_fn``."""

    model: nn.Module
    params: Mapping[str, nn.Parameter]
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))


Criterion = Callable[[ScoringContext], dict[str, torch.Tensor]]

CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str) -> Callable[[Criterion], Criterion]:
    def deco(fn: Criterion) -> Criterion:
        if name in CRITERIA:
            raise ValueError(f"criterion {name!r} registered twice")
        CRITERIA[name] = fn
        return fn

    return deco


def get_criterion(name_or_fn: str | Criterion) -> Criterion:
    if callable(name_or_fn):
        return name_or_fn
    try:
        return CRITERIA[name_or_fn]
    except KeyError:
        raise ConfigError("criterion", f"unknown criterion {name_or_fn!r}; known: {sorted(CRITERIA)}") from None
