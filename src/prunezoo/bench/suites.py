"""Benchmark suites: a fair method comparison, generated as an ordinary study config.

A suite names the data, model, training and fine-tuning budget, the operating points (compression
ratios) and the methods to compare. :func:`build_study` turns it into a :class:`StudyConfig` that

- shares one dense checkpoint per seed between every method that starts from a trained model
  (oneshot, structured, vd) — the study planner's dense job, checked by :func:`check_fairness`;
- gives every method the same data, training config and fine-tuning budget (one ``finetune`` block
  for the whole study; per-method epoch/step options are rejected);
- prunes at every operating point: unstructured sparsity ``1 - 1/c``; structured methods remove a
  channel fraction ``1 - 1/sqrt(c)`` (weights of a layer scale with in × out channels); IMP prunes
  ``fraction`` per level (default 0.5, so levels 1..5 are exactly compression 2..32);
- always includes the baselines: random and global + layer-wise magnitude (channel random / L1
  layer-wise / L1 global for structured suites), added when the suite does not already have them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator

from prunezoo.errors import ConfigError
from prunezoo.experiments.config import (
    DataConfig,
    ModelConfig,
    SafeName,
    StudyConfig,
    format_validation_error,
    read_yaml_mapping,
)
from prunezoo.methods.base import method_kind_of
from prunezoo.methods.imp import IMP
from prunezoo.methods.registry import job_kind
from prunezoo.training.config import TrainingConfig
from prunezoo.training.runtime import RuntimeFields

SUITE_DIR = Path(__file__).parent / "suites"
MIN_OPERATING_POINTS = 5
MIN_SEEDS = 3
IMP_DEFAULT_FRACTION = IMP.bench_fraction
# Options that would give one method its own training budget (unfair by construction).
BUDGET_OPTIONS = ("epochs", "steps", "finetune_epochs", "finetune_steps")

UNSTRUCTURED_BASELINES = (
    {"name": "random", "kind": "oneshot", "criterion": "random", "scheme": "uniform"},
    {"name": "magnitude-global", "kind": "oneshot", "criterion": "magnitude", "scheme": "global"},
    {"name": "magnitude-layerwise", "kind": "oneshot", "criterion": "magnitude", "scheme": "uniform"},
)
STRUCTURED_BASELINES = (
    {"name": "channels-random", "kind": "structured", "criterion": "random"},
    {"name": "channels-l1-layerwise", "kind": "structured", "criterion": "l1"},
    {"name": "channels-l1-global", "kind": "structured", "criterion": "l1", "options": {"scope": "global"}},
)


class BenchSuite(RuntimeFields):
    """A benchmark suite (YAML). ``methods`` are study methods without ``sparsities``/``levels``. The runtime
    fields (:class:`RuntimeFields`) are the study's: every method runs with the same one, like the same budget."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: SafeName
    description: str = ""
    seed: int = Field(0, ge=0)
    seeds: int = Field(MIN_SEEDS, ge=MIN_SEEDS, description=f"replicates (>= {MIN_SEEDS}, for a t-interval)")
    compressions: list[float] = Field(default_factory=lambda: [2.0, 4.0, 8.0, 16.0, 32.0])
    dataset: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    finetune: TrainingConfig = Field(default_factory=lambda: TrainingConfig(epochs=3, lr=0.01))
    methods: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("compressions")
    @classmethod
    def _points(cls, v: list[float]) -> list[float]:
        if len(set(v)) < MIN_OPERATING_POINTS:
            raise ValueError(f"a fair benchmark needs >= {MIN_OPERATING_POINTS} distinct compressions, got {v}")
        bad = [c for c in v if not c > 1]
        if bad:
            raise ValueError(f"compressions must be > 1 (params before / nonzero after), got {bad}")
        return sorted(set(v))

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, m in enumerate(v):
            if not isinstance(m, dict) or "name" not in m or "kind" not in m:
                raise ValueError(f"methods[{i}] needs at least 'name' and 'kind'")
            if "sparsities" in m:
                raise ValueError(f"methods[{i}] ({m['name']}): sparsities come from the suite's compressions")
            budget = [k for k in (m.get("options") or {}) if k in BUDGET_OPTIONS]
            if budget:
                raise ValueError(
                    f"methods[{i}] ({m['name']}): options {budget} would give this method its own "
                    "training budget; set training/finetune for the whole suite"
                )
        return v


def bundled_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SUITE_DIR.glob("*.yaml"))}


def load_suite(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> BenchSuite:
    """A bundled suite by name, or a suite YAML file; ``overrides`` replace top-level fields."""
    path = Path(name_or_path)
    if not path.suffix:
        known = bundled_suites()
        if str(name_or_path) not in known:
            raise ConfigError(
                "suite", f"unknown suite {str(name_or_path)!r}; bundled: {sorted(known)} (or pass a YAML file)"
            )
        path = known[str(name_or_path)]
    data = read_yaml_mapping(path, "suite")
    data.setdefault("name", path.stem)
    data.update(overrides or {})
    try:
        return BenchSuite.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err) from None


def quick_suite(suite: BenchSuite) -> BenchSuite:
    """The same comparison at a smoke-test budget: one epoch of training and fine-tuning, 3 seeds."""
    return suite.model_copy(
        update={
            "name": f"{suite.name}-quick",
            "seeds": MIN_SEEDS,
            "training": suite.training.model_copy(update={"epochs": 1, "steps": None}),
            "finetune": suite.finetune.model_copy(update={"epochs": 1, "steps": None}),
        }
    )


def channel_fraction(compression: float) -> float:
    """Channels removed per layer so a conv/linear layer's weights shrink by about ``compression``."""
    return round(1 - 1 / math.sqrt(compression), 6)


def _equivalent(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("kind", "criterion", "scheme", "options")
    defaults = {"criterion": "magnitude", "scheme": "global", "options": {}}
    return all(a.get(k, defaults.get(k)) == b.get(k, defaults.get(k)) for k in keys)


def with_baselines(methods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``methods`` plus the random / magnitude baselines not already among them (by settings, not name)."""
    out = [dict(m) for m in methods]
    channels = [method_kind_of(m["kind"]).target_unit == "channels" for m in methods]
    families = [UNSTRUCTURED_BASELINES] if not all(channels) or not methods else []
    if any(channels):
        families.append(STRUCTURED_BASELINES)
    names = {m["name"] for m in out}
    for family in families:
        for base in family:
            if any(_equivalent(base, m) for m in out):
                continue
            name = base["name"] if base["name"] not in names else f"baseline-{base['name']}"
            out.append({**base, "name": name})
            names.add(name)
    return out


def baseline_names(suite: BenchSuite) -> frozenset[str]:
    """Names of the suite's methods (after :func:`with_baselines`) that are baselines."""
    bases = (*UNSTRUCTURED_BASELINES, *STRUCTURED_BASELINES)
    return frozenset(m["name"] for m in with_baselines(suite.methods) if any(_equivalent(b, m) for b in bases))


def build_study(suite: BenchSuite) -> StudyConfig:
    """The study that runs ``suite`` (baselines added, operating points filled in), validated."""
    # each kind sets its own operating points (sparsities, channel fractions, IMP levels)
    methods = [
        method_kind_of(m["kind"]).operating_points(dict(m), suite.compressions) for m in with_baselines(suite.methods)
    ]
    data = {
        "name": f"bench-{suite.name}",
        "seed": suite.seed,
        "replicates": suite.seeds,
        "dataset": suite.dataset.model_dump(mode="json"),
        "model": suite.model.model_dump(mode="json"),
        "training": suite.training.model_dump(mode="json"),
        "finetune": suite.finetune.model_dump(mode="json"),
        "methods": methods,
        **suite.model_dump(include=set(RuntimeFields.model_fields)),
    }
    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err) from None
    check_fairness(cfg)
    return cfg


def check_fairness(cfg: StudyConfig) -> None:
    """Raise :class:`ConfigError` unless the planned jobs compare methods on equal terms: per seed one
    dense job that every derived job starts from, and one data/model/training/fine-tune spec for all."""
    from prunezoo.experiments.plan import plan_study

    jobs = plan_study(cfg)
    dense = {(j.point, j.seed): j.id for j in jobs if j.kind == "dense"}
    shared = {"dataset", "model", "training"}
    first = jobs[0].spec
    finetunes = {repr(sorted(j.spec["finetune"].items())) for j in jobs if "finetune" in j.spec}
    if len(finetunes) > 1:
        raise ConfigError("finetune", f"methods would fine-tune with different budgets: {sorted(finetunes)}")
    for j in jobs:
        for key in shared:
            if j.spec[key] != first[key]:
                raise ConfigError(key, f"job {j.label} uses a different {key} than the dense control")
        parent = j.spec.get("parent")
        if job_kind(j.kind).from_dense and parent != dense[(j.point, j.seed)]:
            raise ConfigError("methods", f"job {j.label} does not start from the shared dense checkpoint")
