"""``vd``: sparse variational dropout on the trained dense model (Molchanov et al. 2017)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig, MethodKind
from prunezoo.methods.common import one_result, options_error, selection
from prunezoo.methods.registry import register_method_kind


class VDConfig(MethodConfig):
    kind: Literal["vd"]


class VDOptions(BaseModel):
    """reparam.to_variational's layer options and VariationalDropoutLoss's (defaults there)."""

    model_config = STRICT
    log_sigma2_init: float | None = Field(None, description="initial log σ² (default -10)")
    threshold: float | None = Field(None, description="log α at or above which a weight is pruned (default 3)")
    schedule: str | None = Field(None, description="KL weight: elbo (1/N) or ramp")
    ramp_to: float | None = Field(None, description="ramp: KL weight reached after ramp_length")
    ramp_length: int | None = Field(None, description="ramp: epochs (or steps) to reach ramp_to")
    ramp_unit: str | None = Field(None, description="ramp: epoch or step")
    ramp_cap: float | None = Field(None, description="ramp: largest KL weight")


@register_method_kind
class VD(MethodKind):
    """Sparse variational dropout on the trained dense model, trained with the fine-tuning config; weights with
    log α ≥ threshold are pruned, so the sparsity emerges (one job per method, no target sparsity)."""

    name = "vd"
    Config = VDConfig
    Options = VDOptions
    from_dense = True
    has_target = False
    takes_start = False

    def validate(self, method: MethodConfig) -> None:
        from prunezoo.reparam.variational_dropout import check_vd_options

        check_vd_options(method.options)

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.reparam.variational_dropout import finetune_variational
        from prunezoo.training.checkpoint import load_state, save_state

        method = ctx.method(job["method"])
        model = ctx.build_model()
        model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
        plain, masks, history = finetune_variational(
            model,
            len(ctx.splits.train),
            lambda vd, callbacks: ctx.fit(ctx.trainer(vd, callbacks, finetune=True)),
            inplace=True,
            on_bad_options=lambda err: options_error(method, err),
            **selection(method),
            **method.options,
        )
        save_state(ctx.directory / "final.safetensors", plain.state_dict())
        masks.save(ctx.directory / "masks.safetensors")
        row = ctx.row(masks, history[-1], kind=self.name, level=None, target_sparsity=round(masks.sparsity(), 6))
        return one_result(row, history, masks)
