"""Layer-density schemes: each turns a target density over some layers into one density per layer.

A scheme is ``fn(shapes, density, **options) -> dict[name, density]`` where ``shapes`` maps a
parameter name to its weight shape in module order. It must meet ``sum d_l m_l = density * sum m_l``
unless it says otherwise (``balanced`` without redistribution, ``erk`` clamp variant), in which
case the realized density is reported by :class:`prunezoo.allocation.Allocation`.
Formulas follow shared/reference/random-pruning-densities.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from scipy.optimize import brentq

from prunezoo.errors import ConfigError
from prunezoo.sparsity.topk import global_keep_masks, keep_count

Shapes = Mapping[str, tuple[int, ...]]
Scheme = Callable[..., dict[str, float]]

SCHEMES: dict[str, Scheme] = {}


def register_scheme(name: str) -> Callable[[Scheme], Scheme]:
    def deco(fn: Scheme) -> Scheme:
        SCHEMES[name] = fn
        return fn

    return deco


def _sizes(shapes: Shapes) -> dict[str, int]:
    return {n: math.prod(s) for n, s in shapes.items()}


@register_scheme("uniform")
def uniform(shapes: Shapes, density: float) -> dict[str, float]:
    return {n: density for n in shapes}


@register_scheme("erk")
def erk(shapes: Shapes, density: float, erk_variant: str = "iterative", erk_power: float = 1.0) -> dict[str, float]:
    """RigL's Erdős–Rényi-Kernel: p_l ∝ (sum of dims / product of dims) ** erk_power.

    ``iterative`` (default) makes the largest-ratio layers dense whenever they would exceed 1 and
    re-solves for the rest; ``clamp`` clips at 1 once and therefore undershoots the target.
    """
    if erk_variant not in ("iterative", "clamp"):
        raise ConfigError("erk_variant", f"must be 'iterative' or 'clamp', got {erk_variant!r}")
    sizes = _sizes(shapes)
    raw = {n: (sum(s) / math.prod(s)) ** erk_power for n, s in shapes.items()}
    budget = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense]
        if not free:
            break
        remaining = budget - sum(sizes[n] for n in dense)
        eps = remaining / sum(raw[n] * sizes[n] for n in free)
        if erk_variant == "clamp":
            return {n: min(1.0, eps * raw[n]) for n in shapes}
        top = max(raw[n] for n in free)
        if eps * top <= 1.0:
            break
        dense.update(n for n in free if raw[n] == top)
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


@register_scheme("balanced")
def balanced(shapes: Shapes, density: float, redistribute: bool = False) -> dict[str, float]:
    """Every layer keeps the same number of weights x = density * sum m / L, capped at dense.

    Like the reference code, the surplus of capped layers is dropped unless ``redistribute``, which
    water-fills it equally over the uncapped layers (realized density then equals the target).
    """
    sizes = _sizes(shapes)
    budget = density * sum(sizes.values())
    if not redistribute:
        x = budget / len(sizes)
        return {n: min(1.0, x / m) for n, m in sizes.items()}
    dense: set[str] = set()
    while True:
        free = [n for n in sizes if n not in dense]
        x = (budget - sum(sizes[n] for n in dense)) / len(free)
        capped = {n for n in free if x >= sizes[n]}
        if not capped or len(capped) == len(free):
            dense |= capped
            break
        dense |= capped
    return {n: 1.0 if n in dense else x / sizes[n] for n in sizes}


@register_scheme("pyramidal")
def pyramidal(shapes: Shapes, density: float) -> dict[str, float]:
    """p_l = p_1 ** l (l = 1..L in module order), p_1 the unique root of sum m_l p_1^l = p sum m."""
    sizes = list(_sizes(shapes).values())
    target = density * sum(sizes)
    if density >= 1.0:
        p1 = 1.0
    else:
        f = lambda q: sum(m * q ** (i + 1) for i, m in enumerate(sizes)) - target
        p1 = brentq(f, 0.0, 1.0, xtol=1e-14, rtol=1e-14, maxiter=500)
    return {n: p1 ** (i + 1) for i, n in enumerate(shapes)}


@register_scheme("global")
def global_threshold(
    shapes: Shapes, density: float, scores: Mapping[str, torch.Tensor] | None = None
) -> dict[str, float]:
    """Densities implied by one threshold across layers on ``scores`` (weight magnitude by default)."""
    if scores is None:
        raise ConfigError("scores", "the 'global' scheme needs scores (e.g. weight magnitudes)")
    sizes = _sizes(shapes)
    keep = global_keep_masks({n: scores[n] for n in shapes}, keep_count(density, sum(sizes.values())))
    return {n: int(keep[n].sum()) / sizes[n] for n in shapes}
