"""Iterative pruning in rounds: SynFlow's schedule (Tanaka et al. 2020), usable with any criterion.

Round r = 1..R prunes to density d_r and re-scores the *masked* network before the next round, so
a criterion sees the effect of earlier removals (for SynFlow this is what conserves synaptic flow
and avoids layer collapse; with SNIP it gives iterative SNIP, de Jorge et al. 2021). Schedules
from the starting density d_0 (1, or the density of ``masks``) to the target d:

- ``"exponential"``: d_r = d_0 (d / d_0)^(r/R)  (the paper's; d^(r/R) from dense);
- ``"linear"``:      d_r = d_0 + (d - d_0) r/R.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.pruning.core import prune
from prunezoo.sparsity.masks import MaskSet

SCHEDULES = ("exponential", "linear")


def round_densities(density: float, rounds: int, schedule: str = "exponential", start: float = 1.0) -> list[float]:
    """Target density after each of ``rounds`` rounds (the last is exactly ``density``)."""
    if schedule == "exponential":
        out = [start * (density / start) ** (r / rounds) for r in range(1, rounds + 1)]
    else:
        out = [start + (density - start) * r / rounds for r in range(1, rounds + 1)]
    out[-1] = density
    return out


def prune_iteratively(
    model: nn.Module,
    density: float,
    *,
    criterion: str | Callable,
    rounds: int = 100,
    schedule: str = "exponential",
    scheme: str = "global",
    seed: int = 0,
    batches: Iterable | None = None,
    loss_fn: Callable | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    **alloc,
) -> MaskSet:
    """Masks at ``density`` reached in ``rounds`` prune-and-rescore rounds; ``model`` is not modified.

    Each round calls :func:`~prunezoo.pruning.prune` (same ``scheme``/``alloc`` options, seed
    ``seed + r``) on a private copy of the model whose weights are multiplied by the current mask,
    with the current mask as ``masks`` so every round's mask is a subset of the previous one.
    ``rounds=1`` is exactly single-shot ``prune``.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError("rounds", f"must be a positive integer, got {rounds!r}")
    if schedule not in SCHEDULES:
        raise ConfigError("schedule", f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if not (isinstance(density, (int, float)) and 0.0 < density <= 1.0):
        raise ConfigError("density", f"must be in (0, 1], got {density!r}")
    batches = None if batches is None else list(batches)  # re-used every round
    if rounds == 1:
        return prune(
            model,
            density,
            criterion=criterion,
            scheme=scheme,
            masks=masks,
            seed=seed,
            batches=batches,
            loss_fn=loss_fn,
            **alloc,
        )
    current = None if masks is None else MaskSet(masks)
    start = 1.0 if current is None else max(current.density(), density)
    work = copy.deepcopy(model)  # the caller's model keeps its weights
    for r, d in enumerate(round_densities(density, rounds, schedule, start=start)):
        if current is not None:
            current.apply(work)  # score the pruned network: earlier removals must be visible
        current = prune(
            work,
            d,
            criterion=criterion,
            scheme=scheme,
            masks=current,
            seed=seed + r,
            batches=batches,
            loss_fn=loss_fn,
            **alloc,
        )
    assert current is not None  # rounds >= 2: the loop ran
    return current
