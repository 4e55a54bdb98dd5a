"""What reparameterised kinds (``str``, ``edge-popup``, ``sr-ste``) share: train a wrapped model from init,
then squash it to plain weights and masks."""

from __future__ import annotations

from prunezoo.methods.base import MethodConfig, MethodKind
from prunezoo.methods.common import one_result, options_error


class ReparamKind(MethodKind):
    """Subclasses wrap the model (:meth:`wrap`) and read its masks back (:meth:`squash`)."""

    def wrap(self, ctx, model, method: MethodConfig, sparsity: float | None, start) -> None:
        raise NotImplementedError

    def squash(self, model):
        raise NotImplementedError

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.training.checkpoint import save_state

        sparsity = ctx.spec.get("sparsity")
        method = ctx.method(job["method"], {"sparsities": [sparsity]} if sparsity is not None else None)
        model = ctx.build_model()
        start = ctx.start_masks(model, method) if self.takes_start else None
        try:
            self.wrap(ctx, model, method, sparsity, start)
        except (TypeError, ValueError) as err:
            raise options_error(method, err) from None
        history = ctx.fit(ctx.trainer(model))
        masks = self.squash(model)
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        masks.save(ctx.directory / "masks.safetensors")
        target = sparsity if sparsity is not None else round(masks.sparsity(), 6)
        return one_result(
            ctx.row(masks, history[-1], kind=self.name, level=None, target_sparsity=target), history, masks
        )
