"""Masks, parameter selection, top-k selection and N:M patterns: the bottom layer of the package.

Nothing here scores or allocates: ``prune()``, rounds and ER masks are in :mod:`prunezoo.pruning`.
"""

from prunezoo.sparsity.masks import MaskHandle, MaskSet
from prunezoo.sparsity.selection import prunable_parameters

__all__ = ["MaskHandle", "MaskSet", "prunable_parameters"]
