"""The ``prunezoo`` command line: the root app, assembling the commands of the sub-modules.

Imports go one way: this module imports the sub-modules (:mod:`.study`, :mod:`.runs`, :mod:`.zoo`,
:mod:`.quality`, :mod:`.tools`, :mod:`.bench`), which import only :mod:`.common` (and library code inside
their commands). Nothing here imports torch or matplotlib at load time, so ``prunezoo --help`` and
``prunezoo list`` start fast (tests/test_cli_startup.py).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from prunezoo.cli import bench, quality, runs, study, tools, zoo
from prunezoo.cli.common import (
    Commands,
    TableFormat,
    configure_logging,
    console,
    fail,
    out,
    results_table,
    results_text,
    storage_error_message,
)

__all__ = [
    "app",
    "main",
    "console",
    "fail",
    "out",
    "results_table",
    "results_text",
    "storage_error_message",
    "TableFormat",
]

app = typer.Typer(
    add_completion=True, no_args_is_help=True, cls=Commands, help="Prune neural networks and study pruned populations."
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"prunezoo {version('prunezoo')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging (also after any command)")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="warnings and errors only (also after any command)")
    ] = False,
) -> None:
    """Prune neural networks and study pruned populations."""
    configure_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


# Registration order = the order of ``prunezoo --help``.
app.command("run")(study.run)
app.command("report")(study.report)
app.command("diagnose")(study.diagnose)
app.command("criteria-quality")(quality.criteria_quality)
app.command("er-width")(tools.er_width)
app.command("list")(tools.list_components)
app.command("bench")(bench.bench_command)
app.command("published")(bench.published_command)
app.command("reproduce")(bench.reproduce_command)
app.command("export")(study.export)
app.add_typer(runs.app, name="runs")
app.add_typer(zoo.app, name="zoo")


def main() -> None:  # pragma: no cover
    sys.exit(app())
