"""Import every public submodule of a package, so a new built-in registers itself by existing.

A registry package (criteria, methods, models, data) calls :func:`import_submodules` from its
``__init__``: adding a built-in is then one new module (plus its test), with no import line to add.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable


def import_submodules(package: str, path: Iterable[str]) -> list[str]:
    """Import ``package.<name>`` for every module in ``path`` not starting with ``_`` (sorted)."""
    names = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
