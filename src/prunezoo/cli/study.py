"""``prunezoo run``, ``report``, ``diagnose`` and ``export``: one study, from training to its report and
deployment. Library code is imported inside the commands (see :mod:`prunezoo.cli.common`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prunezoo.cli.common import (
    DeviceOption,
    Executor,
    ExecutorOption,
    FormatOption,
    LogToOption,
    OutOption,
    QuietOption,
    RunsOutOption,
    StudyArgument,
    TableFormat,
    ThreadsOption,
    WorkersOption,
    console,
    fail,
    need_writable,
    out,
    print_results,
    sink_names,
    study_dir,
    with_sinks,
)
from prunezoo.errors import ConfigError


def run(
    config: Annotated[Path | None, typer.Argument(help="study YAML; omitted = the embedded default study")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: training.epochs=3")] = None,
    out_dir: RunsOutOption = Path("runs"),
    force: Annotated[bool, typer.Option(help="re-run even if the study is already complete")] = False,
    quiet: QuietOption = False,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    threads: ThreadsOption = 1,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (auto, host:port); default: start a local Ray")
    ] = None,
    fmt: FormatOption = "table",
    device: DeviceOption = None,
    log_to: LogToOption = None,
) -> None:
    """Train dense, prune with every configured method, print accuracy vs sparsity with FLOPs.

    Interrupted studies resume where they stopped (finished jobs are kept, running ones restart from
    their last epoch checkpoint).
    """
    from prunezoo.experiments.config import load_config
    from prunezoo.experiments.executors import JobFailed
    from prunezoo.experiments.study import run_study

    try:
        cfg = load_config(config, set_ or [], device=device)
    except ConfigError as err:
        fail(err)
    cfg = with_sinks(cfg, log_to)

    def log(message: str) -> None:
        if not quiet:
            console.log(message)

    try:
        result = run_study(
            cfg,
            out_dir,
            progress=None if not quiet else False,
            log=log,
            force=force,
            executor=Executor(executor).value,
            workers=workers,
            threads=threads,
            address=address,
        )
    except ConfigError as err:
        fail(err)
    except JobFailed as err:
        console.print(f"[bold red]failed[/]: {err}\nfinished jobs are kept; run the same command again to resume")
        raise typer.Exit(code=1) from None
    print_results(result.rows, f"{cfg.name}: {cfg.model.name} on {cfg.dataset.name}", TableFormat(fmt))
    # csv/json keep stdout machine-readable: the directory goes to stderr
    (out if TableFormat(fmt) is TableFormat.table else console).print(f"results: {result.directory}")


def report(
    study: StudyArgument,
    out_dir: OutOption = Path("runs"),
    output: Annotated[Path | None, typer.Option(help="HTML path (default: <study>/report/report.html)")] = None,
    log_to: LogToOption = None,
) -> None:
    """Write a self-contained HTML report (plus PNGs): accuracy vs sparsity and FLOPs with seed
    bands, per-layer densities, tables with compression, speed-up, nnz and the dense control."""
    from prunezoo.analysis import write_report

    directory = study_dir(study, out_dir)
    target = output if output is not None else directory / "report" / "report.html"
    need_writable(target.parent, "the report", "" if output is not None else "; pass --output PATH elsewhere")
    path = write_report(directory, output)
    out.print(f"report: {path}")
    log_report(directory, path, sink_names(log_to))


def log_report(directory: Path, path: Path, extra_sinks: list[str]) -> None:
    """The report's figures and HTML to the study's tracker sinks (its config's ``logging`` + ``--log-to``)."""
    import yaml

    try:
        saved = yaml.safe_load((directory / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        saved = {}
    section = saved.get("logging") or {}
    sinks = list(dict.fromkeys([*(section.get("sinks") or []), *extra_sinks]))
    if sinks:
        from prunezoo.tracking import log_study_report

        log_study_report(directory, saved.get("name", directory.name), sinks, section.get("options") or {}, path)


def diagnose(
    study: StudyArgument,
    out_dir: OutOption = Path("runs"),
    sharpness: Annotated[bool, typer.Option(help="top Hessian eigenvalue of each final model (slower)")] = True,
) -> None:
    """Training diagnostics per run: train CE, test entropy, channel sparsity, IoU between IMP levels,
    sharpness. Written to <study>/diagnostics.json and shown in the report."""
    from prunezoo.analysis.diagnostics import diagnose_study

    directory = study_dir(study, out_dir)
    need_writable(directory, f"{directory / 'diagnostics.json'}")
    records = diagnose_study(directory, sharpness=sharpness)
    table = Table(title="diagnostics")
    cols = [
        "method",
        "level",
        "seed",
        "sparsity",
        "train CE",
        "test entropy",
        "channel sparsity",
        "IoU prev",
        "sharpness",
    ]
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right")

    def fmt(v, spec: str) -> str:
        return "" if v is None else format(v, spec)

    for r in records:
        table.add_row(
            r["method"],
            fmt(r["level"], "d"),
            str(r["seed"]),
            f"{r['sparsity']:.1%}",
            fmt(r["train_loss"], ".3f"),
            fmt(r["test_entropy"], ".3f"),
            f"{r['channel_sparsity']:.1%}",
            fmt(r["iou_previous_level"], ".3f"),
            fmt(r["sharpness"], ".3g"),
        )
    out.print(table)


def export(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (job.json + final.safetensors)")],
    sparse: Annotated[bool, typer.Option("--sparse", help="export onto sparse kernels (CSR/BSR, 2:4)")] = False,
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="write an ONNX file here, verified with onnxruntime (extra: onnx)")
    ] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="output .pt (default <run>/sparse-export.pt)")] = None,
    batch: Annotated[int, typer.Option(help="batch size the kernels are chosen and timed for")] = 1,
    threads: Annotated[int, typer.Option(help="intra-op threads the kernels are chosen and timed with")] = 1,
    level: Annotated[int | None, typer.Option(help="imp runs: the level to export")] = None,
) -> None:
    """Export a run's pruned model for inference: --sparse puts each pruned Linear/Conv on the fastest
    measured sparse kernel (dense fallback per layer) and reports latency vs dense kernels; --onnx writes
    the pruned model (a structured run: its compacted model) as ONNX, checked against PyTorch with onnxruntime."""
    if sparse == (onnx is not None):
        fail(ConfigError("--sparse", "choose one export: --sparse (sparse kernels) or --onnx FILE (ONNX)"))
    if onnx is not None:
        export_onnx_cli(run_dir, onnx, batch=batch, level=level)
        return
    if threads < 1:
        fail(ConfigError("--threads", f"must be >= 1, got {threads}"))
    from prunezoo.experiments.export import export_run

    try:
        rec = export_run(run_dir, out_path, batch=batch, threads=threads, level=level)
    except ConfigError as err:
        fail(err)
    table = Table(title=f"sparse export of {run_dir} (batch {batch}, {threads} thread(s))")
    for col in ("layer", "density", "format", "layer speed-up", "note"):
        table.add_column(col, justify="left" if col in ("layer", "format", "note") else "right")
    for name, e in rec["deploy_report"]["layers"].items():
        table.add_row(
            name,
            f"{e['density']:.3f}",
            e["format"],
            f"{e['speedup']:.2f}x" if "speedup" in e else "",
            e.get("reason", ""),
        )
    out.print(table)
    out.print(
        f"model latency {rec['latency_ms']:.3f} ms vs dense kernels {rec['latency_dense_ms']:.3f} ms: "
        f"{rec['latency_speedup']:.2f}x  →  {rec['out']} (+ .json)"
    )


def export_onnx_cli(run_dir: Path, onnx: Path, *, batch: int, level: int | None) -> None:
    """``prunezoo export <run> --onnx FILE``: exit 2 naming --onnx (with the pip command) without the extra."""
    from prunezoo.experiments.export import export_run_onnx

    try:
        rec = export_run_onnx(run_dir, onnx, batch=batch, level=level)
    except ImportError as err:
        fail(ConfigError("--onnx", str(err)))
    except ConfigError as err:
        fail(err)
    except RuntimeError as err:  # OnnxVerificationError: onnxruntime disagrees with PyTorch, nothing written
        out.print(f"[red]ONNX export failed:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    out.print(
        f"ONNX (opset {rec['opset']}, {rec['exporter']} exporter): {rec['parameters']:,} parameters, "
        f"weights {rec['weight_sparsity']:.1%} zeros; onnxruntime matches PyTorch (max |diff| "
        f"{rec['max_abs_diff']:.2g})  →  {rec['path']} (+ .json)"
    )
