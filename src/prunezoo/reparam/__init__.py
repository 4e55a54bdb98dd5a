"""Reparameterised sparse training: train a transformed layer, then squash to a plain model + MaskSet.

- STR (Kusupati et al. 2020): ``apply_str`` → train → ``squash_str``;
- edge-popup (Ramanujan et al. 2020): ``apply_edge_popup`` → train scores → ``squash_edge_popup``;
- sparse variational dropout (Molchanov et al. 2017): ``to_variational`` → train with
  ``VariationalDropoutLoss`` → ``from_variational``.

STR and edge-popup convert layers in place and keep parameter names (``fc1.weight``); all three
accept ``include``/``exclude`` globs like the rest of the library, and STR/edge-popup an ``allowed``
MaskSet (sparse-to-sparse from an ER mask: every mask they produce is a subset of it).
"""

from prunezoo.reparam.edge_popup import (
    EdgePopupLayer,
    apply_edge_popup,
    edge_popup_layers,
    squash_edge_popup,
)
from prunezoo.reparam.edge_popup import current_masks as edge_popup_masks
from prunezoo.reparam.soft_threshold import STRLayer, apply_str, current_sparsity, squash_str, str_layers, thresholds
from prunezoo.reparam.soft_threshold import current_masks as str_masks
from prunezoo.reparam.variational_dropout import (
    Conv2dSVDO,
    LinearSVDO,
    SVDOLayer,
    VariationalDropoutLoss,
    from_variational,
    kl_divergence,
    neg_kl,
    sparsity_ratio,
    to_variational,
    vd_layers,
    vd_masks,
)

__all__ = [
    "Conv2dSVDO",
    "EdgePopupLayer",
    "LinearSVDO",
    "STRLayer",
    "SVDOLayer",
    "VariationalDropoutLoss",
    "apply_edge_popup",
    "apply_str",
    "current_sparsity",
    "edge_popup_layers",
    "edge_popup_masks",
    "from_variational",
    "kl_divergence",
    "neg_kl",
    "sparsity_ratio",
    "squash_edge_popup",
    "squash_str",
    "str_layers",
    "str_masks",
    "thresholds",
    "to_variational",
    "vd_layers",
    "vd_masks",
]
