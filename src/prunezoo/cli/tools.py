"""``prunezoo er-width`` and ``prunezoo list``: small look-ups that need no study."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prunezoo import names
from prunezoo.cli.common import RecordsFormatOption, TableFormat, fail, out, records_text
from prunezoo.errors import ConfigError


def er_width(
    widths: Annotated[str, typer.Option(help="target widths n_0,...,n_L")] = "784,128,10",
    sparsity: Annotated[list[float] | None, typer.Option(help="ER source sparsity (repeatable)")] = None,
    delta: Annotated[float, typer.Option(help="failure probability")] = 0.001,
    plot: Annotated[Path | None, typer.Option(help="write the width-vs-sparsity curve (Fig. 2) to this PNG")] = None,
) -> None:
    """How wide a random ER network must be to contain a target network (seed 002, Thm 2.1-2.3)."""
    from prunezoo.theory import er_width_lower_bound, er_width_requirements, width_curve_figure

    try:
        ws = [int(w) for w in widths.split(",")]
    except ValueError:
        fail(ConfigError("--widths", f"expected comma-separated integers, got {widths!r}"))
    sparsities = sparsity or [0.5, 0.9, 0.95, 0.99]
    if any(not 0 < s < 1 for s in sparsities) or not 0 < delta < 1 or len(ws) < 3:
        fail(ConfigError("--sparsity/--delta/--widths", "sparsities and delta must be in (0, 1), >= 3 widths"))
    table = Table(title=f"ER source widths for target {ws}, delta={delta}")
    for col in ("sparsity", "source widths (Fig. 2 rounding)", "q per layer", "lower bound (layer 1)"):
        table.add_column(col, justify="right")
    for s in sparsities:
        req = er_width_requirements(ws, [1 - s] * (len(ws) - 1), delta)
        table.add_row(
            f"{s:g}",
            ", ".join(f"{n:,}" for n in req["n_source"]),
            ", ".join(f"{q:.2f}" for q in req["q"]),
            f"{er_width_lower_bound(1 - s, delta) * ws[1]:,.0f}",
        )
    out.print(table)
    if plot is not None:
        from prunezoo.analysis.plots import to_png
        from prunezoo.utils.io import atomic_path

        grid = sorted(set(sparsities) | {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99})
        with atomic_path(plot) as tmp:
            Path(tmp).write_bytes(to_png(width_curve_figure(ws, delta, grid)))
        out.print(f"plot: {plot}")


# The groups of ``prunezoo list``, in the order printed: group name -> its names. A new group is one entry;
# keep its source light (no torch at import: ``prunezoo list`` must start fast, see tests/test_cli_startup.py).
LIST_GROUPS: dict[str, Callable[[], Iterable[str]]] = {
    # built-ins, then the plug-ins installed packages declare as entry points (listed, not imported)
    "datasets": lambda: (*names.DATASETS, *_entry_points("datasets")),
    "models": lambda: (*names.MODELS, *_entry_points("models")),
    "criteria": lambda: (*names.CRITERIA, *_entry_points("criteria")),
    "schemes": lambda: names.SCHEMES,
    "noise": lambda: names.NOISE_KINDS,
    "augment": lambda: names.AUGMENTATIONS,  # dataset.options.augment names
    "kinds": lambda: _method_kinds(),  # method kinds (prunezoo.methods: light, no torch)
}


def _entry_points(group: str) -> list[str]:
    from prunezoo.utils.plugins import entry_point_names

    return entry_point_names(f"prunezoo.{group}")


def _method_kinds() -> dict[str, str]:
    """Registered method kinds and their one-paragraph summaries (the kind classes' docstrings)."""
    from prunezoo.methods import METHOD_KINDS

    return {name: kind.summary for name, kind in METHOD_KINDS.items()}


def list_components(
    what: Annotated[str, typer.Argument(help=f"{' | '.join(LIST_GROUPS)} (default: all)")] = "all",
    fmt: RecordsFormatOption = "table",
) -> None:
    """List the registered datasets, models, criteria, allocation schemes, label-noise kinds and method kinds
    (csv/json: one record per name: group, name, and a kind's summary)."""
    if what != "all" and what not in LIST_GROUPS:
        fail(ConfigError("what", f"unknown {what!r}; choose from {['all', *LIST_GROUPS]}"))
    if TableFormat(fmt) is not TableFormat.table:
        records = [
            {"group": name, "name": item, **({"summary": items[item]} if isinstance(items, dict) else {})}
            for name, get in LIST_GROUPS.items()
            if what in ("all", name)
            for items in [get()]
            for item in sorted(items)
        ]
        typer.echo(records_text(records, TableFormat(fmt), ["group", "name", "summary"]))
        return
    for name, items in LIST_GROUPS.items():
        if what == name == "kinds":  # one line per kind: what it does (`prunezoo list kinds`)
            for kind, summary in _method_kinds().items():
                out.print(f"[bold]{kind}[/]: {summary}", highlight=False)
        elif what in ("all", name):
            out.print(f"[bold]{name}[/]: {', '.join(sorted(items()))}")
