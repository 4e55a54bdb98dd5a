"""``prunezoo runs ls/show/export``: queries of the run store (``<out>/index.sqlite``), opened read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prunezoo.cli.common import (
    FormatOption,
    OutOption,
    RecordsFormatOption,
    TableFormat,
    fail,
    frame_records,
    open_store,
    out,
    print_records,
    print_results,
    records_text,
    resolve_study,
)
from prunezoo.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Query the run store (<out>/index.sqlite).")


@app.command("ls")
def runs_ls(out_dir: OutOption = Path("runs"), fmt: RecordsFormatOption = "table") -> None:
    """List indexed studies (json/csv: every column of the store's studies table)."""
    records = frame_records(open_store(out_dir).studies())

    def table() -> Table:
        table = Table(title=f"studies in {out_dir}")
        for col in ("study_id", "status", "path"):
            table.add_column(col)
        for rec in records:
            table.add_row(rec["study_id"], rec["status"], rec["path"])
        return table

    print_records(records, fmt, table)


@app.command("show")
def runs_show(
    study: Annotated[str, typer.Argument(help="study id, or a unique prefix of it or of its config hash")],
    out_dir: OutOption = Path("runs"),
    fmt: FormatOption = "table",
) -> None:
    """Print a study's accuracy-vs-sparsity table."""
    store = open_store(out_dir)
    study_id = resolve_study(store, study)
    print_results(store.results(study_id).to_dict("records"), study_id, TableFormat(fmt))


@app.command("export")
def runs_export(
    path: Annotated[Path, typer.Argument(help="output file: .csv, .json or .parquet")],
    study: Annotated[str | None, typer.Option(help="only this study (id or prefix)")] = None,
    out_dir: OutOption = Path("runs"),
) -> None:
    """Export result rows of all (or one) studies to CSV, JSON (a list of row objects, NaN as null) or Parquet."""
    from prunezoo.utils.io import atomic_path

    if path.suffix not in (".csv", ".json", ".parquet"):
        fail(ConfigError("path", f"unsupported export format {path.suffix!r}; use .csv, .json or .parquet"))
    if not path.parent.is_dir():
        fail(ConfigError("path", f"{path.parent} is not a directory"))
    store = open_store(out_dir)
    study_id = resolve_study(store, study, "--study") if study else None
    df = store.results(study_id)
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif path.suffix == ".json":
            Path(tmp).write_text(records_text(frame_records(df), TableFormat.json) + "\n", encoding="utf-8")
        else:
            try:
                df.to_parquet(tmp, index=False)
            except ImportError:
                fail(ConfigError("path", "Parquet export needs pyarrow: pip install 'prunezoo[parquet]'"))
    out.print(f"wrote {len(df)} rows to {path}")
