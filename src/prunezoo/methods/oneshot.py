"""``oneshot``: prune the trained dense model once (any criterion; OBS also corrects the survivors), fine-tune."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig, MethodKind, ScoreModeOptions
from prunezoo.methods.common import load_masks, masks_once, one_result, prune_options, scoring_criterion
from prunezoo.methods.registry import register_method_kind


class OneShotConfig(MethodConfig):
    kind: Literal["oneshot"]


class ObsOptions(BaseModel):
    """Options of a oneshot ``obs`` method: obs_prune's Fisher options, ``update`` and ``score_mode``."""

    model_config = STRICT
    update: bool = Field(True, description="false: mask by OBS saliency without correcting the survivors")
    block_size: int | None = Field(None, description="Fisher block size (obs_prune default 64)")
    damp: float | None = Field(None, description="Fisher dampening (obs_prune default 1e-4)")
    num_samples: int | None = Field(None, description="gradient samples for the empirical Fisher")
    per_sample: bool | None = Field(None, description="per-sample gradients (default: auto)")
    score_mode: str | None = Field(None, description="train/eval mode while scoring")


@register_method_kind
class OneShot(MethodKind):
    """Prune the trained dense model once with ``criterion`` and ``scheme``, then fine-tune it.

    Criterion ``obs`` prunes and corrects the surviving weights (Optimal Brain Surgeon, options
    ObsOptions); every other criterion only masks.
    """

    name = "oneshot"
    Config = OneShotConfig
    Options = ScoreModeOptions
    from_dense = True
    takes_pattern = True

    def options_model(self, method: MethodConfig) -> type[BaseModel]:
        return ObsOptions if method.criterion == "obs" else self.Options

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.training.callbacks import EnforceMasks
        from prunezoo.training.checkpoint import load_state, save_state

        sparsity = ctx.spec["sparsity"]
        method = ctx.method(job["method"], {"sparsities": [sparsity]})
        model = ctx.build_model()
        start = ctx.start_masks(model, method)
        model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
        if method.criterion == "obs" and method.options.get("update", True):
            masks = _obs_pruned_once(ctx, model, method, 1.0 - sparsity, start)
        else:
            from prunezoo.pruning import prune

            masks = masks_once(
                ctx.directory / "masks.safetensors",
                lambda: prune(
                    model,
                    1.0 - sparsity,
                    criterion=scoring_criterion(method),
                    scheme=method.scheme,
                    seed=ctx.seed,
                    masks=start,
                    batches=ctx.score_batches(method.batches),
                    **prune_options(method),
                ),
            )
        masks.apply(model)
        history = ctx.fit(ctx.trainer(model, [EnforceMasks(masks)], finetune=True))
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        return one_result(
            ctx.row(masks, history[-1], kind=self.name, level=None, target_sparsity=sparsity), history, masks
        )


def _obs_pruned_once(ctx, model, method: MethodConfig, density: float, start):
    """OBS prunes *and* corrects the surviving weights (joint update per Fisher block); the corrected
    weights are saved before the masks, so a resumed job reloads both instead of re-deriving them."""
    from prunezoo.pruning import obs_prune
    from prunezoo.training.checkpoint import load_state, save_state

    weights, mask_path = ctx.directory / "obs-pruned.safetensors", ctx.directory / "masks.safetensors"
    if mask_path.exists() and weights.exists():
        model.load_state_dict(load_state(weights))
        return load_masks(mask_path)
    opts = {k: v for k, v in method.options.items() if k != "update"}  # block_size, damp... (checked in config)
    if "score_mode" in opts:
        opts["mode"] = opts.pop("score_mode")
    masks = obs_prune(
        model,
        density,
        ctx.score_batches(method.batches),
        scheme=method.scheme,
        masks=start,
        seed=ctx.seed,
        **opts,
        **prune_options(method),
    )
    save_state(weights, model.state_dict())
    masks.save(mask_path)
    return masks
