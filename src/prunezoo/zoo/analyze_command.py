"""``prunezoo zoo analyze``: registered on the zoo sub-app (:mod:`prunezoo.zoo.cli`).

Kept in its own light module (torch and matplotlib are imported inside the command) so
``prunezoo --help`` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from prunezoo.errors import ConfigError


def _pct(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{100 * v:.2f}"


def _num(v: float, digits: int = 3) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def analyze(
    zoo: Annotated[Path, typer.Argument(help="zoo directory (with twins/ from `prunezoo zoo twin`)")],
    out: Annotated[Path | None, typer.Option(help="output directory (default: <zoo>/analysis)")] = None,
    epoch: Annotated[int | None, typer.Option(help="epoch to analyse (default: last; -2: one before the last)")] = None,
    compare: Annotated[bool, typer.Option(help="run twins and originals on the test split for agreement, "
                                               "kappa, JS and CKA")] = True,
    max_samples: Annotated[int | None, typer.Option(help="compare on the first N test samples only")] = None,
    report: Annotated[bool, typer.Option(help="write report.html with figures (off: tables only)")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Analyse a zoo and its twins: summary table, CSV/JSON tables and an HTML report.

    Per group (originals, every twin set): accuracy / gen-gap / sparsity distributions, twin-vs-original
    agreement, Cohen's kappa, JS divergence and linear CKA, Pearson/Kendall of original vs twin accuracy,
    layer size vs sparsity (Spearman); MP-vs-VD curves. Writes models.csv, layers.csv, summary.csv,
    analysis.json and report.html.
    """
    from rich.table import Table

    from prunezoo.cli import _fail, console, out as stdout
    from prunezoo.zoo.analysis import analyze_zoo

    try:
        result = analyze_zoo(zoo, epoch=epoch, compare=compare, max_samples=max_samples,
                             progress=not quiet and console.is_terminal)
    except ConfigError as err:
        _fail(err)
    directory = out or zoo / "analysis"
    paths = result.write(directory)
    if report:
        from prunezoo.zoo.report import write_zoo_report

        html = write_zoo_report(result, directory / "report.html")

    table = Table(title=f"zoo analysis: {zoo}", header_style="bold")
    for col in ("group", "n", "test acc %", "gap pp", "sparsity %", "agree", "kappa", "JS", "CKA", "Pearson r",
                "Kendall τ", "ρ size~sp"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for g in result.groups:
        comp = {m: g.comparisons.get(m, {}).get("mean", math.nan) for m in ("agreement", "kappa", "js", "cka")}
        corr = g.correlation
        table.add_row(g.group, str(g.n), _pct(g.test_acc["mean"]), _pct(g.gen_gap["mean"]),
                      _pct(g.sparsity["mean"]), _num(comp["agreement"]), _num(comp["kappa"]), _num(comp["js"], 4),
                      _num(comp["cka"]), _num(corr.pearson_r if corr else math.nan),
                      _num(corr.kendall_tau if corr else math.nan), _num(g.size_sparsity_spearman))
    stdout.print(table)
    for note in result.notes[:5]:
        console.print(f"[yellow]note[/]: {note}")
    typer.echo(f"tables: {paths['models'].parent}" + (f"  report: {html}" if report else ""))
