"""``prunezoo zoo generate/twin/import/analyze``: model zoos (a typer sub-app registered in :mod:`prunezoo.cli`).

Heavy modules are imported inside the commands so ``prunezoo --help`` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from prunezoo.cli.common import (
    DeviceOption,
    ExecutorOption,
    ThreadsOption,
    WorkersOption,
    console,
    fail,
    fitted_table,
    out,
    task_failed,
)
from prunezoo.cli.common import Executor as ExecutorName
from prunezoo.errors import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Model zoos: generate populations, make sparse twins, import public zoos.",
)

Executor = ExecutorOption
Workers = WorkersOption
Threads = ThreadsOption
Address = Annotated[str | None, typer.Option(help="Ray cluster address (auto, host:port)")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


@app.command("generate")
def generate(
    config: Annotated[Path | None, typer.Argument(help="zoo YAML (see examples/zoo-*.yaml)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: epochs=3, lr=[1e-3,1e-4]")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="zoo directory (default: zoos/<name>)")] = None,
    executor: Executor = "local",
    workers: Workers = None,
    threads: Threads = 1,
    address: Address = None,
    quiet: Quiet = False,
    device: DeviceOption = None,
) -> None:
    """Train every member of a seed or hyperparameter-grid zoo, storing every epoch's state.

    Re-running skips finished models and redoes unfinished ones (resume after a kill).
    """
    from prunezoo.zoo.generate import generate_zoo, load_zoo_config
    from prunezoo.zoo.runner import TaskFailed

    try:
        cfg = load_zoo_config(config, set_ or [], device=device)
        summary = generate_zoo(
            cfg,
            out_dir or Path("zoos") / cfg.name,
            executor=ExecutorName(executor).value,
            workers=workers,
            threads=threads,
            address=address,
            progress=False if quiet else None,
        )
    except ConfigError as err:
        fail(err)
    except TaskFailed as err:
        task_failed(err, "models")
    typer.echo(
        f"zoo {summary['directory']}: {summary['done']}/{summary['models']} models done "
        f"({summary['trained']} trained in {summary['seconds']:.1f} s, {summary['skipped']} already done)"
    )


@app.command("twin")
def twin(
    zoo: Annotated[Path, typer.Argument(help="zoo directory")],
    method: Annotated[
        str, typer.Option(help="mp, vd, or a YAML method mapping: '{name: snip, criterion: snip, scheme: erk}'")
    ] = "mp",
    levels: Annotated[str | None, typer.Option(help="sparsities, comma-separated (mp default 0.1,...,0.9)")] = None,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (mp default 15, vd 25)")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate (default: the model's own)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a twin option: kl_schedule=elbo")] = None,
    executor: Executor = "local",
    workers: Workers = None,
    threads: Threads = 1,
    address: Address = None,
    quiet: Quiet = False,
    device: DeviceOption = None,
) -> None:
    """Make sparsified twins of every finished model of a zoo (resumable, parallel over models)."""
    from prunezoo.zoo.runner import TaskFailed
    from prunezoo.zoo.twins import make_twins, parse_twin_method

    try:
        spec = parse_twin_method(method, levels=levels, epochs=epochs, lr=lr, overrides=set_ or [], device=device)
        summary = make_twins(
            zoo,
            spec,
            executor=ExecutorName(executor).value,
            workers=workers,
            threads=threads,
            address=address,
            progress=False if quiet else None,
        )
    except ConfigError as err:
        fail(err)
    except TaskFailed as err:
        task_failed(err, "models")
    for name, info in summary["sets"].items():
        typer.echo(
            f"{name}: {info['done']}/{info['models']} twins, mean test acc {info['test_acc']:.4f}, "
            f"mean sparsity {info['sparsity_ratio']:.3f}"
        )
    typer.echo(f"{summary['trained']} twins made in {summary['seconds']:.1f} s ({summary['skipped']} already done)")


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="a zoo in the public ModelZooDataset layout")],
    dest: Annotated[Path, typer.Argument(help="destination zoo directory")],
    model: Annotated[str | None, typer.Option(help="architecture (default: from params.json model::type)")] = None,
    dataset: Annotated[str | None, typer.Option(help="prunezoo dataset name for later evaluation")] = None,
) -> None:
    """Convert a public-layout zoo (params.json, result.json, checkpoint_*/checkpoints) into a prunezoo zoo."""
    from prunezoo.zoo.importer import import_zoo

    try:
        summary = import_zoo(source, dest, model=model, dataset=dataset)
    except ConfigError as err:
        fail(err)
    typer.echo(f"imported {summary['imported']} models into {dest} ({summary['skipped']} skipped)")
    if summary["skipped"]:  # the good models are imported; the bad ones are listed and the exit code says so
        for reason in summary["skipped_reasons"]:
            console.print(f"[bold red]skipped[/] {escape(reason)}", highlight=False)
        raise typer.Exit(code=1)


def _pct(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{100 * v:.2f}"


def _num(v: float, digits: int = 3) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.{digits}f}"


@app.command("analyze")
def analyze(
    zoo: Annotated[Path, typer.Argument(help="zoo directory (with twins/ from `prunezoo zoo twin`)")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="output directory (default: <zoo>/analysis)")] = None,
    epoch: Annotated[int | None, typer.Option(help="epoch to analyse (default: last; -2: one before the last)")] = None,
    compare: Annotated[
        bool, typer.Option(help="run twins and originals on the test split for agreement, kappa, JS and CKA")
    ] = True,
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
    from prunezoo.zoo.analysis import analyze_zoo

    try:
        result = analyze_zoo(
            zoo, epoch=epoch, compare=compare, max_samples=max_samples, progress=not quiet and console.is_terminal
        )
    except ConfigError as err:
        fail(err)
    directory = out_dir or zoo / "analysis"
    paths = result.write(directory)
    if report:
        from prunezoo.zoo.report import write_zoo_report

        html = write_zoo_report(result, directory / "report.html")

    cols = ["group", "n", "test acc %", "gap pp", "sparsity %", "agree %", "kappa", "JS", "CKA", "Pearson r"]
    cols += ["Kendall τ", "ρ size~sp"]
    cells: dict[str, list[str]] = {c: [] for c in cols}
    for g in result.groups:
        comp = {m: g.comparisons.get(m, {}).get("mean", math.nan) for m in ("agreement", "kappa", "js", "cka")}
        corr = g.correlation
        values = [
            g.group,
            str(g.n),
            _pct(g.test_acc["mean"]),
            _pct(g.gen_gap["mean"]),
            _pct(g.sparsity["mean"]),
            _pct(comp["agreement"]),  # a rate, in % like accuracy and sparsity
            _num(comp["kappa"]),
            _num(comp["js"], 4),
            _num(comp["cka"]),
            _num(corr.pearson_r if corr else math.nan),
            _num(corr.kendall_tau if corr else math.nan),
            _num(g.size_sparsity_spearman),
        ]
        for col, value in zip(cols, values, strict=True):
            cells[col].append(value)
    table = fitted_table(
        cells, title=f"zoo analysis: {zoo}", text_cols=("group",), droppable=("JS", "CKA", "kappa", "gap pp")
    )
    out.print(table)
    for note in result.notes[:5]:
        console.print(f"[yellow]note[/]: {note}")
    typer.echo(f"tables: {paths['models'].parent}" + (f"  report: {html}" if report else ""))
