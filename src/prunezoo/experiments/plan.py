"""A study as a graph of jobs: sweep points × seeds × methods (× sparsities / branches).

A job is plain JSON (it crosses process and Ray boundaries). Its id is ``<kind>-<hash>`` where the
hash covers only what determines its result, each section dumped without defaults, so renaming a
method, adding a sweep point or adding an option with a no-op default reuses finished jobs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from prunezoo.experiments.config import MethodConfig, StudyConfig


@dataclass(frozen=True)
class Job:
    id: str
    kind: str  # dense | oneshot | gmp | imp | branch
    label: str  # human readable: "gm@0.9 seed=0 [training.lr=0.1]"
    method: str  # result-row method name ("dense", "gm", "imp/reinit")
    point: str
    seed: int
    spec: dict[str, Any]
    deps: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def _method_spec(method: MethodConfig) -> dict[str, Any]:
    # The name is a label, not a cause: excluded so renaming reuses results.
    return method.model_dump(mode="json", exclude_defaults=True, exclude={"name", "branches", "sparsities"})


def plan_study(cfg: StudyConfig) -> list[Job]:
    jobs: list[Job] = []
    for point, pcfg in cfg.points():
        tag = f" [{point}]" if point else ""
        base = {
            "dataset": pcfg.dataset.model_dump(mode="json", exclude_defaults=True),
            "model": pcfg.model.model_dump(mode="json", exclude_defaults=True),
            "training": pcfg.training.model_dump(mode="json", exclude_defaults=True),
        }
        finetune = pcfg.finetune.model_dump(mode="json", exclude_defaults=True)
        for seed in cfg.seeds:

            def add(kind: str, method: str, label: str, spec: dict, deps: tuple[str, ...] = ()) -> Job:
                full = {"kind": kind, "seed": seed, **base, **spec}
                job = Job(f"{kind}-{_digest(full)}", kind, f"{label} seed={seed}{tag}", method, point, seed, full, deps)
                jobs.append(job)
                return job

            dense = add("dense", "dense", "dense", {})
            for m in pcfg.methods:
                mspec = _method_spec(m)
                if m.kind in ("oneshot", "structured"):  # start from the trained dense model
                    for s in m.sparsities:
                        add(m.kind, m.name, f"{m.name}@{s:g}",
                            {"method": mspec, "sparsity": s, "finetune": finetune, "parent": dense.id}, (dense.id,))
                elif m.kind == "gmp" and m.options.get("from_dense"):  # gradual pruning while fine-tuning it
                    for s in m.sparsities:
                        add("gmp", m.name, f"{m.name}@{s:g}",
                            {"method": mspec, "sparsity": s, "finetune": finetune, "parent": dense.id}, (dense.id,))
                elif m.kind == "vd":  # sparsity emerges; starts from the trained dense model
                    add("vd", m.name, m.name, {"method": mspec, "finetune": finetune, "parent": dense.id}, (dense.id,))
                elif m.kind == "str":  # sparsity emerges from the learned thresholds
                    add("str", m.name, m.name, {"method": mspec})
                elif m.kind != "imp":  # trained from init at each target sparsity
                    for s in m.sparsities:
                        add(m.kind, m.name, f"{m.name}@{s:g}", {"method": mspec, "sparsity": s})
                else:
                    imp = add("imp", m.name, m.name, {"method": mspec, "finetune": finetune})
                    for b in m.branches:
                        for level in b.levels or range(1, m.levels + 1):
                            bspec = b.model_dump(mode="json", exclude_defaults=True, exclude={"name", "levels"})
                            add("branch", f"{m.name}/{b.name}", f"{m.name}/{b.name}@L{level}",
                                {"branch": bspec, "level": level, "parent": imp.id, "finetune": finetune},
                                (imp.id,))
    # Jobs with equal ids (e.g. the dense run when a sweep axis only touches fine-tuning) appear once
    # per sweep point here so each point gets its rows; executors run each id once.
    return jobs


def unique_jobs(jobs: list[Job]) -> list[Job]:
    first: dict[str, Job] = {}
    for job in jobs:
        first.setdefault(job.id, job)
    return list(first.values())
