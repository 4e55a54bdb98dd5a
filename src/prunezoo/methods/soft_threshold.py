"""``str``: soft threshold reparameterization (Kusupati et al. 2020); sparsity emerges from learned thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig
from prunezoo.methods.common import selection
from prunezoo.methods.registry import register_method_kind
from prunezoo.methods.reparam_kinds import ReparamKind


class STRConfig(MethodConfig):
    kind: Literal["str"]


class STROptions(BaseModel):
    model_config = STRICT
    s_init: float | None = Field(None, description="initial threshold parameter (reparam.apply_str default -3.2)")


@register_method_kind
class STR(ReparamKind):
    """Soft threshold reparameterization from init: the sparsity emerges from learned per-layer thresholds
    (weight decay on them); one job per method, no target sparsity."""

    name = "str"
    Config = STRConfig
    Options = STROptions
    has_target = False

    def wrap(self, ctx, model, method: MethodConfig, sparsity, start) -> None:
        from prunezoo.reparam import apply_str

        apply_str(model, allowed=start, **selection(method), **method.options)

    def squash(self, model):
        from prunezoo.reparam import squash_str

        return squash_str(model)
