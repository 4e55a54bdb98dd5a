"""The pruning step on top of the primitives: ``prune()`` (score → allocate → top-k), rounds, ER masks.

Layer 3 of the package: it may import :mod:`prunezoo.sparsity` (masks, top-k, selection, N:M),
:mod:`prunezoo.criteria` and :mod:`prunezoo.allocation`, never the layers above (schedules, methods,
experiments, ...); ``tests/test_architecture.py`` checks this.
"""

from prunezoo.pruning.core import imp_keep_count, prune
from prunezoo.pruning.er import random_er_masks
from prunezoo.pruning.obs import obs_prune
from prunezoo.pruning.rounds import SCHEDULES, prune_iteratively, round_densities

__all__ = [
    "SCHEDULES",
    "imp_keep_count",
    "obs_prune",
    "prune",
    "prune_iteratively",
    "random_er_masks",
    "round_densities",
]
