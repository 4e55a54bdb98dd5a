"""Criterion quality on a study's own model: Spearman correlation of each pruning criterion's
scores with the oracle (the true loss change of removing each weight or unit, see
``prunezoo.criteria.oracle``), measured on the dense run's final (or initial) weights.

``prunezoo criteria-quality <study>`` (``prunezoo.cli.quality``) runs it from the command line and writes
``<study>/criteria-quality.json``. The oracle is computed once and shared by all criteria; every
criterion and the oracle see the same training batches (the first ``batches`` batches of the
dense run's data order), so data-dependent criteria are scored on exactly the data that defines ΔL.
"""

from __future__ import annotations

import json
from pathlib import Path

from prunezoo.errors import ConfigError

STATES = ("final", "init")


def _dense_job(study_dir: Path, seed: int | None) -> Path:
    rows = json.loads((study_dir / "results.json").read_text())["rows"]
    dense = [r for r in rows if r["method"] == "dense" and (seed is None or r["seed"] == seed)]
    if not dense:
        raise ConfigError("seed", f"no dense run for seed {seed} in {study_dir}")
    return study_dir / "runs" / dense[0]["run_id"]


def study_criteria_quality(
    study_dir: str | Path,
    criteria: list[str] | None = None,
    *,
    state: str = "final",
    units: str = "weight",
    max_items: int | None = 200,
    batches: int = 4,
    seed: int | None = None,
) -> dict:
    """``{"criteria": {name: {"spearman", "layers", "items"}}, ...settings}`` for the dense model of
    ``study_dir`` (first seed unless ``seed``); ``state="init"`` scores the initial weights (the
    setting of SNIP/GraSP/SynFlow). Also written to ``<study>/criteria-quality.json``."""
    import torch

    from prunezoo.criteria import CRITERIA, criterion_quality, oracle_scores
    from prunezoo.experiments.jobs import JobContext
    from prunezoo.training.checkpoint import load_state
    from prunezoo.utils.io import write_json

    study_dir = Path(study_dir)
    if state not in STATES:
        raise ConfigError("state", f"must be one of {', '.join(STATES)}, got {state!r}")
    if batches < 1:
        raise ConfigError("batches", f"must be >= 1, got {batches}")
    criteria = list(criteria) if criteria else sorted(CRITERIA)
    if unknown := [c for c in criteria if c not in CRITERIA]:
        raise ConfigError(
            "criteria",
            f"unknown criteria {unknown}; known: {sorted(CRITERIA)} (movement needs a "
            "training trajectory and has no oracle comparison here)",
        )
    job_dir = _dense_job(study_dir, seed)
    job = json.loads((job_dir / "job.json").read_text())
    ctx = JobContext(job["spec"], job_dir, study_dir / "runs")
    model = ctx.build_model()
    model.load_state_dict(load_state(job_dir / f"{state}.safetensors"))
    data = ctx.score_batches(batches)
    oracle = oracle_scores(
        model, data, units=units, max_items=max_items, generator=torch.Generator().manual_seed(ctx.seed)
    )
    out = {
        "study": str(study_dir),
        "run_id": job_dir.name,
        "seed": ctx.seed,
        "state": state,
        "units": units,
        "max_items": max_items,
        "batches": batches,
        "samples": sum(len(y) for _, y in data),
        "criteria": {},
    }
    for name in criteria:
        out["criteria"][name] = criterion_quality(model, name, data, units=units, oracle=oracle, seed=ctx.seed)
    write_json(study_dir / "criteria-quality.json", out)
    return out
