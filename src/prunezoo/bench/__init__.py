"""Fair benchmark suites, the bundled published results, and reproduction of the papers' findings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prunezoo.bench.published import PublishedResult, published_results
from prunezoo.bench.report import aggregate, write_bench_report
from prunezoo.bench.suites import (
    BenchSuite,
    baseline_names,
    build_study,
    bundled_suites,
    check_fairness,
    load_suite,
    quick_suite,
    with_baselines,
)

__all__ = [
    "BenchResult",
    "BenchSuite",
    "PublishedResult",
    "aggregate",
    "baseline_names",
    "build_study",
    "bundled_suites",
    "check_fairness",
    "load_suite",
    "published_results",
    "quick_suite",
    "run_bench",
    "with_baselines",
]


@dataclass
class BenchResult:
    directory: Path
    csv: Path
    html: Path
    records: list[dict]


def run_bench(
    suite: BenchSuite, out_root: str | Path = "runs", *, log: Callable[[str], None] = lambda _m: None, **run_options
) -> BenchResult:
    """Run ``suite`` as a study (finished jobs are reused) and write its CSV + HTML benchmark report."""
    from prunezoo.experiments.study import run_study

    cfg = build_study(suite)
    result = run_study(cfg, out_root, log=log, **run_options)
    bases = baseline_names(suite)
    meta = {
        "name": suite.name,
        "dataset": suite.dataset.name,
        "model": suite.model.name,
        "seeds": f"{suite.seeds} ({suite.seed}..{suite.seed + suite.seeds - 1})",
        "compressions": ", ".join(f"{c:g}×" for c in suite.compressions),
        "training": f"{suite.training.epochs} epochs, lr {suite.training.lr:g}",
        "fine-tuning (every method from the dense checkpoint)": f"{suite.finetune.epochs} epochs, "
        f"lr {suite.finetune.lr:g}",
        "baselines": ", ".join(sorted(bases)),
        "study": result.directory.name,
    }
    csv_path, html_path = write_bench_report(result.directory, meta, bases)
    return BenchResult(result.directory, csv_path, html_path, aggregate(result.rows, bases))
