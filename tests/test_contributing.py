"""Every Python block of CONTRIBUTING.md runs.

A block starts with a comment naming its file. ``# src/prunezoo/<pkg>/<mod>.py`` blocks are loaded as the
module ``prunezoo.<pkg>.<mod>`` (from a temporary file: nothing is written into the package) and
``# tests/test_<x>.py`` blocks are then loaded and their ``test_*`` functions called, so each how-to's
module and its test run together. The registries are restored afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[tuple[str, str]]:
    """(path named on the first line, source) of every Python block, in order."""
    blocks = []
    for source in BLOCK.findall((ROOT / "CONTRIBUTING.md").read_text()):
        first = source.splitlines()[0]
        assert re.fullmatch(r"# (src/prunezoo|tests)/[\w/]+\.py", first), f"block without a file line: {first!r}"
        blocks.append((first[2:], source))
    return blocks


def how_tos() -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Pairs (module block, its test block): a module block is followed by the test block that covers it."""
    pairs, pending = [], None
    for path, source in python_blocks():
        if path.startswith("src/"):
            assert pending is None, f"{pending[0]} has no test block"
            pending = (path, source)
        else:
            assert pending is not None, f"test block {path} follows no module block"
            pairs.append((pending, (path, source)))
            pending = None
    assert pending is None, f"{pending[0]} has no test block"
    return pairs


def test_the_how_tos_cover_a_criterion_a_method_kind_and_a_dataset():
    modules = [module for (module, _), _ in how_tos()]
    assert [m.split("/")[2] for m in modules] == ["criteria", "methods", "data"]
    for module in modules:
        assert not (ROOT / module).exists(), f"{module} exists: the sample must be a new module"


@pytest.fixture
def restored_registries():
    from prunezoo.criteria import CRITERIA
    from prunezoo.data import DATASETS
    from prunezoo.methods import METHOD_KINDS
    from prunezoo.models import MODELS

    registries = [CRITERIA, DATASETS, METHOD_KINDS, MODELS]
    saved = [dict(r) for r in registries]
    modules = set(sys.modules)
    try:
        yield
    finally:
        for registry, before in zip(registries, saved, strict=True):
            registry.clear()
            registry.update(before)
        for name in set(sys.modules) - modules:
            if name.startswith(("prunezoo.", "contributing_")):
                parent, _, leaf = name.rpartition(".")
                if parent in sys.modules and getattr(sys.modules[parent], leaf, None) is sys.modules[name]:
                    delattr(sys.modules[parent], leaf)
                del sys.modules[name]


def _load(name: str, source: str, tmp_path: Path):
    file = tmp_path / f"{name.replace('.', '_')}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, leaf = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), leaf, module)
    return module


@pytest.mark.parametrize("how_to", how_tos(), ids=lambda pair: pair[0][0].split("/")[2])
def test_a_how_to_runs(how_to, restored_registries, tmp_path):
    (module_path, module_source), (test_path, test_source) = how_to
    name = module_path.removeprefix("src/").removesuffix(".py").replace("/", ".")
    _load(name, module_source, tmp_path)
    tests = _load("contributing_" + Path(test_path).stem, test_source, tmp_path)
    functions = [f for n, f in vars(tests).items() if n.startswith("test_") and inspect.isfunction(f)]
    assert functions, f"{test_path} defines no test"
    for i, fn in enumerate(functions):
        params = inspect.signature(fn).parameters
        assert set(params) <= {"tmp_path"}, f"{fn.__name__}: only tmp_path is provided"
        fn(**({"tmp_path": tmp_path / f"t{i}"} if "tmp_path" in params else {}))
