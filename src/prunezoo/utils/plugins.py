"""Import every public submodule of a package, so a new built-in registers itself by existing; and
the plug-ins from outside the package: import paths ``module:attr``, entry points, and the entries
user code registered at run time (shipped to worker processes).

A registry package (criteria, methods, models, data) calls :func:`import_submodules` from its
``__init__``: adding a built-in is then one new module (plus its test), with no import line to add.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prunezoo.errors import ConfigError


def import_submodules(package: str, path: Iterable[str]) -> list[str]:
    """Import ``package.<name>`` for every module in ``path`` not starting with ``_`` (sorted)."""
    names = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


# -- plug-ins outside the package: import paths, entry points, run-time registrations ---------------
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_import_path(name: str) -> bool:
    """``module.sub:attr`` (``attr`` may be dotted: ``module:Class.factory``)?"""
    return _IMPORT_PATH.fullmatch(name) is not None


def load_import_path(path: str, field: str) -> Any:
    """The callable at ``module:attr``, importing the module; :class:`ConfigError` naming ``field`` when
    the module does not import (with its error), the attribute is missing or it is not callable."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # the user's module: any error at import is theirs, shown as is
        cause = f"{type(err).__name__}: {err}"
        raise ConfigError(field, f"cannot import {module_name!r} (from {path!r}): {cause}") from None
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = ".".join([module_name, *attr.split(".")[:i]])
            raise ConfigError(field, f"{path!r}: {where!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(field, f"{path!r} is a {type(obj).__name__}, not callable")
    return obj


def entry_point_names(group: str) -> list[str]:
    """Names of the installed entry points of ``group`` (nothing is imported)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})


def entry_point(group: str, name: str, field: str) -> Any | None:
    """The object of entry point ``name`` in ``group`` (loaded now), None when none is installed;
    :class:`ConfigError` naming ``field`` when it does not load. Read on each call: a miss is rare
    (built-in names are looked up first) and a fresh read sees packages installed since."""
    for ep in importlib.metadata.entry_points(group=group, name=name):
        try:
            return ep.load()
        except Exception as err:  # a broken plug-in package: say which and why
            cause = f"{type(err).__name__}: {err}"
            raise ConfigError(field, f"entry point {name!r} ({ep.value}) does not load: {cause}") from None
    return None


@dataclass(frozen=True)
class _Tracked:
    user_entries: Callable[[], dict[str, Any]]
    restore: Callable[[str, Any], object]


_REGISTRIES: dict[str, _Tracked] = {}


def track_registry(
    kind: str, user_entries: Callable[[], dict[str, Any]], restore: Callable[[str, Any], object]
) -> None:
    """Let :func:`user_registrations` collect the entries of a registry that user code added at run
    time (a worker process would not get them by importing prunezoo); ``restore(name, value)`` puts
    one back in a worker (leaving a name that is already there as it is)."""
    _REGISTRIES[kind] = _Tracked(user_entries, restore)


def user_registrations() -> dict[str, dict[str, Any]]:
    """``{registry: {name: entry}}`` of every entry registered by user code in this process."""
    return {kind: entries for kind, tracked in _REGISTRIES.items() if (entries := tracked.user_entries())}


def restore_registrations(registrations: dict[str, dict[str, Any]]) -> None:
    """Register in this process what :func:`user_registrations` gave in another one."""
    for kind, entries in registrations.items():
        for name, value in entries.items():
            _REGISTRIES[kind].restore(name, value)
