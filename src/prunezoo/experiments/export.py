"""``prunezoo export <run> --sparse``: a study's finished run rebuilt from its job spec, its final
(masked) weights exported to sparse kernels and timed (:func:`prunezoo.deploy.run_export.export_model`);
``--onnx``: the same model (or a structured run's compacted one) as a verified ONNX file (:func:`export_run_onnx`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from prunezoo.deploy.run_export import export_model, weights_file
from prunezoo.errors import ConfigError
from prunezoo.experiments.jobs import JobContext
from prunezoo.training.checkpoint import load_state
from prunezoo.utils.io import atomic_path, write_json


def read_job(run_dir: Path) -> dict:
    """A finished run directory's ``job.json`` (ConfigError naming ``run`` when it is none)."""
    job_file = run_dir / "job.json"
    if not job_file.exists():
        raise ConfigError("run", f"{run_dir} is not a run directory (no job.json)")
    return json.loads(job_file.read_text())


def check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError("--batch", f"must be a positive integer, got {batch!r}")


def load_run_model(run_dir: Path, job: dict, level: int | None) -> tuple[JobContext, torch.nn.Module, Path, str]:
    """``(job context, model with the run's final weights, weights file, row suffix)``; ``level``: IMP level."""
    suffix = f"/L{level:02d}" if level is not None else ""
    weights = weights_file(run_dir, suffix)
    if not weights.exists():
        hint = " (an imp run: pass --level)" if job.get("kind") == "imp" and level is None else ""
        raise ConfigError("run", f"no final weights at {weights}{hint}")
    ctx = JobContext(job["spec"], run_dir, run_dir.parent)
    model = ctx.build_model()
    model.load_state_dict(load_state(weights))
    return ctx, model, weights, suffix


def export_run(
    run_dir: str | Path, out: str | Path | None = None, *, batch: int = 1, threads: int = 1, level: int | None = None
) -> dict:
    """Export a finished run directory (``job.json`` + ``final.safetensors``) to ``out`` (a whole-module
    ``torch.save`` file, load with ``torch.load(path, weights_only=False)``) plus ``<out>.json``
    (per-layer formats and measured latency). ``level`` picks an IMP level. Returns the record."""
    run_dir = Path(run_dir)
    job = read_job(run_dir)
    if job.get("kind") == "structured":
        raise ConfigError(
            "run",
            f"{run_dir} is a structured run: its compacted model is already dense-fast "
            "(see compact/); sparse export is for masked runs",
        )
    check_batch(batch)
    ctx, model, weights, suffix = load_run_model(run_dir, job, level)
    example = ctx.score_batches(1)[0][0][:batch]
    exported, record = export_model(model, example, threads=threads)
    out = Path(out) if out is not None else run_dir / ("sparse-export" + suffix.replace("/", "-") + ".pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(exported, tmp)
    record = {
        "run": str(run_dir),
        "weights": str(weights),
        "out": str(out),
        **record,
        "deploy_report": exported.deploy_report,
    }
    write_json(Path(f"{out}.json"), record)
    return record


def export_run_onnx(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    batch: int = 1,
    level: int | None = None,
    opset: int | None = None,
) -> dict:
    """``prunezoo export <run> --onnx out.onnx``: the run's pruned model as an ONNX file verified with
    onnxruntime (:func:`prunezoo.deploy.onnx.export_onnx`, dynamic batch; the example is ``batch`` training
    inputs), plus ``<out>.json``. A masked run exports its final weights (the zeros are the pruning); a
    structured run exports its compacted model (``compact/``). Returns the record."""
    from prunezoo.deploy.onnx import export_onnx, require_onnx
    from prunezoo.structured import load_compact

    require_onnx()
    run_dir = Path(run_dir)
    job = read_job(run_dir)
    check_batch(batch)
    if job.get("kind") == "structured":
        if level is not None:
            raise ConfigError("--level", "is for imp runs; a structured run has one compacted model")
        compact_dir = run_dir / "compact"
        if not compact_dir.is_dir():
            raise ConfigError("run", f"structured run without its compacted model ({compact_dir})")
        ctx = JobContext(job["spec"], run_dir, run_dir.parent)
        model, weights, suffix = load_compact(compact_dir).to(ctx.device), compact_dir, ""
    else:
        ctx, model, weights, suffix = load_run_model(run_dir, job, level)
    example = ctx.score_batches(1)[0][0][:batch]
    out = Path(out) if out is not None else run_dir / ("model" + suffix.replace("/", "-") + ".onnx")
    record = {"run": str(run_dir), "weights": str(weights), **export_onnx(model, example, out, opset=opset)}
    write_json(Path(f"{out}.json"), record)
    return record
