"""``gmp``: gradual magnitude pruning (Zhu & Gupta 2017) while training from init or fine-tuning the dense model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig, MethodKind
from prunezoo.methods.common import one_result, prune_options, selection
from prunezoo.methods.registry import register_method_kind


class GMPConfig(MethodConfig):
    kind: Literal["gmp"]
    gmp_frequency: int = Field(10, ge=1, description="steps between pruning updates")


class GMPOptions(BaseModel):
    model_config = STRICT
    from_dense: bool = Field(
        False,
        description="prune while fine-tuning the trained dense model (with 'finetune') instead of training from init",
    )


@register_method_kind
class GMP(MethodKind):
    """Gradual magnitude pruning: the cubic sparsity ramp of Zhu & Gupta (2017), ending at 75 % of training.

    Trains from init, or (``options.from_dense``) fine-tunes the trained dense model. Criterion
    ``movement`` scores by the training trajectory.
    """

    name = "gmp"
    Config = GMPConfig
    Options = GMPOptions
    takes_pattern = True

    def starts_from_dense(self, method: MethodConfig) -> bool:
        return bool(method.options.get("from_dense"))

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.criteria import TRAINING_CRITERIA, make_tracker
        from prunezoo.schedules import GradualMagnitudePruning
        from prunezoo.training.checkpoint import load_state, save_state

        sparsity = ctx.spec["sparsity"]
        method = ctx.method(job["method"], {"sparsities": [sparsity]})
        model = ctx.build_model()
        start = ctx.start_masks(model, method)
        from_dense = self.starts_from_dense(method)
        if from_dense:
            model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
        criterion, trackers = method.criterion, []
        if criterion in TRAINING_CRITERIA:  # movement: scores accumulated by a callback during this training
            trackers = [make_tracker(criterion, **selection(method))]
            criterion = trackers[0].criterion
        epochs = (ctx.finetune if from_dense else ctx.training).epochs
        sched = GradualMagnitudePruning(
            sparsity,
            frequency=method.gmp_frequency,
            end_epoch=0.75 * epochs,
            criterion=criterion,
            scheme=method.scheme,
            seed=ctx.seed,
            masks=start,
            **prune_options(method),
        )
        history = ctx.fit(ctx.trainer(model, [*trackers, sched], finetune=from_dense))
        masks = sched.masks
        masks.save(ctx.directory / "masks.safetensors")
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        return one_result(
            ctx.row(masks, history[-1], kind=self.name, level=None, target_sparsity=sparsity), history, masks
        )
