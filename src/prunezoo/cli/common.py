"""What every ``prunezoo`` command shares: the consoles, the error exits, the shared options, the run-store
look-ups and the results table.

The sub-app modules (:mod:`.study`, :mod:`.runs`, :mod:`.zoo`, ...) import this module and nothing else of the
CLI; :mod:`prunezoo.cli` imports them. Only typer, rich, the standard library and :mod:`prunezoo.errors` are
imported here at load time, so ``prunezoo --help`` starts without torch or matplotlib: library code is imported
inside the functions.
"""

from __future__ import annotations

import errno
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prunezoo.errors import ConfigError

# Non-TTY output (CI logs, pipes) would otherwise wrap tables at 80 columns.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120, log_path=False)
out = Console(width=None if sys.stdout.isatty() else 120)


def fail(err: Exception) -> NoReturn:
    """The error exit for bad input: one line on stderr, exit code 2."""
    # escaped: a message holding "[nan]" or "[/x]" must print as written, not as rich markup
    console.print(f"[bold red]error[/]: {escape(str(err))}", highlight=False)
    raise typer.Exit(code=2)


def task_failed(err: Exception, what: str) -> NoReturn:
    """A job of a study/zoo failed: exit 1, saying the finished ``what`` are kept for a resume."""
    console.print(f"[bold red]failed[/]: {err}\nfinished {what} are kept; run the same command again to resume")
    raise typer.Exit(code=1)


_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "disk I/O error",
}


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


class Commands(typer.core.TyperGroup):
    """Every command: a full disk or an unwritable file is one line on stderr and exit 1, not a traceback;
    every command (of sub-apps too) also takes ``-v/--verbose`` and ``-q/--quiet`` (see :func:`add_log_options`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        add_log_options(self)

    def invoke(self, ctx):
        # As under `python -m`: a plug-in named `module:attr` may be a module of the directory the command runs in.
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            return super().invoke(ctx)
        except Exception as err:
            message = storage_error_message(err)
            if message is None:
                raise
            console.print(f"[bold red]error[/]: {escape(message)}", highlight=False)
            raise typer.Exit(code=1) from None


def need_writable(directory: Path, what: str, hint: str = "") -> None:
    """Exit 1 before any work when ``directory`` (or the ancestor that would create it) is not writable."""
    import os

    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        console.print(
            f"[bold red]error[/]: cannot write {what}: {escape(str(existing))} is read-only{escape(hint)}",
            highlight=False,
        )
        raise typer.Exit(code=1)


# --- options shared by several commands (checked by click: a bad value is a usage error, exit 2, before any work)


class Executor(str, Enum):
    """``prunezoo.experiments.executors.EXECUTORS`` (listed here without importing torch)."""

    local = "local"
    ray = "ray"


ExecutorOption = Annotated[Executor, typer.Option(help="local (process pool) or ray")]
WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="parallel jobs (default: CPU cores); 1 = in this process")
]
ThreadsOption = Annotated[
    int, typer.Option(min=1, help="torch threads per job (fixed so results do not depend on parallelism)")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress output; log warnings and errors only")]
LogToOption = Annotated[
    str | None,
    typer.Option(
        "--log-to",
        help="also send results to tracker sinks, comma-separated: tensorboard, mlflow, wandb (added to the "
        "config's logging.sinks; settings: --set logging.options.mlflow_uri=...). Not part of the config hash",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="where jobs compute: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps; "
        "default: the config's (auto). Not part of the config hash",
    ),
]
OutOption = Annotated[Path, typer.Option("--out", help="root directory holding the run store")]
RunsOutOption = Annotated[Path, typer.Option("--out", help="root directory for run directories")]
StudyArgument = Annotated[str, typer.Argument(help="study directory, or study id / unique prefix in the run store")]


def sink_names(log_to: str | None, field: str = "--log-to") -> list[str]:
    """The sink names of ``--log-to a,b`` (checked: an unknown one is an error exit naming it)."""
    if not log_to:
        return []
    from prunezoo.tracking import check_sink_names

    try:
        return check_sink_names([n.strip() for n in log_to.split(",") if n.strip()], field)
    except ConfigError as err:
        fail(err)


def with_sinks(cfg, log_to: str | None):
    """``cfg`` (a study config) with the sinks of ``--log-to`` added to its ``logging.sinks`` (same hash)."""
    extra = sink_names(log_to)
    if not extra:
        return cfg
    logging_cfg = cfg.logging.model_copy(update={"sinks": list(dict.fromkeys([*cfg.logging.sinks, *extra]))})
    return cfg.model_copy(update={"logging": logging_cfg})


# --- the run store (read-only)


def open_store(out_dir: Path):
    """The run store under ``out_dir``, opened read-only (works on read-only media); a missing or unreadable
    store is an error exit (code 2), not a traceback."""
    from prunezoo.experiments.store import RunStore
    from prunezoo.experiments.study import STORE_NAME

    path = out_dir / STORE_NAME
    if not path.is_file():
        fail(ConfigError("--out", f"no run store at {path}; run a study first"))
    return _CheckedStore(lambda: RunStore(path, readonly=True), path)


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
            fail(ConfigError("--out", f"{self._path} is not a readable prunezoo run store ({cause})"))

    def __getattr__(self, name: str):
        attr = getattr(self._store, name)
        return (lambda *a, **k: self._guard(attr, *a, **k)) if callable(attr) else attr


def resolve_study(store, study: str, field: str = "study") -> str:
    """The study id that ``study`` (an id or a unique prefix) names in ``store``; else an error exit naming
    ``field``."""
    try:
        return store.resolve(study)
    except KeyError as err:
        fail(ConfigError(field, str(err.args[0])))


def study_dir(study: str, out_dir: Path) -> Path:
    """A finished study's directory: ``study`` is the directory itself, or a study id / prefix in the store."""
    directory = Path(study)
    if (directory / "results.json").exists():
        return directory
    store = open_store(out_dir)
    study_id = resolve_study(store, study)
    directory = Path(store.studies().set_index("study_id").loc[study_id, "path"])
    if not (directory / "results.json").exists():
        fail(ConfigError("study", f"{study_id} is not complete yet (no {directory / 'results.json'})"))
    return directory


# --- the accuracy-vs-sparsity results (``run`` and ``runs show``)


class TableFormat(str, Enum):
    """How ``run`` and ``runs show`` print the results: a terminal table, or CSV/JSON for scripts."""

    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[
    TableFormat,
    typer.Option("--format", help="table (terminal), csv or json (every summary field, fractions not %, for scripts)"),
]
RecordsFormatOption = Annotated[
    TableFormat, typer.Option("--format", help="table (terminal), csv or json (every field, for scripts)")
]
SUMMARY_FIELDS = (
    "point",
    "method",
    "kind",
    "level",
    "target_sparsity",
    "n",
    "sparsity",
    "test_acc",
    "test_acc_std",
    "test_acc_ci95_low",
    "test_acc_ci95_high",
    "val_acc",
    "train_loss",
    "nnz",
    "compression",
    "flops_sparse",
    "flop_speedup",
)


def results_text(rows: list[dict], fmt: TableFormat) -> str:
    """The summary rows behind :func:`results_table` as CSV or JSON (NaN written as empty / null)."""
    import csv
    import io
    import json
    import math

    from prunezoo.experiments.summary import summarize

    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    records = [{k: clean(r.get(k)) for k in SUMMARY_FIELDS} for r in summarize(rows)]
    if fmt is TableFormat.json:
        return json.dumps(records, indent=1, allow_nan=False)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue().rstrip("\n")


def print_results(rows: list[dict], title: str, fmt: TableFormat) -> None:
    """The results on stdout: a rich table, or plain CSV/JSON text."""
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
    cells: dict[str, list[str]] = {
        c: []
        for c in (["point"] if multi else [])
        + ["method", "level", "sparsity", "test acc", "n", "nnz", "compression", "FLOPs (sparse)", "FLOP speed-up"]
    }
    for r in summary:
        level = r["level"]
        values = {
            "point": r["point"],
            "method": r["method"],
            "level": str(int(level)) if level is not None and level == level else "",
            "sparsity": f"{r['sparsity']:.2%}",
            "test acc": f"{r['test_acc']:.2%}" + (f" ± {r['test_acc_std']:.2%}" if r["n"] > 1 else ""),
            "n": str(r["n"]),
            "nnz": f"{int(round(r['nnz'])):,}",
            "compression": f"{r['compression']:.1f}x",
            "FLOPs (sparse)": f"{int(round(r['flops_sparse'])):,}",
            "FLOP speed-up": f"{r['flop_speedup']:.2f}x",
        }
        for col in cells:
            cells[col].append(values[col])
    table = fitted_table(cells, title=title, text_cols=("point", "method"), droppable=_DROPPABLE, width=width)
    if table.caption:
        table.caption += " (all columns: --format csv or json)"
    return table


def fitted_table(
    cells: dict[str, list[str]],
    *,
    title: str = "",
    text_cols: tuple[str, ...] = (),
    droppable: tuple[str, ...] = (),
    width: int | None = None,
    caption: str | None = None,
) -> Table:
    """A table whose numbers are never cut: numeric columns are as wide as their longest value; when
    it would not fit in ``width`` (default: the terminal's) the ``droppable`` columns go first (named in
    the caption) and the ``text_cols`` fold onto several lines."""
    cells = dict(cells)

    def need(col: str, wrap_header: bool) -> int:  # values never wrap; names may fold (counted at <= 12)
        longest = max(map(len, cells[col]), default=0)
        head = max(map(len, col.split())) if wrap_header else len(col)
        return max(min(longest, 12) if col in text_cols else longest, head)

    max_width = width if width is not None else out.width

    def fits(wrap: bool) -> bool:  # + padding and rules
        return sum(need(c, wrap) + 3 for c in cells) + 1 <= max_width

    dropped: list[str] = []
    for col in droppable:
        if fits(True):
            break
        if col in cells:
            del cells[col]
            dropped.append(col)
    wrap_header = not fits(False)  # one-line headers when there is room for them
    table = Table(title=title)
    for col in cells:
        if col in text_cols:
            table.add_column(col, justify="left", overflow="fold")
        else:
            table.add_column(col, justify="right", width=need(col, wrap_header), overflow="fold")
    for i in range(max((len(v) for v in cells.values()), default=0)):
        table.add_row(*(cells[c][i] for c in cells))
    notes = [caption] if caption else []
    if dropped:
        notes.append(f"not shown at this width: {', '.join(dropped)}")
    table.caption = "; ".join(notes) or None
    return table


# --- logging: the ``prunezoo`` logger (library code logs, never prints; the CLI alone sets handlers)

LOGGER = "prunezoo"


class _StderrHandler(logging.StreamHandler):
    """Plain lines on whatever ``sys.stderr`` is at the time (pipes, CI logs, test runners swapping it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """One handler on the ``prunezoo`` logger: rich on a terminal, plain lines otherwise; then ``level``."""
    logger = logging.getLogger(LOGGER)
    tty = sys.stderr.isatty()
    mine = [h for h in logger.handlers if getattr(h, "prunezoo_cli", None) is not None]
    if not mine or getattr(mine[0], "prunezoo_cli", None) != tty:
        for h in mine:
            logger.removeHandler(h)
        if tty:
            from rich.logging import RichHandler

            handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
        else:
            handler = _StderrHandler()
        handler.prunezoo_cli = tty  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def _log_flag(level: int):
    def callback(ctx, param, value):
        if value:  # a flag left off leaves the level as the root options set it
            configure_logging(level)
        return value

    return callback


def _log_params() -> dict:
    """``-v/--verbose`` and ``-q/--quiet`` as typer builds them (the same parameter classes as every option),
    setting the log level when given instead of passing a value to the command."""

    def probe(
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
    ) -> None: ...

    app = typer.Typer()
    app.command()(probe)
    params = {p.name: p for p in typer.main.get_command(app).params}
    for name, level in (("verbose", logging.DEBUG), ("quiet", logging.WARNING)):
        params[name].expose_value = False
        params[name].callback = _log_flag(level)
    return params


def add_log_options(group) -> None:
    """``-v/--verbose`` (DEBUG) and ``-q/--quiet`` (warnings and errors only) on every command of ``group``
    and its sub-groups; a command with its own ``--quiet`` (no progress bars) keeps it, and it quiets the
    log too."""
    params = _log_params()
    for command in group.commands.values():
        if hasattr(command, "commands"):  # a sub-app
            add_log_options(command)
            continue
        flags = {opt for p in command.params for opt in getattr(p, "opts", [])}
        if not flags & {"-v", "--verbose"}:
            command.params.append(params["verbose"])
        own_quiet = next((p for p in command.params if "--quiet" in getattr(p, "opts", [])), None)
        if own_quiet is not None:
            if own_quiet.callback is None:
                own_quiet.callback = _log_flag(logging.WARNING)
        elif "-q" not in flags:
            command.params.append(params["quiet"])


# --- records as a table, CSV or JSON (``--format``)


def plain(value):
    """A JSON/CSV-safe value: NaN -> None, numpy scalars -> Python, paths -> str."""
    import math

    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def frame_records(df) -> list[dict]:
    """A DataFrame's rows as plain dicts (NaN as None): what ``--format json`` prints and ``runs export
    x.json`` writes."""
    return [{k: plain(v) for k, v in rec.items()} for rec in df.to_dict("records")]


def records_text(records: list[dict], fmt: TableFormat, fields: list[str] | None = None) -> str:
    """``records`` as JSON (a list of objects) or CSV (``fields``: the columns, default: every key in order)."""
    import csv
    import io
    import json

    rows = [{k: plain(v) for k, v in r.items()} for r in records]
    if fmt is TableFormat.json:
        return json.dumps(rows, indent=1, allow_nan=False, default=str)
    columns = fields or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()})
    return buf.getvalue().rstrip("\n")


def print_records(records: list[dict], fmt: TableFormat | str, table, fields: list[str] | None = None) -> None:
    """``records`` on stdout: ``table()`` (a rich renderable) for ``table``, else plain CSV/JSON text."""
    fmt = TableFormat(fmt)
    if fmt is TableFormat.table:
        out.print(table())
    else:  # plain stdout: rich would wrap long lines and read [brackets] as markup
        typer.echo(records_text(records, fmt, fields))
