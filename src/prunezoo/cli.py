"""The ``prunezoo`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prunezoo.errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Prune neural networks and study pruned populations.")
console = Console(stderr=True)
out = Console()


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error[/]: {err}")
    raise typer.Exit(code=2)


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="study YAML; omitted = the embedded default study")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: training.epochs=3")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="root directory for run directories")] = Path("runs"),
    force: Annotated[bool, typer.Option(help="re-run even if the study is already complete")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Train dense, prune with every configured method, print accuracy vs sparsity with FLOPs."""
    from prunezoo.experiments.config import load_config
    from prunezoo.experiments.study import run_study

    try:
        cfg = load_config(config, set_ or [])
    except ConfigError as err:
        _fail(err)
    log = (lambda _m: None) if quiet else (lambda m: console.log(m))
    try:
        result = run_study(cfg, out_dir, progress=None if not quiet else False, log=log, force=force)
    except ConfigError as err:
        _fail(err)
    out.print(results_table(result.rows, title=f"{cfg.name}: {cfg.model.name} on {cfg.dataset.name}"))
    out.print(f"results: {result.directory}")


def results_table(rows: list[dict], title: str = "") -> Table:
    table = Table(title=title)
    for col in ["method", "level", "sparsity", "test acc", "nnz", "compression", "FLOPs (sparse)", "FLOP speed-up"]:
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(
            r["method"],
            "" if r["level"] in (None, 0) and r["kind"] != "imp" else str(r["level"]),
            f"{r['sparsity']:.2%}",
            f"{r['test_acc']:.2%}",
            f"{r['nnz']:,}",
            f"{r['compression']:.1f}x",
            f"{r['flops_sparse']:,}",
            f"{r['flop_speedup']:.2f}x",
        )
    return table


@app.command("list")
def list_components(
    what: Annotated[str, typer.Argument(help="datasets | models | criteria | schemes | noise")] = "all",
) -> None:
    """List the registered datasets, models, criteria, allocation schemes and label-noise kinds."""
    from prunezoo.allocation import SCHEME_NAMES
    from prunezoo.criteria import CRITERIA
    from prunezoo.data import DATASETS, NOISE_KINDS
    from prunezoo.models import MODELS

    groups = {"datasets": DATASETS, "models": MODELS, "criteria": CRITERIA, "schemes": SCHEME_NAMES,
              "noise": NOISE_KINDS}
    if what != "all" and what not in groups:
        _fail(ConfigError("what", f"unknown {what!r}; choose from {['all', *groups]}"))
    for name, items in groups.items():
        if what in ("all", name):
            out.print(f"[bold]{name}[/]: {', '.join(sorted(items))}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
