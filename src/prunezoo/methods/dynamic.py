"""What dynamic kinds (masks that change during training from init: ``dst``, ``acdc``) share."""

from __future__ import annotations

from prunezoo.methods.base import MethodConfig, MethodKind
from prunezoo.methods.common import one_result, options_error


class DynamicKind(MethodKind):
    """A kind whose training-time callback (:meth:`schedule`) owns the masks; subclasses build the callback."""

    def schedule(self, method: MethodConfig, sparsity: float, start=None, seed: int = 0):
        """The training-time callback (a schedules.PruningSchedule) for ``method`` at ``sparsity``."""
        raise NotImplementedError

    def callback(self, method: MethodConfig, sparsity: float, start=None, seed: int = 0):
        try:
            return self.schedule(method, sparsity, start, seed)
        except (TypeError, ValueError) as err:
            raise options_error(method, err) from None

    def preflight(self, method: MethodConfig, model) -> None:
        from prunezoo.allocation import allocate

        super().preflight(method, model)
        for density in self.densities(method):  # the callback's own options reach the allocator at prune time
            cb = self.callback(method, 1 - density)
            allocate(model, density, cb.scheme, **cb.prune_options)

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.training.checkpoint import save_state

        sparsity = ctx.spec["sparsity"]
        method = ctx.method(job["method"], {"sparsities": [sparsity]})
        model = ctx.build_model()
        sched = self.callback(method, sparsity, ctx.start_masks(model, method), ctx.seed)
        history = ctx.fit(ctx.trainer(model, [sched]))
        masks = sched.masks
        masks.save(ctx.directory / "masks.safetensors")
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        row = ctx.row(masks, history[-1], kind=self.name, level=None, target_sparsity=sparsity)
        return one_result(row, history, masks, events={"": sched.events})  # mask updates: IoU, zero fraction...
