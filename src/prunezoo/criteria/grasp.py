"""GraSP: gradient signal preservation (Wang, Zhang & Grosse, ICLR 2020, "Picking Winning Tickets
Before Training by Preserving Gradient Flow").

With g = Σ_b ∇_w L_b and H the Hessian of Σ_b L_b (both over the prunable weights), removing
weight q changes the gradient norm ‖g‖² by ≈ -2 w_q (Hg)_q. The paper's score is
S = -w ⊙ Hg and it prunes the weights with the *largest* S (their removal reduces gradient flow
least, or even increases it), as the authors' code does.

Sign convention here: prunezoo keeps the highest scores, so this criterion returns
``w ⊙ Hg = -S``; keeping its top-k is exactly removing GraSP's top-S weights. The scores are
signed (not absolute values). Hg is computed exactly by double backward (∇(∇L · g) with g held
fixed).

Temperature: the authors' code divides the logits by T = 200 before the loss, and the registered
``"grasp"`` does the same (L = loss_fn(z / T, y)). It matters: on the digits MLP at 90% sparsity
(``examples/methods-90.yaml``, one seed) GraSP without it trained to 66% test accuracy, with it
to 96%. ``make_grasp(1.0)`` is the untempered formula.

Mode: train mode (BatchNorm batch statistics, dropout on), as the authors' code scores the network
it is about to train, whatever mode the model is in; ``make_grasp(mode="eval")`` uses eval mode.
"""

from __future__ import annotations

import torch

from prunezoo.criteria._common import (
    check_mode,
    loss_function,
    model_device,
    preserved,
    require_batches,
    summed_gradients,
    to_device,
)
from prunezoo.criteria.base import Criterion, ScoringContext, register_criterion
from prunezoo.errors import ConfigError

TEMPERATURE = 200.0  # the authors' code
MODE = "train"  # the authors' code


def make_grasp(temperature: float = TEMPERATURE, mode: str = MODE) -> Criterion:
    """A GraSP criterion whose loss sees the logits divided by ``temperature``, scored in ``mode``."""
    if not temperature > 0:
        raise ConfigError("temperature", f"must be > 0, got {temperature!r}")
    check_mode(mode)

    def grasp(ctx: ScoringContext) -> dict[str, torch.Tensor]:
        base = loss_function(ctx)
        loss_fn = base if temperature == 1.0 else (lambda z, y: base(z / temperature, y))
        return _grasp_scores(ctx, loss_fn, mode)

    grasp.__doc__ = f"GraSP keep-score w ⊙ Hg, logits / {temperature:g}, scored in {mode} mode."
    return grasp


def _grasp_scores(ctx: ScoringContext, loss_fn, mode: str | None = MODE) -> dict[str, torch.Tensor]:
    batches = require_batches(ctx, "grasp")
    names = list(ctx.params)
    params = [ctx.params[n] for n in names]
    device = model_device(ctx)
    with preserved(ctx, mode=mode):
        g = summed_gradients(ctx, batches, loss_fn)  # fixed vector: no graph through it
        hg = [torch.zeros_like(p) for p in params]
        for batch in batches:
            x, y = to_device(batch, device)
            grads = torch.autograd.grad(loss_fn(ctx.model(x), y), params, create_graph=True, allow_unused=True)
            z = sum(
                ((gi * g[n]).sum() for n, gi in zip(names, grads) if gi is not None), torch.zeros((), device=device)
            )
            if not z.requires_grad:  # loss is (locally) linear in every weight: Hg = 0
                continue
            for acc, h in zip(hg, torch.autograd.grad(z, params, allow_unused=True)):
                if h is not None:
                    acc.add_(h.detach())
    return {n: p.detach() * h for (n, p), h in zip(ctx.params.items(), hg)}


register_criterion("grasp")(make_grasp())
