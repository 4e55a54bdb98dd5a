"""Model zoos: populations of small models, their sparsified twins, and population analyses.

Light on import: the submodules (``layout``, ``generate``, ``twins``, ``importer``, ``population``,
``analysis``) are imported on demand, so ``import prunezoo.zoo`` does not pull in training code.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "generate_zoo": "prunezoo.zoo.generate",
    "load_zoo_config": "prunezoo.zoo.generate",
    "parse_zoo_config": "prunezoo.zoo.generate",
    "ZooConfig": "prunezoo.zoo.generate",
    "make_twins": "prunezoo.zoo.twins",
    "parse_twin_method": "prunezoo.zoo.twins",
    "TwinMethod": "prunezoo.zoo.twins",
    "import_zoo": "prunezoo.zoo.importer",
    "list_models": "prunezoo.zoo.layout",
    "list_twin_sets": "prunezoo.zoo.layout",
    "read_params": "prunezoo.zoo.layout",
    "read_results": "prunezoo.zoo.layout",
    "load_state": "prunezoo.zoo.layout",
    "load_model": "prunezoo.zoo.layout",
    "build_member_model": "prunezoo.zoo.layout",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunezoo.zoo' has no attribute {name!r}")


__all__ = sorted(_LAZY)
