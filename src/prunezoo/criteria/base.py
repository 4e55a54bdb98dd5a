"""Criterion protocol and registry. A criterion scores prunable weights: higher = more important.

A name that is not registered resolves as an entry point of the group ``prunezoo.criteria``, else as an
import path ``module:attr`` to a criterion: a callable ``fn(ctx: ScoringContext) -> {param name: score
tensor shaped like the parameter}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.utils.plugins import entry_point, is_import_path, load_import_path, track_registry


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


ENTRY_POINT_GROUP = "prunezoo.criteria"


def get_criterion(name_or_fn: str | Criterion) -> Criterion:
    """A criterion by name: registered, else an entry point of ``prunezoo.criteria``, else an import path
    ``module:attr``; :class:`ConfigError` (field ``criterion``) otherwise or when a plug-in does not load."""
    if callable(name_or_fn):
        return name_or_fn
    name = name_or_fn
    if name in CRITERIA:
        return CRITERIA[name]
    if ":" not in name and (fn := entry_point(ENTRY_POINT_GROUP, name, "criterion")) is not None:
        if not callable(fn):
            raise ConfigError("criterion", f"entry point {name!r} is a {type(fn).__name__}, not callable")
        return fn
    if is_import_path(name):
        return load_import_path(name, "criterion")
    raise ConfigError(
        "criterion", f"unknown criterion {name!r}; known: {sorted(CRITERIA)} or an import path 'module:attr'"
    )


def _user_criteria() -> dict[str, Criterion]:
    # Registered by user code at run time: a worker process would not get it by importing prunezoo.
    from prunezoo import names

    return {n: fn for n, fn in CRITERIA.items() if n not in names.CRITERIA}


track_registry("criteria", _user_criteria, CRITERIA.setdefault)
