"""SNIP: connection sensitivity at initialisation (Lee, Ajanthan & Torr, ICLR 2019).

score = |w ⊙ Σ_b ∇_w L_b|, the first-order loss change of removing each weight, computed on the
freshly initialised network. The gradient is summed over *every* batch in ``ctx.batches``: the
batch count matters (the paper uses one mini-batch; more batches average out sampling noise and
give a different ranking), so fix it in experiments and report it. Sum versus mean only rescales
all scores and does not change the ranking. The same formula on a trained network is the
first-order Taylor criterion (``"taylor"``).

Mode: the network is scored in eval mode (BatchNorm running statistics, no dropout), as the
authors' code does (``is_train: False`` in its pruning step), whatever mode the model is in;
``make_snip("train")`` scores with batch statistics instead (on a BatchNorm CNN the two masks
differ a lot).
"""

from __future__ import annotations

import torch

from prunezoo.criteria._common import check_mode, loss_function, preserved, require_batches, summed_gradients
from prunezoo.criteria.base import Criterion, ScoringContext, register_criterion

MODE = "eval"  # the authors' code


def make_snip(mode: str = MODE) -> Criterion:
    """A SNIP criterion scoring the model in ``mode`` ("eval", the paper's, or "train")."""
    check_mode(mode)

    def snip(ctx: ScoringContext) -> dict[str, torch.Tensor]:
        batches = require_batches(ctx, "snip")
        with preserved(ctx, mode=mode):
            grads = summed_gradients(ctx, batches, loss_function(ctx))
        return {n: (p.detach() * grads[n]).abs() for n, p in ctx.params.items()}

    snip.__doc__ = f"SNIP |w ⊙ g|, scored in {mode} mode."
    return snip


register_criterion("snip")(make_snip())
