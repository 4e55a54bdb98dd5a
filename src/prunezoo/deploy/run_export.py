"""Sparse export of a study's finished run: the model rebuilt from its job spec, its final (masked)
weights exported with :func:`~prunezoo.deploy.sparse_export`, and its latency measured against
the same weights on dense kernels — what ``prunezoo export <run> --sparse`` and study methods with
``sparse_export: true`` use.

Both sides get the deployment treatment structured rows are timed with (BN folded, channels-last
for 2-D CNNs, :func:`prunezoo.structured.deploy`), then are timed in alternating pairs with one
thread (:func:`prunezoo.structured.compare_latency`): a row's ``latency_speedup`` compares the
same weights on sparse vs dense kernels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from prunezoo.errors import ConfigError


def _weights_file(directory: Path, suffix: str) -> Path:
    if suffix.startswith("/L"):  # imp level rows: level_XX/final.safetensors
        return directory / f"level_{int(suffix[2:]):02d}" / "final.safetensors"
    return directory / "final.safetensors"


def export_model(model: nn.Module, example: torch.Tensor, *, threads: int = 1,
                 repeats: int = 20) -> tuple[nn.Module, dict]:
    """``(sparse export, latency record)`` of a model whose zeros are its pruning."""
    from prunezoo.deploy.sparse import sparse_export, sparse_layer_count
    from prunezoo.structured import compare_latency, deploy

    dense = deploy(model)
    exported = sparse_export(deploy(model), example_input=example, threads=threads)
    timing = compare_latency(dense, exported, example, repeats=repeats, threads=threads)
    record = {"latency_ms": timing["candidate_ms"], "latency_dense_ms": timing["baseline_ms"],
              "latency_speedup": timing["speedup"], "sparse_layers": sparse_layer_count(exported),
              "latency_batch": int(example.shape[0]), "latency_threads": threads}
    return exported, record


def add_sparse_latency(ctx, result: dict, batch: int = 32) -> dict:
    """Add ``latency_ms``/``latency_dense_ms``/``latency_speedup`` to every row of a job result,
    and each row's per-layer export record under ``result["sparse_export"]``."""
    from prunezoo.training.checkpoint import load_state

    example = ctx.score_batches(1)[0][0][:batch]
    reports = {}
    for row in result["rows"]:
        model = ctx.build_model()
        model.load_state_dict(load_state(_weights_file(ctx.directory, row["suffix"])))
        exported, record = export_model(model, example)
        row.update(record)
        reports[row["suffix"]] = exported.deploy_report
    result["sparse_export"] = reports
    return result


def export_run(run_dir: str | Path, out: str | Path | None = None, *, batch: int = 1, threads: int = 1,
               level: int | None = None) -> dict:
    """Export a finished run directory (``job.json`` + ``final.safetensors``) to ``out`` (a whole-module
    ``torch.save`` file, load with ``torch.load(path, weights_only=False)``) plus ``<out>.json``
    (per-layer formats and measured latency). ``level`` picks an IMP level. Returns the record."""
    from prunezoo.experiments.jobs import JobContext
    from prunezoo.training.checkpoint import load_state

    run_dir = Path(run_dir)
    job_file = run_dir / "job.json"
    if not job_file.exists():
        raise ConfigError("run", f"{run_dir} is not a run directory (no job.json)")
    job = json.loads(job_file.read_text())
    if job.get("kind") == "structured":
        raise ConfigError("run", f"{run_dir} is a structured run: its compacted model is already dense-fast "
                                 "(see compact/); sparse export is for masked runs")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError("--batch", f"must be a positive integer, got {batch!r}")
    suffix = f"/L{level:02d}" if level is not None else ""
    weights = _weights_file(run_dir, suffix)
    if not weights.exists():
        hint = " (an imp run: pass --level)" if job.get("kind") == "imp" and level is None else ""
        raise ConfigError("run", f"no final weights at {weights}{hint}")
    ctx = JobContext(job["spec"], run_dir, run_dir.parent)
    model = ctx.build_model()
    model.load_state_dict(load_state(weights))
    example = ctx.score_batches(1)[0][0][:batch]
    exported, record = export_model(model, example, threads=threads)
    out = Path(out) if out is not None else run_dir / ("sparse-export" + suffix.replace("/", "-") + ".pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    from prunezoo.utils.io import atomic_path, write_json

    with atomic_path(out) as tmp:
        torch.save(exported, tmp)
    record = {"run": str(run_dir), "weights": str(weights), "out": str(out), **record,
              "deploy_report": exported.deploy_report}
    write_json(Path(f"{out}.json"), record)
    return record
