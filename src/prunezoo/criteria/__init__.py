"""Pruning criteria. Adding one = one small function decorated with ``@register_criterion``."""

from prunezoo.criteria import magnitude, random  # noqa: F401  (registers the built-ins)
from prunezoo.criteria.base import CRITERIA, Criterion, ScoringContext, get_criterion, register_criterion

__all__ = ["CRITERIA", "Criterion", "ScoringContext", "get_criterion", "register_criterion"]
