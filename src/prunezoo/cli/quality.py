"""``prunezoo criteria-quality``: the CLI face of :mod:`prunezoo.analysis.criteria_quality` (torch and the
analysis are imported inside the command)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prunezoo.cli.common import OutOption, StudyArgument, fail, out, study_dir
from prunezoo.errors import ConfigError


class State(str, Enum):  # checked by click: a typo is a usage error before the study is read
    final = "final"
    init = "init"


class Units(str, Enum):
    weight = "weight"
    neuron = "neuron"


def criteria_quality(
    study: StudyArgument,
    out_dir: OutOption = Path("runs"),
    criteria: Annotated[str | None, typer.Option(help="comma-separated criteria (default: all registered)")] = None,
    state: Annotated[State, typer.Option(help="score the dense run's 'final' or 'init' weights")] = State.final,
    units: Annotated[Units, typer.Option(help="'weight' or 'neuron' (a row / output channel)")] = Units.weight,
    max_items: Annotated[int, typer.Option(min=0, help="oracle items sampled per layer (0 = all)")] = 200,
    batches: Annotated[int, typer.Option(min=1, help="training batches for the oracle and the criteria")] = 4,
    seed: Annotated[int | None, typer.Option(help="replicate seed (default: the first)")] = None,
) -> None:
    """Spearman correlation of each criterion with the oracle ΔL (true loss change of removing each
    weight/unit) on the study's dense model; written to <study>/criteria-quality.json."""
    from prunezoo.analysis.criteria_quality import study_criteria_quality

    try:
        res = study_criteria_quality(
            study_dir(study, out_dir),
            criteria.split(",") if criteria else None,
            state=State(state).value,
            units=Units(units).value,
            max_items=max_items or None,
            batches=batches,
            seed=seed,
        )
    except ConfigError as err:
        fail(err)
    layers = list(next(iter(res["criteria"].values()))["layers"])
    table = Table(title=f"Spearman vs oracle ({res['state']} weights, {res['units']}s, {res['samples']} samples)")
    for col in ("criterion", "pooled", *layers):
        table.add_column(col, justify="left" if col == "criterion" else "right")

    def fmt(v: float) -> str:  # NaN: undefined, e.g. constant scores
        return "n/a" if v != v else f"{v:+.3f}"

    def rank(item) -> float:  # NaN last
        return item[1]["spearman"] if item[1]["spearman"] == item[1]["spearman"] else -2.0

    for name, q in sorted(res["criteria"].items(), key=rank, reverse=True):
        table.add_row(name, fmt(q["spearman"]), *(fmt(q["layers"][n]) for n in layers))
    out.print(table)
    out.print(f"written: {Path(res['study']) / 'criteria-quality.json'}")
