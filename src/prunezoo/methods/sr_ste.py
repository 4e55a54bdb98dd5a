"""``sr-ste``: N:M sparsity trained from init with the sparse-refined straight-through estimator."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig
from prunezoo.methods.common import selection
from prunezoo.methods.registry import register_method_kind
from prunezoo.methods.reparam_kinds import ReparamKind


class SRSTEConfig(MethodConfig):
    kind: Literal["sr-ste"]


class SRSTEOptions(BaseModel):
    model_config = STRICT
    decay: float | None = Field(None, description="sparse-refined decay on the pruned weights (default 2e-4)")


@register_method_kind
class SRSTE(ReparamKind):
    """SR-STE (Zhou et al. 2021): train N:M from init, the pattern recomputed from the dense weights every
    step, then bake the final N:M mask into the weights. Needs ``pattern``."""

    name = "sr-ste"
    Config = SRSTEConfig
    Options = SRSTEOptions
    takes_pattern = True
    needs_pattern = True

    def wrap(self, ctx, model, method: MethodConfig, sparsity, start) -> None:
        from prunezoo.reparam.srste import apply_srste

        apply_srste(model, method.pattern, **selection(method), **method.options)

    def squash(self, model):
        from prunezoo.reparam.srste import squash_srste

        return squash_srste(model)
