"""``prunezoo zoo ...`` commands (a typer sub-app registered in :mod:`prunezoo.cli`).

Heavy modules are imported inside the commands so ``prunezoo --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prunezoo.cli_options import Executor as ExecutorName
from prunezoo.cli_options import ExecutorOption, ThreadsOption, WorkersOption
from prunezoo.errors import ConfigError

zoo_app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Model zoos: generate populations, make sparse twins, import public zoos.")

Executor = ExecutorOption
Workers = WorkersOption
Threads = ThreadsOption
Address = Annotated[str | None, typer.Option(help="Ray cluster address (auto, host:port)")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def _console():
    from prunezoo.cli import console

    return console


def _fail(err: Exception) -> None:
    from prunezoo.cli import _fail as fail  # the shared error exit (code 2)

    fail(err)


def _task_failed(err: Exception) -> None:
    _console().print(f"[bold red]failed[/]: {err}\nfinished models are kept; run the same command again to resume")
    raise typer.Exit(code=1)


@zoo_app.command("generate")
def generate(
    config: Annotated[Path | None, typer.Argument(help="zoo YAML (see examples/zoo-*.yaml)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: epochs=3, lr=[1e-3,1e-4]")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="zoo directory (default: zoos/<name>)")] = None,
    executor: Executor = "local",
    workers: Workers = None,
    threads: Threads = 1,
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Train every member of a seed or hyperparameter-grid zoo, storing every epoch's state.

    Re-running skips finished models and redoes unfinished ones (resume after a kill).
    """
    from prunezoo.zoo.generate import generate_zoo, load_zoo_config
    from prunezoo.zoo.runner import TaskFailed

    try:
        cfg = load_zoo_config(config, set_ or [])
        summary = generate_zoo(cfg, out_dir or Path("zoos") / cfg.name, executor=ExecutorName(executor).value,
                               workers=workers, threads=threads, address=address, progress=False if quiet else None)
    except ConfigError as err:
        _fail(err)
    except TaskFailed as err:
        _task_failed(err)
    typer.echo(f"zoo {summary['directory']}: {summary['done']}/{summary['models']} models done "
               f"({summary['trained']} trained in {summary['seconds']:.1f} s, {summary['skipped']} already done)")


@zoo_app.command("twin")
def twin(
    zoo: Annotated[Path, typer.Argument(help="zoo directory")],
    method: Annotated[str, typer.Option(help="mp, vd, or a YAML method mapping: "
                                              "'{name: snip, criterion: snip, scheme: erk}'")] = "mp",
    levels: Annotated[str | None, typer.Option(help="sparsities, comma-separated (mp default 0.1,...,0.9)")] = None,
    epochs: Annotated[int | None, typer.Option(help="fine-tuning epochs (mp default 15, vd 25)")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate (default: the model's own)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a twin option: kl_schedule=elbo")] = None,
    executor: Executor = "local",
    workers: Workers = None,
    threads: Threads = 1,
    address: Address = None,
    quiet: Quiet = False,
) -> None:
    """Make sparsified twins of every finished model of a zoo (resumable, parallel over models)."""
    from prunezoo.zoo.runner import TaskFailed
    from prunezoo.zoo.twins import make_twins, parse_twin_method

    try:
        spec = parse_twin_method(method, levels=levels, epochs=epochs, lr=lr, overrides=set_ or [])
        summary = make_twins(zoo, spec, executor=ExecutorName(executor).value, workers=workers, threads=threads,
                             address=address, progress=False if quiet else None)
    except ConfigError as err:
        _fail(err)
    except TaskFailed as err:
        _task_failed(err)
    for name, info in summary["sets"].items():
        typer.echo(f"{name}: {info['done']}/{info['models']} twins, mean test acc {info['test_acc']:.4f}, "
                   f"mean sparsity {info['sparsity_ratio']:.3f}")
    typer.echo(f"{summary['trained']} twins made in {summary['seconds']:.1f} s ({summary['skipped']} already done)")


@zoo_app.command("import")
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
        _fail(err)
    typer.echo(f"imported {summary['imported']} models into {dest} ({summary['skipped']} skipped)")
    if summary["skipped"]:  # the good models are imported; the bad ones are listed and the exit code says so
        for reason in summary["skipped_reasons"]:
            from rich.markup import escape

            _console().print(f"[bold red]skipped[/] {escape(reason)}", highlight=False)
        raise typer.Exit(code=1)


from prunezoo.zoo.analyze_command import analyze  # noqa: E402  (light module; heavy imports inside)

zoo_app.command("analyze")(analyze)
