"""``dst``: dynamic sparse training from init, RigL (``grow: gradient``) or SET (``grow: random``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig
from prunezoo.methods.common import prune_options
from prunezoo.methods.dynamic import DynamicKind
from prunezoo.methods.registry import register_method_kind


class DSTConfig(MethodConfig):
    kind: Literal["dst"]


class DSTOptions(BaseModel):
    """schedules.DynamicSparseTraining's keyword options (defaults there)."""

    model_config = STRICT
    grow: str | None = Field(None, description="gradient (RigL) or random (SET)")
    delta_t: int | None = Field(None, description="steps between mask updates")
    alpha: float | None = Field(None, description="initial drop fraction (cosine-decayed)")
    end_fraction: float | None = Field(None, description="fraction of training after which masks are fixed")
    t_end: int | None = Field(None, description="step after which masks are fixed (overrides end_fraction)")
    decay: str | None = Field(None, description="drop-fraction decay: cosine or constant")
    regrow_dropped: bool | None = Field(None, description="may a weight dropped this update regrow at once")
    drop_count: str | None = Field(None, description="floor or round")


@register_method_kind
class DST(DynamicKind):
    """Dynamic sparse training from init: drop the smallest weights and regrow by gradient (RigL) or at random (SET).

    ERK allocation unless ``scheme`` says otherwise; options of schedules.DynamicSparseTraining.
    """

    name = "dst"
    Config = DSTConfig
    Options = DSTOptions

    def schedule(self, method: MethodConfig, sparsity: float, start=None, seed: int = 0):
        from prunezoo.schedules import DynamicSparseTraining

        scheme = "erk" if method.scheme == "global" else method.scheme
        return DynamicSparseTraining(
            sparsity, scheme=scheme, masks=start, seed=seed, **{**prune_options(method), **method.options}
        )
