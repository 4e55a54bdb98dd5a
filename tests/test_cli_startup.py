"""The CLI starts without torch or matplotlib (issue 12): ``import prunezoo.cli``, ``prunezoo --help`` and
``prunezoo list`` are checked with ``-X importtime`` in a fresh interpreter (never by timing), and the CLI
package imports one way (root -> sub-modules -> common)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import prunezoo

HEAVY = ("torch", "matplotlib")
CLI_DIR = Path(prunezoo.__file__).parent / "cli"


def _imported_modules(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules a fresh interpreter imports running ``python -X importtime *args`` (read from stderr)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return names - {"package"}, proc  # "package" is importtime's header line


def _heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "import prunezoo.cli"],
        ["-c", "import prunezoo"],
        ["-m", "prunezoo", "--help"],
        ["-m", "prunezoo", "list"],
        ["-m", "prunezoo", "list", "criteria"],
        ["-m", "prunezoo", "list", "kinds"],
        ["-m", "prunezoo", "zoo", "--help"],
        ["-m", "prunezoo", "run", "--help"],
    ],
)
def test_cli_start_up_imports_no_torch_or_matplotlib(args):
    names, proc = _imported_modules(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "prunezoo" in names, sorted(names)[:50]  # the reader parsed the report
    assert not _heavy(names), f"{' '.join(args)} imports {_heavy(names)[:10]}"
    if args[-1] == "list":
        for word in ("mnist5k", "lenet-300-100", "magnitude", "erk", "pairflip"):
            assert word in proc.stdout


def test_importtime_reader_sees_torch():
    """The check above can fail: the same reader finds torch where it is imported."""
    names, proc = _imported_modules("-c", "import prunezoo.cli, prunezoo.criteria")
    assert proc.returncode == 0 and "torch" in _heavy(names)


def test_light_name_tables_match_the_registries():
    """``prunezoo list`` reads prunezoo.names (no torch); each table holds exactly the names the package
    registers (read in a fresh interpreter: tests may register their own components in this one)."""
    from prunezoo import names

    code = (
        "import json; from prunezoo.allocation import SCHEME_NAMES; from prunezoo.criteria import CRITERIA; "
        "from prunezoo.data import DATASETS, NOISE_KINDS; from prunezoo.models import MODELS; "
        "print(json.dumps([sorted(r) for r in (DATASETS, MODELS, CRITERIA, SCHEME_NAMES, NOISE_KINDS)]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    registries = json.loads(proc.stdout)
    tables = (names.DATASETS, names.MODELS, names.CRITERIA, names.SCHEMES, names.NOISE_KINDS)
    for table, registry in zip(tables, registries, strict=True):
        assert sorted(table) == registry, "prunezoo.names must find every registered name (a literal first argument)"


def _imports(tree: ast.Module, top_level_only: bool) -> list[str]:
    """Imported module names; ``from prunezoo(.cli) import x`` counts as importing ``prunezoo(.cli).x``."""
    found = []
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages = node.module in ("prunezoo", "prunezoo.cli")
            found += [f"{node.module}.{a.name}" for a in node.names] if packages else [node.module]
    return found


def test_cli_package_imports_one_way():
    """Sub-modules import cli.common only (never the root or a sibling); common imports no other CLI module;
    at load time they import only light prunezoo modules."""
    subs = sorted(p.stem for p in CLI_DIR.glob("*.py") if p.stem not in ("__init__", "common"))
    assert {"study", "runs", "zoo", "bench", "quality", "tools"} <= set(subs)
    light = {"prunezoo.cli.common", "prunezoo.errors", "prunezoo.names"}
    for stem in [*subs, "common"]:
        tree = ast.parse((CLI_DIR / f"{stem}.py").read_text())
        cli_imports = {m for m in _imports(tree, False) if m == "prunezoo.cli" or m.startswith("prunezoo.cli.")}
        allowed = set() if stem == "common" else {"prunezoo.cli.common"}
        assert cli_imports <= allowed, f"cli/{stem}.py imports {sorted(cli_imports - allowed)}"
        heavy = [m for m in _imports(tree, True) if m.startswith("prunezoo") and m not in light]
        assert not heavy, f"cli/{stem}.py imports {heavy} at load time"
    root = ast.parse((CLI_DIR / "__init__.py").read_text())
    assert {f"prunezoo.cli.{s}" for s in subs} <= set(_imports(root, True))  # the root registers them all


def test_console_script_is_the_cli_app():
    from importlib.metadata import entry_points

    from prunezoo.cli import app

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "prunezoo"]
    assert script.value == "prunezoo.cli:app" and script.load() is app
