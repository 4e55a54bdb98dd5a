"""The one pruning primitive: score (criterion) → allocate (scheme) → select top-k → MaskSet."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from prunezoo.allocation import layer_densities
from prunezoo.criteria import ScoringContext, get_criterion
from prunezoo.errors import ConfigError
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.nm import nm_core
from prunezoo.sparsity.nm import pattern_density as nm_density
from prunezoo.sparsity.selection import prunable_parameters
from prunezoo.sparsity.topk import global_keep_masks, keep_count, keep_top_k, nan_layers, restrict_scores


def prune(
    model: nn.Module,
    density: float,
    *,
    criterion: str | Callable = "magnitude",
    scheme: str = "global",
    masks: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    batches: Iterable | None = None,
    loss_fn: Callable | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    pattern: str | None = None,
    **alloc_options,
) -> MaskSet:
    """Masks keeping a ``density`` fraction of the prunable weights, ranked by ``criterion``.

    ``scheme="global"`` ranks all layers together (one threshold); any other allocation scheme
    (``uniform``, ``erk``, ``balanced``, ``pyramidal``, ``explicit``) fixes per-layer densities first
    and ranks within each layer. With ``masks`` given, the result is a subset of them (pruned
    weights never return). The model is not modified: call ``MaskSet.apply``/``attach``.

    ``pattern="n:m"`` (e.g. ``"2:4"``) constrains the selection to N:M (:mod:`prunezoo.sparsity.nm`):
    the ``n`` best-scored weights of every group of ``m`` are always kept and the remaining budget is
    ranked as usual (``scheme``) among the rest, so a gradual schedule shrinks towards the pattern;
    ``density`` <= n/m gives exactly N:M in every layer that can hold it, whatever the scheme (the
    pattern is its own uniform allocation). Layers that cannot hold the pattern stay dense.

    A model pruned with ``torch.nn.utils.prune`` (``weight_orig`` + ``weight_mask``) raises
    :class:`~prunezoo.errors.ConfigError` naming its torch-pruned layers instead of skipping them:
    ``prev = MaskSet.from_torch_prune(model)`` converts it (torch's zeros stay in the weights), then
    ``prune(model, d, masks=prev)`` prunes further without resurrecting them.
    """
    if not (isinstance(density, (int, float)) and 0.0 < density <= 1.0):
        raise ConfigError("density", f"must be in (0, 1], got {density!r}")
    params = prunable_parameters(model, include=include, exclude=exclude)
    ctx = ScoringContext(
        model=model,
        params=params,
        batches=batches,
        loss_fn=loss_fn,
        generator=torch.Generator().manual_seed(seed),
    )
    scores = get_criterion(criterion)(ctx)
    if masks is not None:  # masks loaded from a file (or drawn on the CPU) meet scores on the model's device
        scores = restrict_scores(scores, {n: m.to(scores[n].device) if n in scores else m for n, m in masks.items()})
    if bad := nan_layers(scores):  # ranked below every number (counts stay exact), but worth a look
        warnings.warn(
            f"NaN pruning scores (pruned first) in {bad}: check the criterion and the model",
            RuntimeWarning,
            stacklevel=2,
        )
    forced = None
    if pattern is not None:  # N:M: the pattern's core is kept (+inf score); the rest competes as usual
        forced = nm_core(scores, pattern)
        scores = {n: s.float().masked_fill(forced[n], float("inf")) for n, s in scores.items()}

    total = sum(p.numel() for p in params.values())
    floor = lambda n: int(forced[n].sum()) if forced is not None else 0
    if forced is not None and pattern is not None and density <= nm_density(pattern) + 1e-9:
        keep = forced  # at (or past) the pattern's own density: exactly N:M, whatever the scheme
    elif scheme == "global" and not alloc_options:
        keep = global_keep_masks(scores, max(keep_count(density, total), sum(floor(n) for n in scores)))
    else:
        # Per-layer budgets first (also for "global" with keep_dense/overrides), then rank per layer.
        if scheme == "global":
            alloc_options["scores"] = scores
        dens = layer_densities(model, density, scheme, include=include, exclude=exclude, **alloc_options)
        keep = {n: keep_top_k(scores[n], max(keep_count(dens[n], p.numel()), floor(n))) for n, p in params.items()}
    if masks is not None:
        # Never resurrect: a layer asked to keep more than it still has keeps what it has.
        keep = {n: k & masks[n].to(k.device) if n in masks else k for n, k in keep.items()}
    return MaskSet(keep)


def imp_keep_count(remaining: int, fraction: float) -> int:
    """OpenLTH's rule: remove ceil(fraction * remaining) of the remaining weights."""
    return remaining - math.ceil(fraction * remaining)
