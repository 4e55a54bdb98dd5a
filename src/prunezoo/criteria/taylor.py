"""First-order Taylor criterion, weight version (Molchanov et al. 2016, "Pruning Convolutional
Neural Networks for Resource Efficient Inference"; LeCun-style |ΔL| ≈ |g w|).

score = |Σ_b ∇_w L_b ⊙ w|: the magnitude of the first-order loss change when a weight is set to
zero, with the gradient accumulated over all of ``ctx.batches`` before taking the absolute value
(per-batch sign cancellations are kept, as for the full-data gradient). The formula is SNIP's;
``"snip"`` is the name for its at-initialisation use, ``"taylor"`` for trained networks.
"""

from __future__ import annotations

import torch

from prunezoo.criteria._common import loss_function, preserved, require_batches, summed_gradients
from prunezoo.criteria.base import ScoringContext, register_criterion


@register_criterion("taylor")
def taylor(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    batches = require_batches(ctx, "taylor")
    with preserved(ctx):
        grads = summed_gradients(ctx, batches, loss_function(ctx))
    return {n: (grads[n] * p.detach()).abs() for n, p in ctx.params.items()}
