"""Random criterion: i.i.d. uniform scores, the baseline every comparison must include."""

import torch

from prunezoo.criteria.base import ScoringContext, register_criterion


@register_criterion("random")
def random_scores(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    return {name: torch.rand(p.shape, generator=ctx.generator) for name, p in ctx.params.items()}
