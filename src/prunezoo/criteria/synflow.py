"""SynFlow: iterative synaptic flow pruning, data-free (Tanaka, Kunin, Yamins & Ganguli,
NeurIPS 2020, "Pruning neural network without any data by iteratively conserving synaptic flow").

The network is linearised by replacing *every* floating parameter and buffer by its absolute
value, an all-ones input is fed through it in eval mode (BatchNorm uses its running statistics,
no dropout), R = Σ model(1), and score = |w| ⊙ ∂R/∂|w|, the sum of the |w|-path products
through each weight. Use it with ``prunezoo.pruning.rounds.prune_iteratively`` (100 rounds in the
paper): single-shot SynFlow does not have the layer-collapse guarantee.

Implementation notes (pitfalls avoided):

- The model's weights are never touched: the linearised network is evaluated with
  ``torch.func.functional_call`` on ``|θ|`` copies, so there is no "multiply by sign(θ) to
  restore" step to get wrong (and no in-place edit to leak if scoring fails).
- Everything runs in float64: path products overflow float32 on deep networks. If the largest
  score still exceeds 1e30 all scores are divided by the same power of two (exact, ranking
  unchanged) before the float32 conversion; scores are only defined up to a positive factor.
- Input shape: taken from the first batch when ``ctx.batches`` is given; otherwise from the
  first Linear in module order (``(1, in_features)``, right for MLPs that flatten their input).
  A model whose first weight layer is a convolution needs one batch (only its shape is used).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prunezoo.criteria._common import check_mode, model_device, preserved
from prunezoo.criteria.base import Criterion, ScoringContext, register_criterion
from prunezoo.errors import ConfigError

_MAX_SCORE = 1e30


def _input_shape(ctx: ScoringContext) -> tuple[int, ...]:
    if ctx.batches is not None:
        for x, _ in ctx.batches:
            return (1, *x.shape[1:])
    for module in ctx.model.modules():
        if isinstance(module, nn.Linear):
            return (1, module.in_features)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            break
    raise ConfigError("batches", "synflow needs one batch to know the input shape")


MODE = "eval"  # the reference code's default (its prune_train_mode flag is off)


def make_synflow(mode: str = MODE) -> Criterion:
    """A SynFlow criterion running the linearised network in ``mode`` ("eval", the default, or "train")."""
    check_mode(mode)

    def synflow(ctx: ScoringContext) -> dict[str, torch.Tensor]:
        return _synflow_scores(ctx, mode)

    synflow.__doc__ = f"SynFlow |w| ⊙ ∂R/∂|w|, {mode} mode."
    return synflow


def _synflow_scores(ctx: ScoringContext, mode: str) -> dict[str, torch.Tensor]:
    from torch.func import functional_call

    model = ctx.model
    names = list(ctx.params)
    shape = _input_shape(ctx)
    device = model_device(ctx)
    # |θ| for every floating tensor of the state (biases, BN affine and running stats included,
    # as in the reference implementation); integer buffers (num_batches_tracked) as they are.
    state: dict[str, torch.Tensor] = {}
    for n, t in [*model.named_parameters(), *model.named_buffers()]:
        state[n] = t.detach().abs().double() if t.is_floating_point() else t
    for n in names:
        state[n].requires_grad_(True)
    with preserved(ctx, mode=mode):
        out = functional_call(model, state, (torch.ones(shape, dtype=torch.float64, device=device),))
        grads = torch.autograd.grad(out.sum(), [state[n] for n in names], allow_unused=True)
    scores = {
        n: (state[n].detach() * g).abs() if g is not None else torch.zeros_like(state[n].detach())
        for n, g in zip(names, grads)
    }
    top = max((float(s.max()) for s in scores.values() if s.numel()), default=0.0)
    if math.isfinite(top) and top > _MAX_SCORE:
        scale = 2.0 ** -math.floor(math.log2(top))
        scores = {n: s * scale for n, s in scores.items()}
    return {n: s.to(ctx.params[n].dtype) for n, s in scores.items()}


register_criterion("synflow")(make_synflow())
