"""The import graph of ``src/prunezoo``: no cycles, and every import points down the layer table.

The graph is built from the source with :mod:`ast` (nothing is imported): every ``import`` and
``from ... import`` of a ``prunezoo`` module anywhere in a file counts, at module level or inside a
function (a deferred import does not excuse an upward or cyclic edge); relative imports are resolved;
importing a package means its ``__init__``; ``from pkg import name`` means ``pkg.name`` when that is a
module. A file that calls ``importlib.import_module`` also depends on every ``prunezoo`` module named
by a string in it (the lazy ``__getattr__`` of ``prunezoo.zoo``). Imports under ``if TYPE_CHECKING:``
never run, so they may close a cycle inside one package (a callback annotated with the ``Trainer``
that calls it), but they must still point down the layers.

Private stays private: no module imports another module's ``_name`` (or reads it as ``module._name``),
and a private module (``criteria/_common.py``) is imported only inside its own package; what other
modules need is public (``analysis.report.html_table``, ``schedules.dst.zero_optimizer_state``...).

Layers, lowest first (a package may import its own layer and the layers below it; packages of one
layer must not import each other both ways):

====  =========================================  ===================================================
 L0   ``prunezoo`` (root), errors, names, utils   no prunezoo imports but each other
 L1   sparsity, data, models, metrics             masks, top-k, selection, N:M; datasets; architectures
 L2   training, tracking                          Trainer, callbacks, checkpoints: knows no method;
                                                  tracker sinks (TensorBoard, MLflow, W&B) fed by a callback
 L3   criteria, allocation                        scores and per-layer densities
 L4   pruning                                     ``prune()``, rounds, ER masks, OBS pruning
 L5   schedules, reparam, structured, theory,     schedules (IMP, GMP, DST, AC/DC), reparameterisations,
      deploy                                      structured pruning, sparse export
 L6   methods                                     one class per study method kind
 L7   experiments                                 studies: config, plan, jobs, store
 L8   analysis                                    reports and plots of studies
 L9   zoo                                         model zoos, twins, population analyses
 L10  bench                                       benchmark suites over studies and zoos
 L11  cli, ``__main__``                           the command line, on top of everything
====  =========================================  ===================================================
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "prunezoo"

LAYERS: list[set[str]] = [
    {ROOT, "errors", "names", "utils"},
    {"sparsity", "data", "models", "metrics"},
    {"training", "tracking"},
    {"criteria", "allocation"},
    {"pruning"},
    {"schedules", "reparam", "structured", "theory", "deploy"},
    {"methods"},
    {"experiments"},
    {"analysis"},
    {"zoo"},
    {"bench"},
    {"cli", "__main__"},
]


class Edge(NamedTuple):
    source: str  # importing module
    target: str  # imported module
    file: str
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def import_graph(src: Path, root: str = ROOT) -> tuple[set[str], list[Edge]]:
    """All modules of package ``root`` under ``src`` and the import edges between them."""
    files = {module_name(p, src): p for p in sorted((src / root).rglob("*.py"))}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    edges: list[Edge] = []
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        type_only = _type_checking_lines(tree)
        dynamic = any(isinstance(n, ast.Attribute) and n.attr == "import_module" for n in ast.walk(tree))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: ``from . import x`` in a package, ``from ..x import y``
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            elif dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str):
                targets = [node.value] if node.value in files else []
            for target in targets:
                if target.split(".")[0] != root:
                    continue
                resolved = resolve(target)
                if resolved and resolved != mod:
                    edges.append(
                        Edge(mod, resolved, str(path.relative_to(src.parent)), node.lineno, node.lineno in type_only)
                    )
    return set(files), edges


def cycles(nodes: set[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # iterative enough for a package of a few hundred modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(package: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if package in layer), None)


def upward_edges(edges: list[Edge]) -> list[str]:
    bad = []
    for e in edges:
        src, dst = layer_of(top_package(e.source)), layer_of(top_package(e.target))
        if src is not None and dst is not None and dst > src:
            bad.append(f"{e.file}:{e.line}: {e.source} (L{src}) imports {e.target} (L{dst})")
    return bad


def _describe(comp: list[str], edges: list[Edge], key=lambda m: m) -> str:
    inside = set(comp)
    lines = [
        f"  {e.file}:{e.line}: {e.source} -> {e.target}"
        for e in edges
        if key(e.source) in inside and key(e.target) in inside and key(e.source) != key(e.target)
    ]
    return " <-> ".join(comp) + "\n" + "\n".join(sorted(set(lines)))


@pytest.fixture(scope="module")
def graph() -> tuple[set[str], list[Edge]]:
    return import_graph(SRC)


def test_every_package_has_a_layer(graph):
    modules, _ = graph
    missing = sorted({top_package(m) for m in modules if layer_of(top_package(m)) is None})
    assert not missing, f"place these packages in LAYERS of tests/test_architecture.py: {missing}"


def test_no_import_points_up_the_layers(graph):
    _, edges = graph
    bad = upward_edges(edges)
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_no_module_import_cycle(graph):
    modules, edges = graph
    runtime = [e for e in edges if not e.type_only]
    found = cycles(modules, [(e.source, e.target) for e in runtime])
    assert not found, "import cycles between modules:\n" + "\n".join(_describe(c, runtime) for c in found)


def test_no_package_import_cycle(graph):
    modules, edges = graph
    packages = {top_package(m) for m in modules}
    between = [
        (top_package(e.source), top_package(e.target)) for e in edges if top_package(e.source) != top_package(e.target)
    ]
    found = cycles(packages, between)
    assert not found, "packages importing each other:\n" + "\n".join(_describe(c, edges, top_package) for c in found)


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def private_uses(src: Path, root: str = ROOT) -> list[str]:
    """``file:line: what`` for every use of another module's private name or of a private module
    from outside its package."""
    files = {module_name(p, src): p for p in sorted((src / root).rglob("*.py"))}
    bad = []
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = f"{path.relative_to(src.parent)}"
        modules_bound: set[str] = set()  # local names bound to prunezoo modules

        def check_module(target: str, line: int, mod: str = mod, where: str = where) -> None:
            parts = target.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])  # the package the private module belongs to
                if _private(part) and not (mod == owner or mod.startswith(owner + ".")):
                    bad.append(f"{where}:{line}: private module {target} used outside {owner}")
                    return

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == root:
                        check_module(a.name, node.lineno)
                        if a.asname:
                            modules_bound.add(a.asname)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == root and not node.level:
                check_module(node.module, node.lineno)
                for a in node.names:
                    if f"{node.module}.{a.name}" in files:
                        check_module(f"{node.module}.{a.name}", node.lineno)
                        modules_bound.add(a.asname or a.name)
                    elif _private(a.name):
                        bad.append(f"{where}:{node.lineno}: {mod} imports private {node.module}.{a.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules_bound
            ):
                bad.append(f"{where}:{node.lineno}: {mod} reads private {node.value.id}.{node.attr}")
    return bad


def test_no_private_name_is_used_outside_its_module():
    bad = private_uses(SRC)
    assert not bad, "private names used across modules (make them public):\n" + "\n".join(bad)


def test_the_checker_finds_cycles_and_upward_imports(tmp_path):
    """The analysis itself, on a small fake package: a deferred (function-level) cycle, a relative
    import, an upward import and a type-only import are all seen for what they are."""
    pkg = tmp_path / ROOT
    for sub in ("sparsity", "criteria", "cli"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "sparsity" / "masks.py").write_text(
        "def f():\n    from prunezoo.criteria import base  # deferred, still an edge\n"
    )
    (pkg / "criteria" / "base.py").write_text("from ..sparsity.masks import f\n")
    (pkg / "criteria" / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from prunezoo.cli import app\n"
    )
    (pkg / "cli" / "app.py").write_text("from prunezoo.criteria import typed\n")
    modules, edges = import_graph(tmp_path)
    assert {"prunezoo.sparsity.masks", "prunezoo.criteria.base"} <= modules
    runtime = [(e.source, e.target) for e in edges if not e.type_only]
    assert cycles(modules, runtime) == [["prunezoo.criteria.base", "prunezoo.sparsity.masks"]]
    assert not cycles(modules, [(a, b) for a, b in runtime if a != "prunezoo.sparsity.masks"])
    bad = upward_edges(edges)
    assert any(
        "prunezoo/sparsity/masks.py:2: prunezoo.sparsity.masks (L1) imports prunezoo.criteria.base (L3)" in b
        for b in bad
    )
    assert any("prunezoo.criteria.typed (L3) imports prunezoo.cli.app (L11)" in b for b in bad)  # type-only counts
    assert not any("prunezoo.criteria.base" in b.split(" imports ")[0] for b in bad)  # downward: fine


def test_the_checker_finds_private_names_used_across_modules(tmp_path):
    pkg = tmp_path / ROOT
    (pkg / "criteria").mkdir(parents=True)
    (pkg / "schedules").mkdir()
    for init in (pkg, pkg / "criteria", pkg / "schedules"):
        (init / "__init__.py").write_text("")
    (pkg / "criteria" / "_common.py").write_text("def helper():\n    pass\n")
    (pkg / "criteria" / "snip.py").write_text("from prunezoo.criteria._common import helper\n")  # inside: fine
    (pkg / "schedules" / "dst.py").write_text("def _zero():\n    pass\n")
    (pkg / "schedules" / "acdc.py").write_text(
        "from prunezoo.schedules.dst import _zero\nfrom prunezoo.schedules import dst\nx = dst._zero\n"
    )
    (pkg / "schedules" / "gmp.py").write_text("from prunezoo.criteria._common import helper\n")
    bad = private_uses(tmp_path)
    assert sorted(b.split(": ", 1)[0].split("/", 1)[1] for b in bad) == [
        "prunezoo/schedules/acdc.py:1",
        "prunezoo/schedules/acdc.py:3",
        "prunezoo/schedules/gmp.py:1",
    ]
