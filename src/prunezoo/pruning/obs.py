"""Optimal Brain Surgeon pruning: OBS saliencies, top-k selection, then the joint OBS weight update.

The Fisher blocks, saliency and update formulas are in :mod:`prunezoo.criteria.obs`; this module
only composes them with :func:`prunezoo.pruning.prune` (a layer above the criteria).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from prunezoo.criteria.base import ScoringContext
from prunezoo.criteria.obs import MODE, fisher_inverse_blocks, obs_saliency, obs_update
from prunezoo.pruning.core import prune
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.selection import prunable_parameters


def obs_prune(
    model: nn.Module,
    density: float,
    batches: Iterable,
    *,
    block_size: int = 64,
    damp: float = 1e-4,
    num_samples: int | None = None,
    scheme: str = "global",
    loss_fn: Callable | None = None,
    masks=None,
    seed: int = 0,
    per_sample: bool | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    mode: str = MODE,
    **alloc,
) -> MaskSet:
    """Prune ``model`` in place to ``density`` by OBS saliency and apply the joint OBS update.

    Surviving weights of each block are corrected, pruned ones set to exactly zero; biases and
    other parameters are untouched. Returns the MaskSet (apply/attach it to keep weights pruned
    while training). ``scheme``/``alloc``/``masks`` behave as in :func:`prunezoo.pruning.prune`.
    """
    params = prunable_parameters(model, include=include, exclude=exclude)
    ctx = ScoringContext(
        model=model,
        params=params,
        batches=list(batches) if batches is not None else None,
        loss_fn=loss_fn,
        generator=torch.Generator().manual_seed(seed),
    )
    finv = fisher_inverse_blocks(
        ctx, block_size=block_size, damp=damp, num_samples=num_samples, per_sample=per_sample, mode=mode
    )
    scores = {n: obs_saliency(p, finv[n]) for n, p in params.items()}
    keep = prune(
        model,
        density,
        criterion=lambda _: scores,
        scheme=scheme,
        masks=masks,
        seed=seed,
        include=include,
        exclude=exclude,
        **alloc,
    )
    with torch.no_grad():
        for n, p in params.items():
            k = keep[n].to(p.device)
            new = obs_update(p, finv[n], ~k).to(p.dtype)
            p.copy_(new * k)  # exact zeros where pruned
    return keep
