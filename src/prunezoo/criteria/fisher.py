"""Optimal Brain Damage with the diagonal empirical Fisher (LeCun, Denker & Solla, NIPS 1990).

OBD's saliency of weight k is s_k = ½ H_kk w_k², the loss increase of removing it under a
diagonal quadratic model at a minimum. H_kk is replaced by the diagonal empirical Fisher
F_kk = (1/N) Σ_n (∂ℓ_n/∂w_k)², the mean squared *per-sample* gradient over every sample of
``ctx.batches`` (a positive-semidefinite Gauss-Newton stand-in that needs no second derivatives).

Per-sample gradients come from ``torch.func`` (vmap over grad of ``functional_call``). When vmap
cannot run the model (BatchNorm in train mode, ...) the registered ``"obd"`` falls back, with a
warning, to ``per_sample=False``: F_kk ≈ mean over batches of the squared *batch* gradient. That
estimate is biased (it shrinks roughly by the batch size and keeps only the mean-gradient part),
so rankings differ; ask for it explicitly with :func:`make_obd` to make runs comparable.

Mode: eval mode (BatchNorm running statistics, no dropout), the Fisher of the trained network as
used for inference, like the OBS/WoodFisher criterion it is the diagonal case of (and vmap can
compute per-sample gradients through BatchNorm only in eval mode); ``make_obd(mode="train")``.
"""

from __future__ import annotations

import torch

from prunezoo.criteria._common import check_mode, iter_sample_gradients, loss_function, preserved, require_batches
from prunezoo.criteria.base import Criterion, ScoringContext, register_criterion

MODE = "eval"


def diagonal_fisher(
    ctx: ScoringContext, *, per_sample: bool | None = None, mode: str | None = MODE
) -> dict[str, torch.Tensor]:
    """F_kk = mean of squared per-sample (or, with ``per_sample=False``, per-batch) gradients."""
    batches = require_batches(ctx, "obd")
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in ctx.params.items()}
    count = 0
    with preserved(ctx, mode=mode):
        for chunk in iter_sample_gradients(ctx, batches, loss_function(ctx), per_sample=per_sample):
            for n, g in chunk.items():
                acc[n] += g.double().pow(2).sum(0)
            count += next(iter(chunk.values())).shape[0]
    return {n: (a / max(count, 1)).to(ctx.params[n].dtype) for n, a in acc.items()}


def make_obd(per_sample: bool | None = None, mode: str = MODE) -> Criterion:
    """An OBD criterion; ``per_sample`` True (vmap or fail), False (per-batch), None (auto)."""
    check_mode(mode)

    def obd(ctx: ScoringContext) -> dict[str, torch.Tensor]:
        fisher = diagonal_fisher(ctx, per_sample=per_sample, mode=mode)
        return {n: 0.5 * fisher[n] * p.detach().pow(2) for n, p in ctx.params.items()}

    obd.__doc__ = f"OBD saliency ½ F_kk w_k² (per_sample={per_sample}), scored in {mode} mode."
    return obd


register_criterion("obd")(make_obd(None))
