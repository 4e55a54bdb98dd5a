"""First-order Taylor criterion, weight version (Molchanov et al. 2016, "Pruning Convolutional
Neural Networks for Resource Efficient Inference"; LeCun-style |ΔL| ≈ |g w|).

score = |Σ_b ∇_w L_b ⊙ w|: the magnitude of the first-order loss change when a weight is set to
zero, with the gradient accumulated over all of ``ctx.batches`` before taking the absolute value
(per-batch sign cancellations are kept, as for the full-data gradient). The formula is SNIP's;
``"snip"`` is the name for its at-initialisation use, ``"taylor"`` for trained networks.

Mode: train mode (batch statistics, dropout on), as in the authors' code, which accumulates the
criterion on the gradients of ordinary training steps; ``make_taylor("eval")`` scores in eval mode.
"""

from __future__ import annotations

import torch

from prunezoo.criteria._common import check_mode, loss_function, preserved, require_batches, summed_gradients
from prunezoo.criteria.base import Criterion, ScoringContext, register_criterion

MODE = "train"  # gradients of training steps, as the authors accumulate them


def make_taylor(mode: str = MODE) -> Criterion:
    """A Taylor criterion scoring the model in ``mode`` ("train", the paper's, or "eval")."""
    check_mode(mode)

    def taylor(ctx: ScoringContext) -> dict[str, torch.Tensor]:
        batches = require_batches(ctx, "taylor")
        with preserved(ctx, mode=mode):
            grads = summed_gradients(ctx, batches, loss_function(ctx))
        return {n: (grads[n] * p.detach()).abs() for n, p in ctx.params.items()}

    taylor.__doc__ = f"Taylor |g ⊙ w|, scored in {mode} mode."
    return taylor


register_criterion("taylor")(make_taylor())
