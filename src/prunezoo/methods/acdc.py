"""``acdc``: alternating compressed / decompressed training (Peste et al. 2021)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig
from prunezoo.methods.common import prune_options
from prunezoo.methods.dynamic import DynamicKind
from prunezoo.methods.registry import register_method_kind


class ACDCConfig(MethodConfig):
    kind: Literal["acdc"]


class ACDCOptions(BaseModel):
    """schedules.ACDC's keyword options (defaults there)."""

    model_config = STRICT
    warmup_epochs: float | None = Field(None, description="dense warm-up")
    compressed_epochs: float | None = Field(None, description="length of a sparse phase")
    decompressed_epochs: float | None = Field(None, description="length of a dense phase")
    final_sparse_epochs: float | None = Field(None, description="sparse fine-tuning at the end")
    scale_with_epochs: bool | None = Field(None, description="scale the phases from base_epochs to the run")
    base_epochs: float | None = Field(None, description="run length the phase lengths are given for")
    ramp: bool | None = Field(None, description="ramp the sparsity over the first compressed phases")
    ramp_start: float | None = Field(None, description="first ramp sparsity as a fraction of the target")
    min_decompressed_sparsity: float | None = Field(None, description="sparsity kept in dense phases")
    reset_momentum: bool | None = Field(None, description="zero the optimizer momentum at phase changes")


@register_method_kind
class ACDC(DynamicKind):
    """AC/DC: train from init alternating dense and sparse phases, ending sparse (Peste et al. 2021)."""

    name = "acdc"
    Config = ACDCConfig
    Options = ACDCOptions

    def schedule(self, method: MethodConfig, sparsity: float, start=None, seed: int = 0):
        from prunezoo.schedules import ACDC as ACDCSchedule

        return ACDCSchedule(
            sparsity,
            criterion=method.criterion,
            scheme=method.scheme,
            seed=seed,
            **{**prune_options(method), **method.options},
        )
