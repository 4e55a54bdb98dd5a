"""Sparse export of a study's finished run: the model rebuilt from its job spec, its final (masked)
weights exported with :func:`~prunezoo.deploy.sparse_export`, and its latency measured against
the same weights on dense kernels — what study methods with ``sparse_export: true`` use, and
``prunezoo export <run> --sparse`` through :func:`prunezoo.experiments.export.export_run`.

Both sides get the deployment treatment structured rows are timed with (BN folded, channels-last
for 2-D CNNs, :func:`prunezoo.structured.deploy`), then are timed in alternating pairs with one
thread (:func:`prunezoo.structured.compare_latency`): a row's ``latency_speedup`` compares the
same weights on sparse vs dense kernels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunezoo.deploy.sparse import sparse_export, sparse_layer_count
from prunezoo.structured import compare_latency, deploy
from prunezoo.training.checkpoint import load_state


def weights_file(directory: Path, suffix: str = "") -> Path:
    """The final weights of a run directory; ``suffix`` ``"/L03"`` = IMP level 3."""
    if suffix.startswith("/L"):  # imp level rows: level_XX/final.safetensors
        return directory / f"level_{int(suffix[2:]):02d}" / "final.safetensors"
    return directory / "final.safetensors"


def export_model(
    model: nn.Module, example: torch.Tensor, *, threads: int = 1, repeats: int = 20
) -> tuple[nn.Module, dict]:
    """``(sparse export, latency record)`` of a model whose zeros are its pruning."""
    dense = deploy(model)
    exported = sparse_export(deploy(model), example_input=example, threads=threads)
    timing = compare_latency(dense, exported, example, repeats=repeats, threads=threads)
    record = {
        "latency_ms": timing["candidate_ms"],
        "latency_dense_ms": timing["baseline_ms"],
        "latency_speedup": timing["speedup"],
        "sparse_layers": sparse_layer_count(exported),
        "latency_batch": int(example.shape[0]),
        "latency_threads": threads,
    }
    return exported, record


def add_sparse_latency(ctx, result: dict, batch: int = 32) -> dict:
    """Add ``latency_ms``/``latency_dense_ms``/``latency_speedup`` to every row of a job result,
    and each row's per-layer export record under ``result["sparse_export"]``."""
    example = ctx.score_batches(1)[0][0][:batch]
    reports = {}
    for row in result["rows"]:
        model = ctx.build_model()
        model.load_state_dict(load_state(weights_file(ctx.directory, row["suffix"])))
        exported, record = export_model(model, example)
        row.update(record)
        reports[row["suffix"]] = exported.deploy_report
    result["sparse_export"] = reports
    return result
