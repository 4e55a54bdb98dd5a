"""The one registry of method kinds: ``register_method_kind`` (a decorator too), ``get_method_kind``, ``job_kind``.

The table and the registering functions live in :mod:`prunezoo.methods.base` (the config classes consult
them while validating); this module adds the job-kind lookup, which also knows the dense control.
"""

from __future__ import annotations

from prunezoo.methods.base import METHOD_KINDS, MethodKind, get_method_kind, register_method_kind
from prunezoo.methods.dense import DENSE

__all__ = ["METHOD_KINDS", "get_method_kind", "job_kind", "register_method_kind"]


def job_kind(job_kind: str) -> MethodKind:
    """The kind that runs jobs (and result rows) of ``job_kind`` ("branch": imp; "dense": the dense run);
    a generic :class:`MethodKind` for one no registered kind runs (rows of an old study)."""
    if job_kind == DENSE.name:
        return DENSE
    for mk in METHOD_KINDS.values():
        if job_kind in mk.runners():
            return mk
    return MethodKind()
