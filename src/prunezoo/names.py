"""The names of the built-in components, read from the package source without importing torch.

``prunezoo list`` and the CLI's start-up read these; the registries themselves (``prunezoo.data.DATASETS``,
``prunezoo.models.MODELS``, ``prunezoo.criteria.CRITERIA``, ``prunezoo.allocation.SCHEME_NAMES``,
``prunezoo.data.NOISE_KINDS``) live in modules that import torch. Each table is found with ``ast`` in the
registering calls (``@register_criterion("snip")``, ``register_alias("resnet20", ...)``...), so a new
built-in module needs no entry here; ``tests/test_cli_startup.py`` checks the tables equal the registries.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

_ROOT = Path(__file__).parent


def _trees(package: str) -> list[ast.Module]:
    return [ast.parse(p.read_text(encoding="utf-8")) for p in sorted((_ROOT / package).glob("*.py"))]


def _registered(package: str, *functions: str) -> tuple[str, ...]:
    """First string argument of every call to one of ``functions`` in the package's modules."""
    found: list[str] = []
    for tree in _trees(package):
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            first = node.args[0]
            if callee in functions and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(first.value)
    return tuple(dict.fromkeys(found))


def _constant(package: str, name: str) -> tuple[str, ...]:
    """A module-level tuple of strings assigned to ``name`` in the package's modules."""
    for tree in _trees(package):
        for node in tree.body:
            target: ast.expr
            value: ast.expr | None
            if isinstance(node, ast.AnnAssign):
                target, value = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id == name and value is not None:
                return tuple(ast.literal_eval(value))
    raise LookupError(f"no {name} in prunezoo.{package}")


_TABLES = {
    "DATASETS": lambda: _registered("data", "register_dataset"),
    "MODELS": lambda: _registered("models", "register_model", "register_alias"),
    "CRITERIA": lambda: _registered("criteria", "register_criterion"),
    "SCHEMES": lambda: _constant("allocation", "SCHEME_NAMES"),
    "NOISE_KINDS": lambda: _constant("data", "NOISE_KINDS"),
    "AUGMENTATIONS": lambda: _constant("data", "AUGMENTATIONS"),  # dataset.options.augment
}


@functools.cache
def _table(name: str) -> tuple[str, ...]:
    return _TABLES[name]()


def __getattr__(name: str) -> tuple[str, ...]:  # PEP 562: tables are read on first use
    if name in _TABLES:
        return _table(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
