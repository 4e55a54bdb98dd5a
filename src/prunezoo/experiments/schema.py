"""The result row of a study: one definition for every runner, the run store, ``results.csv`` and the report.

Each field has a name, an SQLite type (the store's ``results`` column), a description and a unit.
:data:`ROW_FIELDS` (CSV header, row keys) and :data:`RESULT_COLUMNS` (store columns) derive from it,
so a new metric is added here once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResultField:
    name: str
    sql_type: str  # "TEXT" | "INTEGER" | "REAL"
    description: str
    unit: str = ""
    required: bool = False  # NOT NULL in the store


RESULT_SCHEMA: tuple[ResultField, ...] = (
    ResultField("method", "TEXT", "method name from the study config", required=True),
    ResultField("kind", "TEXT", "method kind (dense, oneshot, imp, ...)"),
    ResultField("level", "INTEGER", "pruning level (IMP round; 0 for one-level methods)"),
    ResultField("target_sparsity", "REAL", "requested fraction of prunable weights removed", "fraction"),
    ResultField("sparsity", "REAL", "measured fraction of prunable weights that are zero", "fraction"),
    ResultField("nnz", "INTEGER", "non-zero prunable weights", "weights"),
    ResultField("prunable", "INTEGER", "prunable weights in total", "weights"),
    ResultField("compression", "REAL", "prunable / nnz", "x"),
    ResultField("test_acc", "REAL", "test accuracy", "fraction"),
    ResultField("test_loss", "REAL", "test cross-entropy", "nats"),
    ResultField("train_loss", "REAL", "training loss of the last epoch (running mean)", "nats"),
    ResultField("val_acc", "REAL", "validation accuracy", "fraction"),
    ResultField("test_ece", "REAL", "test expected calibration error", "fraction"),
    ResultField("train_eval_acc", "REAL", "accuracy on the training split, evaluated after training", "fraction"),
    ResultField("memorization", "REAL", "accuracy on the noisy-label training samples", "fraction"),
    ResultField("train_eval_ece", "REAL", "calibration error on the training split", "fraction"),
    ResultField("train_flops", "REAL", "FLOPs spent in training", "FLOPs"),
    ResultField("flops_dense", "INTEGER", "inference FLOPs of the dense model, per sample", "FLOPs"),
    ResultField("flops_sparse", "INTEGER", "inference FLOPs of the pruned model, per sample", "FLOPs"),
    ResultField("flop_speedup", "REAL", "flops_dense / flops_sparse", "x"),
    ResultField("latency_ms", "REAL", "measured inference latency of the pruned model", "ms"),
    ResultField("latency_dense_ms", "REAL", "measured inference latency of the dense model", "ms"),
    ResultField("latency_speedup", "REAL", "latency_dense_ms / latency_ms", "x"),
    ResultField("seed", "INTEGER", "replicate seed"),
    ResultField("point", "TEXT", "sweep point (empty without a sweep)"),
    ResultField("run_id", "TEXT", "run id: job id plus level suffix"),
    ResultField("test_noisy_acc", "REAL", "accuracy on the noisy test split", "fraction"),
    ResultField("recipe", "TEXT", "sparse transfer recipe (dense, extended, gradual-unfreeze)"),
    ResultField("best_epoch", "INTEGER", "epoch reported (early stopping: best validation epoch, 1-based)"),
    ResultField("stopped_epoch", "INTEGER", "epoch training stopped at (early stopping with patience; else empty)"),
)

ROW_FIELDS: list[str] = [f.name for f in RESULT_SCHEMA]
RESULT_COLUMNS: list[str] = ROW_FIELDS  # the store's result columns, after (study_id, row_index)
FIELDS_BY_NAME: dict[str, ResultField] = {f.name: f for f in RESULT_SCHEMA}


def sql_column(field: ResultField) -> str:
    """The column definition of ``field`` in the store's ``results`` table."""
    return f"{field.name} {field.sql_type}" + (" NOT NULL" if field.required else "")


def result_row(values: dict) -> dict:
    """``values`` restricted to the schema, in schema order (absent fields None)."""
    return {k: values.get(k) for k in ROW_FIELDS}


__all__ = ["FIELDS_BY_NAME", "RESULT_COLUMNS", "RESULT_SCHEMA", "ROW_FIELDS", "ResultField", "result_row", "sql_column"]
