"""Allocators: turn one global density budget into a density per prunable layer.

>>> layer_densities(model, 0.1, "erk")                     # {"fc1.weight": 0.0796, ...}
>>> layer_densities(model, 0.1, "balanced", keep_dense=["last"], redistribute=True)
>>> allocate(model, 0.1, "pyramidal").realized_density

Layers named in ``keep_dense`` (globs, or ``"first"``/``"last"`` prunable layer) stay dense and
``overrides`` (glob -> density) are fixed; the scheme then shares what is left of the budget among
the other layers, so the overall target still holds. ``explicit`` takes a full per-layer dict.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from prunezoo.allocation.schemes import SCHEMES, register_scheme
from prunezoo.errors import ConfigError
from prunezoo.sparsity.selection import prunable_parameters

SCHEME_NAMES: tuple[str, ...] = ("global", "uniform", "erk", "balanced", "pyramidal", "explicit")
_TOL = 1e-9


@dataclass(frozen=True)
class Allocation:
    """Per-layer densities plus what they add up to (``realized_density`` may undershoot the target
    for ``balanced`` without redistribution or ``erk`` with ``erk_variant="clamp"``)."""

    densities: dict[str, float]
    sizes: dict[str, int]
    target_density: float | None

    @property
    def kept(self) -> dict[str, float]:
        return {n: self.densities[n] * self.sizes[n] for n in self.sizes}

    @property
    def realized_density(self) -> float:
        return sum(self.kept.values()) / sum(self.sizes.values())


def _resolve(patterns: Sequence[str], names: list[str], field: str) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        if pat == "first":
            hits = names[:1]
        elif pat == "last":
            hits = names[-1:]
        else:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise ConfigError(field, f"{pat!r} matches no prunable layer (layers: {', '.join(names)})")
        out += [h for h in hits if h not in out]
    return out


def _check_density(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ConfigError(field, f"must be a number in [0, 1], got {value!r}")
    return float(value)


def allocate(
    model: nn.Module | Mapping[str, Sequence[int]],
    density: float | None,
    scheme: str = "uniform",
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    module_types: Sequence[type[nn.Module]] | None = None,
    keep_dense: Sequence[str] = (),
    overrides: Mapping[str, float] | None = None,
    densities: Mapping[str, float] | None = None,
    scores: Mapping[str, torch.Tensor] | None = None,
    **scheme_options,
) -> Allocation:
    """Per-layer densities for ``model`` (or a ``{name: shape}`` mapping) under ``scheme``."""
    if isinstance(model, nn.Module):
        params = prunable_parameters(model, include=include, exclude=exclude, module_types=module_types)
        shapes = {n: tuple(p.shape) for n, p in params.items()}
    else:
        params, shapes = None, {n: tuple(s) for n, s in model.items()}
    if not shapes:
        raise ConfigError("include", "no prunable layers selected")
    if scheme not in SCHEME_NAMES and scheme not in SCHEMES:
        raise ConfigError("scheme", f"unknown allocation scheme {scheme!r}; choose from {', '.join(scheme_names())}")
    names = list(shapes)
    sizes = {n: math.prod(s) for n, s in shapes.items()}

    fixed: dict[str, float] = {n: 1.0 for n in _resolve(list(keep_dense), names, "keep_dense")}
    for pat, d in (overrides or {}).items():
        d = _check_density(d, f"overrides[{pat!r}]")
        for n in _resolve([pat], names, "overrides"):
            fixed.setdefault(n, d)
    if scheme == "explicit":
        if not densities:
            raise ConfigError("densities", "the 'explicit' scheme needs a {layer: density} mapping")
        for pat, d in densities.items():
            d = _check_density(d, f"densities[{pat!r}]")
            for n in _resolve([pat], names, "densities"):
                fixed.setdefault(n, d)
        missing = [n for n in names if n not in fixed]
        if missing:
            raise ConfigError("densities", f"no density given for layer(s): {', '.join(missing)}")
        return Allocation(dict(fixed), sizes, None if density is None else float(density))

    if (
        density is None
        or isinstance(density, bool)
        or not isinstance(density, (int, float))
        or not 0.0 < density <= 1.0
    ):
        raise ConfigError("density", f"must be in (0, 1], got {density!r}")
    free = [n for n in names if n not in fixed]
    if not free:
        return Allocation({n: fixed[n] for n in names}, sizes, float(density))
    budget = density * sum(sizes.values()) - sum(fixed[n] * sizes[n] for n in fixed)
    free_total = sum(sizes[n] for n in free)
    free_density = budget / free_total
    if free_density <= 0.0 or free_density > 1.0 + _TOL:
        raise ConfigError(
            "density",
            f"{density} cannot be met: the dense/overridden layers {sorted(fixed)} leave a density of "
            f"{free_density:.4g} for the remaining layers (needs to be in (0, 1])",
        )
    free_density = min(1.0, free_density)
    options = dict(scheme_options)
    if scheme == "global":
        if scores is None:
            if params is None:
                raise ConfigError("scores", "the 'global' scheme on shapes alone needs scores")
            scores = {n: p.detach().abs() for n, p in params.items()}
        options["scores"] = scores
    free_shapes = {n: shapes[n] for n in free}
    try:
        free_dens = SCHEMES[scheme](free_shapes, free_density, **options)
    except TypeError as err:  # an option the scheme does not take
        raise ConfigError("scheme", f"{scheme!r} got an unsupported option: {err}") from None
    out = {n: fixed[n] if n in fixed else float(free_dens[n]) for n in names}
    return Allocation(out, sizes, float(density))


def layer_densities(
    model: nn.Module | Mapping[str, Sequence[int]], density: float | None, scheme: str = "uniform", **options
) -> dict[str, float]:
    """``{parameter name: density}`` for the prunable layers of ``model``; see :func:`allocate`."""
    return allocate(model, density, scheme, **options).densities


def scheme_names() -> list[str]:
    return list(dict.fromkeys([*SCHEME_NAMES, *SCHEMES]))


__all__ = ["Allocation", "SCHEME_NAMES", "SCHEMES", "allocate", "layer_densities", "register_scheme", "scheme_names"]
