"""The ``prunezoo`` command line."""

from __future__ import annotations

import errno
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prunezoo.cli_options import Executor, ExecutorOption, ThreadsOption, WorkersOption
from prunezoo.errors import ConfigError

_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                   errno.EPERM: "operation not permitted", errno.EIO: "disk I/O error"}


def storage_error_message(err: BaseException) -> str | None:
    """One line for a storage failure (full disk, read-only or unwritable file, I/O error), else None."""
    import sqlite3

    if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
        text = _STORAGE_ERRNOS[err.errno] + (f": {err.filename}" if err.filename else f" ({err})")
        space = err.errno in (errno.ENOSPC, errno.EDQUOT)
    elif isinstance(err, sqlite3.OperationalError) and "full" in str(err):
        text, space = f"no space left on device (SQLite: {err})", True
    elif isinstance(err, sqlite3.OperationalError) and ("I/O" in str(err) or "readonly" in str(err)):
        text, space = f"cannot write (SQLite: {err})", False
    else:
        return None
    return text + ("; finished work is kept: free space and run the same command again" if space else "")


class _Commands(typer.core.TyperGroup):
    """Every command: a full disk or an unwritable file is one line on stderr and exit 1, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as err:
            message = storage_error_message(err)
            if message is None:
                raise
            from rich.markup import escape

            console.print(f"[bold red]error[/]: {escape(message)}", highlight=False)
            raise typer.Exit(code=1) from None


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_Commands,
                  help="Prune neural networks and study pruned populations.")
# Non-TTY output (CI logs, pipes) would otherwise wrap tables at 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120, log_path=False)
out = Console(width=None if sys.stdout.isatty() else 120)


def _fail(err: Exception) -> None:
    from rich.markup import escape

    # escaped: a message holding "[nan]" or "[/x]" must print as written, not as rich markup
    console.print(f"[bold red]error[/]: {escape(str(err))}", highlight=False)
    raise typer.Exit(code=2)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"prunezoo {version('prunezoo')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Prune neural networks and study pruned populations."""


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="study YAML; omitted = the embedded default study")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: training.epochs=3")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="root directory for run directories")] = Path("runs"),
    force: Annotated[bool, typer.Option(help="re-run even if the study is already complete")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    executor: ExecutorOption = "local",
    workers: WorkersOption = None,
    threads: ThreadsOption = 1,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (auto, host:port); default: start a local Ray")] = None,
    fmt: FormatOption = "table",
) -> None:
    """Train dense, prune with every configured method, print accuracy vs sparsity with FLOPs.

    Interrupted studies resume where they stopped (finished jobs are kept, running ones restart from
    their last epoch checkpoint).
    """
    from prunezoo.experiments.config import load_config
    from prunezoo.experiments.executors import JobFailed
    from prunezoo.experiments.study import run_study

    try:
        cfg = load_config(config, set_ or [])
    except ConfigError as err:
        _fail(err)
    log = (lambda _m: None) if quiet else (lambda m: console.log(m))
    try:
        result = run_study(cfg, out_dir, progress=None if not quiet else False, log=log, force=force,
                           executor=Executor(executor).value, workers=workers, threads=threads, address=address)
    except ConfigError as err:
        _fail(err)
    except JobFailed as err:
        console.print(f"[bold red]failed[/]: {err}\nfinished jobs are kept; run the same command again to resume")
        raise typer.Exit(code=1) from None
    _print_results(result.rows, f"{cfg.name}: {cfg.model.name} on {cfg.dataset.name}", TableFormat(fmt))
    # csv/json keep stdout machine-readable: the directory goes to stderr
    (out if TableFormat(fmt) is TableFormat.table else console).print(f"results: {result.directory}")


class TableFormat(str, Enum):
    """How ``run`` and ``runs show`` print the results: a terminal table, or CSV/JSON for scripts."""

    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[TableFormat, typer.Option("--format", help="table (terminal), csv or json (every summary "
                                                                     "field, fractions not %, for scripts)")]
SUMMARY_FIELDS = ("point", "method", "kind", "level", "target_sparsity", "n", "sparsity", "test_acc", "test_acc_std",
                  "test_acc_ci95_low", "test_acc_ci95_high", "val_acc", "train_loss", "nnz", "compression",
                  "flops_sparse", "flop_speedup")


def results_text(rows: list[dict], fmt: TableFormat) -> str:
    """The summary rows behind :func:`results_table` as CSV or JSON (NaN written as empty / null)."""
    import csv
    import io
    import json
    import math

    from prunezoo.experiments.summary import summarize

    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    records = [{k: clean(r.get(k)) for k in SUMMARY_FIELDS} for r in summarize(rows)]
    if fmt is TableFormat.json:
        return json.dumps(records, indent=1, allow_nan=False)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue().rstrip("\n")


def _print_results(rows: list[dict], title: str, fmt: TableFormat) -> None:
    if fmt is TableFormat.table:
        out.print(results_table(rows, title=title))
    else:  # plain stdout: rich would wrap long lines and read [brackets] as markup
        typer.echo(results_text(rows, fmt))


# Columns the terminal table drops first when it is too narrow (least useful first); the rest always stay.
_DROPPABLE = ("FLOPs (sparse)", "compression", "FLOP speed-up")


def results_table(rows: list[dict], title: str = "", width: int | None = None) -> Table:
    """Accuracy-vs-sparsity table; replicate seeds are averaged (mean ± std, n).

    Numbers are never cut: numeric columns are as wide as their longest value; when the table would not
    fit in ``width`` (default: the terminal's) columns of ``_DROPPABLE`` are left out (named in the
    caption) and names fold onto several lines."""
    from prunezoo.experiments.summary import summarize

    summary = summarize(rows)
    multi = len({r.get("point") or "" for r in summary}) > 1
    cells: dict[str, list[str]] = {c: [] for c in (["point"] if multi else []) + [
        "method", "level", "sparsity", "test acc", "n", "nnz", "compression", "FLOPs (sparse)", "FLOP speed-up"]}
    for r in summary:
        level = r["level"]
        values = {
            "point": r["point"], "method": r["method"],
            "level": str(int(level)) if level is not None and level == level else "",
            "sparsity": f"{r['sparsity']:.2%}",
            "test acc": f"{r['test_acc']:.2%}" + (f" ± {r['test_acc_std']:.2%}" if r["n"] > 1 else ""),
            "n": str(r["n"]), "nnz": f"{int(round(r['nnz'])):,}", "compression": f"{r['compression']:.1f}x",
            "FLOPs (sparse)": f"{int(round(r['flops_sparse'])):,}", "FLOP speed-up": f"{r['flop_speedup']:.2f}x"}
        for col in cells:
            cells[col].append(values[col])
    text_cols = ("point", "method")

    def need(col: str, wrap_header: bool) -> int:  # values never wrap; names may fold (counted at <= 12)
        longest = max(map(len, cells[col]), default=0)
        head = max(map(len, col.split())) if wrap_header else len(col)
        return max(min(longest, 12) if col in text_cols else longest, head)

    max_width = width if width is not None else out.width
    fits = lambda wrap: sum(need(c, wrap) + 3 for c in cells) + 1 <= max_width  # noqa: E731  (padding, rules)
    dropped: list[str] = []
    for col in _DROPPABLE:
        if fits(True):
            break
        del cells[col]
        dropped.append(col)
    wrap_header = not fits(False)  # one-line headers when there is room for them
    table = Table(title=title)
    for col in cells:
        if col in text_cols:
            table.add_column(col, justify="left", overflow="fold")
        else:
            table.add_column(col, justify="right", width=need(col, wrap_header), overflow="fold")
    for i in range(len(summary)):
        table.add_row(*(cells[c][i] for c in cells))
    if dropped:
        table.caption = f"not shown at this width: {', '.join(dropped)} (all columns: --format csv or json)"
    return table


runs_app = typer.Typer(no_args_is_help=True, help="Query the run store (<out>/index.sqlite).")
app.add_typer(runs_app, name="runs")
from prunezoo.zoo.cli import zoo_app  # noqa: E402  (zoo generate / twin / import / analyze)

app.add_typer(zoo_app, name="zoo")
OutOption = Annotated[Path, typer.Option("--out", help="root directory holding the run store")]


def _store(out_dir: Path):
    from prunezoo.experiments.study import STORE_NAME
    from prunezoo.experiments.store import RunStore

    path = out_dir / STORE_NAME
    if not path.is_file():
        _fail(ConfigError("--out", f"no run store at {path}; run a study first"))
    return _CheckedStore(lambda: RunStore(path, readonly=True), path)  # never writes: works on read-only media


class _CheckedStore:
    """A run store whose unreadable database (e.g. a garbage index.sqlite) is an error exit, not a traceback."""

    def __init__(self, open_store, path: Path):
        self._path = path
        self._store = self._guard(open_store)

    def _guard(self, fn, *args, **kwargs):
        import sqlite3

        try:
            return fn(*args, **kwargs)
        except Exception as err:  # pandas re-raises sqlite's error as its own DatabaseError (from it)
            cause = err if isinstance(err, sqlite3.DatabaseError) else err.__cause__
            if not isinstance(cause, sqlite3.DatabaseError):
                raise
            _fail(ConfigError("--out", f"{self._path} is not a readable prunezoo run store ({cause})"))

    def __getattr__(self, name: str):
        attr = getattr(self._store, name)
        return (lambda *a, **k: self._guard(attr, *a, **k)) if callable(attr) else attr


@runs_app.command("ls")
def runs_ls(out_dir: OutOption = Path("runs")) -> None:
    """List indexed studies."""
    df = _store(out_dir).studies()
    table = Table(title=f"studies in {out_dir}")
    for col in ("study_id", "status", "path"):
        table.add_column(col)
    for rec in df.to_dict("records"):
        table.add_row(rec["study_id"], rec["status"], rec["path"])
    out.print(table)


@runs_app.command("show")
def runs_show(
    study: Annotated[str, typer.Argument(help="study id, or a unique prefix of it or of its config hash")],
    out_dir: OutOption = Path("runs"),
    fmt: FormatOption = "table",
) -> None:
    """Print a study's accuracy-vs-sparsity table."""
    store = _store(out_dir)
    try:
        study_id = store.resolve(study)
    except KeyError as err:
        _fail(ConfigError("study", str(err.args[0])))
    _print_results(store.results(study_id).to_dict("records"), study_id, TableFormat(fmt))


@runs_app.command("export")
def runs_export(
    path: Annotated[Path, typer.Argument(help="output file: .csv or .parquet")],
    study: Annotated[str | None, typer.Option(help="only this study (id or prefix)")] = None,
    out_dir: OutOption = Path("runs"),
) -> None:
    """Export result rows of all (or one) studies to CSV or Parquet."""
    from prunezoo.utils.io import atomic_path

    if path.suffix not in (".csv", ".parquet"):
        _fail(ConfigError("path", f"unsupported export format {path.suffix!r}; use .csv or .parquet"))
    if not path.parent.is_dir():
        _fail(ConfigError("path", f"{path.parent} is not a directory"))
    store = _store(out_dir)
    try:
        study_id = store.resolve(study) if study else None
    except KeyError as err:
        _fail(ConfigError("--study", str(err.args[0])))
    df = store.results(study_id)
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            try:
                df.to_parquet(tmp, index=False)
            except ImportError:
                _fail(ConfigError("path", "Parquet export needs pyarrow: pip install 'prunezoo[parquet]'"))
    out.print(f"wrote {len(df)} rows to {path}")


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="study directory, or study id / unique prefix in the run store")],
    out_dir: OutOption = Path("runs"),
    output: Annotated[Path | None, typer.Option(help="HTML path (default: <study>/report/report.html)")] = None,
) -> None:
    """Write a self-contained HTML report (plus PNGs): accuracy vs sparsity and FLOPs with seed
    bands, per-layer densities, tables with compression, speed-up, nnz and the dense control."""
    from prunezoo.analysis import write_report

    directory = _study_dir(study, out_dir)
    target = output if output is not None else directory / "report" / "report.html"
    _need_writable(target.parent, "the report", "" if output is not None else "; pass --output PATH elsewhere")
    path = write_report(directory, output)
    out.print(f"report: {path}")


def _need_writable(directory: Path, what: str, hint: str = "") -> None:
    """Exit 1 before any work when ``directory`` (or the ancestor that would create it) is not writable."""
    import os

    from rich.markup import escape

    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        console.print(f"[bold red]error[/]: cannot write {what}: {escape(str(existing))} is read-only{escape(hint)}",
                      highlight=False)
        raise typer.Exit(code=1)


def _study_dir(study: str, out_dir: Path) -> Path:
    directory = Path(study)
    if (directory / "results.json").exists():
        return directory
    store = _store(out_dir)
    try:
        study_id = store.resolve(study)
    except KeyError as err:
        _fail(ConfigError("study", str(err.args[0])))
    directory = Path(store.studies().set_index("study_id").loc[study_id, "path"])
    if not (directory / "results.json").exists():
        _fail(ConfigError("study", f"{study_id} is not complete yet (no {directory / 'results.json'})"))
    return directory


@app.command()
def diagnose(
    study: Annotated[str, typer.Argument(help="study directory, or study id / unique prefix in the run store")],
    out_dir: OutOption = Path("runs"),
    sharpness: Annotated[bool, typer.Option(help="top Hessian eigenvalue of each final model (slower)")] = True,
) -> None:
    """Training diagnostics per run: train CE, test entropy, channel sparsity, IoU between IMP levels,
    sharpness. Written to <study>/diagnostics.json and shown in the report."""
    from prunezoo.analysis.diagnostics import diagnose_study

    directory = _study_dir(study, out_dir)
    _need_writable(directory, f"{directory / 'diagnostics.json'}")
    records = diagnose_study(directory, sharpness=sharpness)
    table = Table(title="diagnostics")
    cols = ["method", "level", "seed", "sparsity", "train CE", "test entropy", "channel sparsity", "IoU prev", "sharpness"]
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right")
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    for r in records:
        table.add_row(r["method"], fmt(r["level"], "d"), str(r["seed"]), f"{r['sparsity']:.1%}",
                      fmt(r["train_loss"], ".3f"), fmt(r["test_entropy"], ".3f"), f"{r['channel_sparsity']:.1%}",
                      fmt(r["iou_previous_level"], ".3f"), fmt(r["sharpness"], ".3g"))
    out.print(table)


from prunezoo.cli_quality import criteria_quality_command  # noqa: E402  (Spearman of criteria vs oracle)

app.command("criteria-quality")(criteria_quality_command)


@app.command("er-width")
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
        _fail(ConfigError("--widths", f"expected comma-separated integers, got {widths!r}"))
    sparsities = sparsity or [0.5, 0.9, 0.95, 0.99]
    if any(not 0 < s < 1 for s in sparsities) or not 0 < delta < 1 or len(ws) < 3:
        _fail(ConfigError("--sparsity/--delta/--widths", "sparsities and delta must be in (0, 1), >= 3 widths"))
    table = Table(title=f"ER source widths for target {ws}, delta={delta}")
    for col in ("sparsity", "source widths (Fig. 2 rounding)", "q per layer", "lower bound (layer 1)"):
        table.add_column(col, justify="right")
    for s in sparsities:
        req = er_width_requirements(ws, [1 - s] * (len(ws) - 1), delta)
        table.add_row(f"{s:g}", ", ".join(f"{n:,}" for n in req["n_source"]),
                      ", ".join(f"{q:.2f}" for q in req["q"]), f"{er_width_lower_bound(1 - s, delta) * ws[1]:,.0f}")
    out.print(table)
    if plot is not None:
        from prunezoo.analysis.plots import to_png
        from prunezoo.utils.io import atomic_path

        grid = sorted(set(sparsities) | {0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99})
        with atomic_path(plot) as tmp:
            Path(tmp).write_bytes(to_png(width_curve_figure(ws, delta, grid)))
        out.print(f"plot: {plot}")


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


from prunezoo.bench import cli as _bench_cli  # noqa: E402  (bench / published / reproduce)

app.command("bench")(_bench_cli.bench_command)
app.command("published")(_bench_cli.published_command)
app.command("reproduce")(_bench_cli.reproduce_command)


@app.command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (job.json + final.safetensors)")],
    sparse: Annotated[bool, typer.Option("--sparse", help="export onto sparse kernels (CSR/BSR, 2:4)")] = False,
    out_path: Annotated[Path | None, typer.Option("--out", help="output .pt (default <run>/sparse-export.pt)")] = None,
    batch: Annotated[int, typer.Option(help="batch size the kernels are chosen and timed for")] = 1,
    threads: Annotated[int, typer.Option(help="intra-op threads the kernels are chosen and timed with")] = 1,
    level: Annotated[int | None, typer.Option(help="imp runs: the level to export")] = None,
) -> None:
    """Export a run's pruned model for inference: --sparse puts each pruned Linear/Conv on the fastest
    measured sparse kernel (dense fallback per layer) and reports latency vs dense kernels."""
    if not sparse:
        _fail(ConfigError("--sparse", "the only export so far is --sparse (structured runs are saved compact)"))
    if threads < 1:
        _fail(ConfigError("--threads", f"must be >= 1, got {threads}"))
    from prunezoo.deploy.run_export import export_run

    try:
        rec = export_run(run_dir, out_path, batch=batch, threads=threads, level=level)
    except ConfigError as err:
        _fail(err)
    table = Table(title=f"sparse export of {run_dir} (batch {batch}, {threads} thread(s))")
    for col in ("layer", "density", "format", "layer speed-up", "note"):
        table.add_column(col, justify="left" if col in ("layer", "format", "note") else "right")
    for name, e in rec["deploy_report"]["layers"].items():
        table.add_row(name, f"{e['density']:.3f}", e["format"], f"{e['speedup']:.2f}x" if "speedup" in e else "",
                      e.get("reason", ""))
    out.print(table)
    out.print(f"model latency {rec['latency_ms']:.3f} ms vs dense kernels {rec['latency_dense_ms']:.3f} ms: "
              f"{rec['latency_speedup']:.2f}x  →  {rec['out']} (+ .json)")


def main() -> None:  # pragma: no cover
    sys.exit(app())
