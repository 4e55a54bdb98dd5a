"""One result schema: the store's columns, the CSV header and the fields the report reads all come from it."""

import ast
import csv
import io
from pathlib import Path

from prunezoo.experiments import schema, study
from prunezoo.experiments.store import RunStore


def test_store_columns_follow_the_schema_with_its_types(tmp_path):
    store = RunStore(tmp_path / "i.sqlite")
    with store.connection() as con:
        info = con.execute("PRAGMA table_info(results)").fetchall()
    cols = [(r[1], r[2], bool(r[3])) for r in info]
    assert cols[:2] == [("study_id", "TEXT", True), ("row_index", "INTEGER", True)]
    assert cols[2:] == [(f.name, f.sql_type, f.required) for f in schema.RESULT_SCHEMA]
    assert store.results().columns.tolist()[2:] == schema.ROW_FIELDS


def test_csv_header_and_rows_are_the_schema_fields():
    row = {"method": "gm", "test_acc": 0.5, "not_a_field": 1}
    text = study.rows_to_csv([schema.result_row(row)])
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == schema.ROW_FIELDS == study.ROW_FIELDS
    assert list(schema.result_row(row)) == schema.ROW_FIELDS


def test_every_field_is_described_with_a_known_type():
    assert len(set(schema.ROW_FIELDS)) == len(schema.ROW_FIELDS)
    for f in schema.RESULT_SCHEMA:
        assert f.sql_type in ("TEXT", "INTEGER", "REAL") and f.description, f


def _fields_read_by(path: Path) -> set[str]:
    """Result-row fields the module aggregates per group of replicates: ``g.mean("x")``, ``std``, ``values``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.args
            and node.func.attr in ("mean", "std", "values")
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def test_the_report_reads_only_schema_fields():
    import prunezoo.analysis.report as report

    read = _fields_read_by(Path(report.__file__))
    assert {"test_acc", "compression", "flop_speedup"} <= read  # the scan sees the results table
    assert read <= set(schema.ROW_FIELDS), read - set(schema.ROW_FIELDS)
