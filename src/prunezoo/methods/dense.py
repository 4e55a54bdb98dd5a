"""The dense control: every study trains it once per seed and sweep point; methods with ``from_dense`` start from it.

It is a job kind of its own, not a method kind a config can name (it is not in ``METHOD_KINDS``).
"""

from __future__ import annotations

from prunezoo.methods.base import MethodKind
from prunezoo.methods.common import one_result


class Dense(MethodKind):
    """Train the dense model from init (the control every method is compared to)."""

    name = "dense"
    has_target = False

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.sparsity import MaskSet, prunable_parameters
        from prunezoo.training.checkpoint import save_state

        model = ctx.build_model()
        if not (ctx.directory / "init.safetensors").exists():
            save_state(ctx.directory / "init.safetensors", model.state_dict())
        history = ctx.fit(ctx.trainer(model))
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        masks = MaskSet.dense(prunable_parameters(model))
        return one_result(ctx.row(masks, history[-1], kind="dense", level=None, target_sparsity=0.0), history, masks)


DENSE = Dense()
