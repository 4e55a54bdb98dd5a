"""Method kinds: one class per kind (its config, options, planning, preflight and runner), one registry.

Adding a kind = one module defining a :class:`MethodKind` subclass decorated with
:func:`register_method_kind` (see CONTRIBUTING.md); importing this package registers the built-in kinds.
Layering: above schedules/reparam/structured/training, below experiments (never imports them).
"""

# Built-in kinds register themselves on import (in this order: `prunezoo list kinds` shows them so).
from prunezoo.methods import (  # noqa: F401
    acdc,
    at_init,
    dst,
    edge_popup,
    gmp,
    imp,
    oneshot,
    soft_threshold,
    sr_ste,
    structured,
    vd,
)
from prunezoo.methods.base import JobContext, MethodConfig, MethodKind, NoOptions, Planner, StartConfig
from prunezoo.methods.registry import METHOD_KINDS, get_method_kind, job_kind, register_method_kind
from prunezoo.utils.plugins import import_submodules

# a new built-in module registers itself: no import line to add here
import_submodules(__name__, __path__)

__all__ = [
    "JobContext",
    "METHOD_KINDS",
    "MethodConfig",
    "MethodKind",
    "NoOptions",
    "Planner",
    "StartConfig",
    "get_method_kind",
    "job_kind",
    "register_method_kind",
]
