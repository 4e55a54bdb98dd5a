"""Magnitude criterion (Han et al. 2015; the lottery-ticket default): score = |w|."""

import torch

from prunezoo.criteria.base import ScoringContext, register_criterion


@register_criterion("magnitude")
def magnitude(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    return {name: p.detach().abs() for name, p in ctx.params.items()}
