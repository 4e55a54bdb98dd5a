"""A study as a graph of jobs: sweep points × seeds × methods (× sparsities / branches).

A job is plain JSON (it crosses process and Ray boundaries). Its id is ``<kind>-<hash>`` where the
hash covers only what determines its result, each section dumped without defaults, so renaming a
method, adding a sweep point or adding an option with a no-op default reuses finished jobs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from prunezoo.experiments.config import MethodConfig, StudyConfig
from prunezoo.methods import Planner
from prunezoo.training.config import UNHASHED_TRAINING_FIELDS


@dataclass(frozen=True)
class Job:
    id: str
    kind: str  # dense, a method kind's name, or another job kind it runs (imp: branch)
    label: str  # human readable: "gm@0.9 seed=0 [training.lr=0.1]"
    method: str  # result-row method name ("dense", "gm", "imp/reinit")
    point: str
    seed: int
    spec: dict[str, Any]
    deps: tuple[str, ...] = field(default=())
    # The module defining the job's method kind when it is not a built-in one (not hashed): a spawned
    # or Ray worker imports it, so a kind registered outside the package runs there too.
    module: str = ""
    # Tracker sinks of the study (``logging`` section; not hashed, absent when none): the worker running
    # the job opens them (prunezoo.tracking).
    tracking: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not data["tracking"]:
            del data["tracking"]  # plan.json and job.json as before when no sink is configured
        return data


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def _cause(spec: dict[str, Any]) -> dict[str, Any]:
    # UNHASHED_TRAINING_FIELDS (training, finetune...) say how a run is carried out, not what a
    # job computes: a study resumed with another value reuses its finished jobs
    return {
        k: {kk: vv for kk, vv in v.items() if kk not in UNHASHED_TRAINING_FIELDS} if isinstance(v, dict) else v
        for k, v in spec.items()
    }


def _method_spec(method: MethodConfig) -> dict[str, Any]:
    # The name is a label, not a cause: excluded so renaming reuses results.
    return method.model_dump(mode="json", exclude_defaults=True, exclude={"name", "branches", "sparsities"})


def _job_adder(jobs: list[Job], point: str, tag: str, base: dict, seed: int) -> Callable[..., Job]:
    """The ``add`` a :class:`Planner` calls: one job of this sweep point and seed, appended to ``jobs``."""

    def add(kind: str, method: str, label: str, spec: dict, deps: tuple[str, ...] = (), module: str = "") -> Job:
        full = {"kind": kind, "seed": seed, **base, **spec}
        label_full = f"{label} seed={seed}{tag}"
        job = Job(f"{kind}-{_digest(_cause(full))}", kind, label_full, method, point, seed, full, deps, module)
        jobs.append(job)
        return job

    return add


def plan_study(cfg: StudyConfig) -> list[Job]:
    jobs: list[Job] = []
    for point, pcfg in cfg.points():
        tag = f" [{point}]" if point else ""
        base = {
            "dataset": pcfg.dataset.model_dump(mode="json", exclude_defaults=True),
            "model": pcfg.model.model_dump(mode="json", exclude_defaults=True),
            "training": pcfg.training.model_dump(mode="json", exclude_defaults=True),
        }
        if runtime := pcfg.hashed_runtime():  # precision etc. change results; the device does not (not in ids)
            base["runtime"] = runtime
        finetune = pcfg.finetune.model_dump(mode="json", exclude_defaults=True)
        for seed in cfg.seeds:
            add = _job_adder(jobs, point, tag, base, seed)
            dense = add("dense", "dense", "dense", {})
            for m in pcfg.methods:  # each kind plans its own jobs (from dense or from init, which targets)
                module = type(m.method_kind).__module__
                add_m = add if module.startswith("prunezoo.") else functools.partial(add, module=module)
                m.method_kind.plan(m, Planner(add_m, dense.id, finetune, _method_spec(m)))
    # Jobs with equal ids (e.g. the dense run when a sweep axis only touches fine-tuning) appear once
    # per sweep point here so each point gets its rows; executors run each id once.
    return jobs


def unique_jobs(jobs: list[Job]) -> list[Job]:
    first: dict[str, Job] = {}
    for job in jobs:
        first.setdefault(job.id, job)
    return list(first.values())
