"""Masks, parameter selection, top-k selection and the pruning primitive."""

from prunezoo.sparsity.er import random_er_masks
from prunezoo.sparsity.masks import MaskHandle, MaskSet
from prunezoo.sparsity.pruning import imp_keep_count, prune
from prunezoo.sparsity.selection import prunable_parameters

__all__ = ["MaskHandle", "MaskSet", "imp_keep_count", "prune", "prunable_parameters", "random_er_masks"]
