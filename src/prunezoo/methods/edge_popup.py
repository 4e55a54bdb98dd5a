"""``edge-popup``: find a subnetwork of the random init by learned scores (Ramanujan et al. 2020)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig
from prunezoo.methods.common import prune_options, selection
from prunezoo.methods.registry import register_method_kind
from prunezoo.methods.reparam_kinds import ReparamKind


class EdgePopupConfig(MethodConfig):
    kind: Literal["edge-popup"]


class EdgePopupOptions(BaseModel):
    model_config = STRICT
    freeze_bias: bool | None = Field(None, description="keep biases at init (default true)")
    weight_init: str | None = Field(None, description="keep or signed_constant")


@register_method_kind
class EdgePopup(ReparamKind):
    """Edge-popup: train scores over the frozen random weights and keep the top-scoring edges per layer
    (uniform densities unless ``scheme`` says otherwise)."""

    name = "edge-popup"
    Config = EdgePopupConfig
    Options = EdgePopupOptions

    def wrap(self, ctx, model, method: MethodConfig, sparsity, start) -> None:
        from prunezoo.allocation import layer_densities
        from prunezoo.reparam import apply_edge_popup

        scheme = "uniform" if method.scheme == "global" else method.scheme
        dens = layer_densities(model, 1 - sparsity, scheme, **prune_options(method))
        apply_edge_popup(model, dens, allowed=start, seed=ctx.seed, **selection(method), **method.options)

    def squash(self, model):
        from prunezoo.reparam import squash_edge_popup

        return squash_edge_popup(model)
