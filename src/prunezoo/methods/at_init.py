"""``at-init``: prune at initialisation (SNIP, GraSP, SynFlow...; ``rounds`` > 1 iteratively), then train."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from prunezoo.methods.base import MethodConfig, MethodKind, ScoreModeOptions
from prunezoo.methods.common import masks_once, one_result, prune_options, scoring_criterion
from prunezoo.methods.registry import register_method_kind


class AtInitConfig(MethodConfig):
    kind: Literal["at-init"]
    rounds: int = Field(1, ge=1, description="iterative pruning rounds (SynFlow uses 100)")


class AtInitOptions(ScoreModeOptions):
    schedule: str | None = Field(None, description="density schedule over rounds (pruning.rounds.SCHEDULES)")


@register_method_kind
class AtInit(MethodKind):
    """Prune at initialisation (SNIP, GraSP, SynFlow...; ``rounds`` > 1 = iterative), then train the sparse model."""

    name = "at-init"
    Config = AtInitConfig
    Options = AtInitOptions
    takes_pattern = True

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.pruning import prune_iteratively
        from prunezoo.training.callbacks import EnforceMasks
        from prunezoo.training.checkpoint import save_state

        sparsity = ctx.spec["sparsity"]
        method = ctx.method(job["method"], {"sparsities": [sparsity]})
        model = ctx.build_model()
        start = ctx.start_masks(model, method)
        masks = masks_once(
            ctx.directory / "masks.safetensors",
            lambda: prune_iteratively(
                model,
                1.0 - sparsity,
                criterion=scoring_criterion(method),
                rounds=method.rounds,
                scheme=method.scheme,
                seed=ctx.seed,
                masks=start,
                batches=ctx.score_batches(method.batches),
                **{k: v for k, v in method.options.items() if k != "score_mode"},
                **prune_options(method),
            ),
        )
        masks.apply(model)
        history = ctx.fit(ctx.trainer(model, [EnforceMasks(masks)]))
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        return one_result(
            ctx.row(masks, history[-1], kind=self.name, level=None, target_sparsity=sparsity), history, masks
        )
