"""What a job and a study send to their trackers at the end: result rows, densities, figures, the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunezoo.tracking.base import Tracker
from prunezoo.tracking.registry import open_tracker, study_info

# Row fields that are numbers worth a tracker's summary (the rest: names, ids, strings).
_SKIP = {"suffix", "seed"}


def log_job_result(tracker: Tracker, result: dict[str, Any], step: int = 0) -> None:
    """A finished job's rows as ``result/<field>`` (``result/<run suffix>/<field>`` when the job made several
    models: IMP levels), final per-layer densities (the masks summary) and its rows as JSON."""
    if not tracker:
        return
    rows = result.get("rows", [])
    several = len(rows) > 1
    summary: dict[str, Any] = {}
    for i, row in enumerate(rows):
        key = (row.get("suffix") or f"/{i}").strip("/") if several else ""
        prefix = f"result/{key}/" if key else "result/"
        summary |= {prefix + k: v for k, v in row.items() if k not in _SKIP}
    tracker.log_summary(summary)
    for suffix, densities in sorted(result.get("layers", {}).items()):
        tracker.log_densities(densities, step, "final_density" + (f"/{suffix.strip('/')}" if suffix else ""))
    tracker.log_json(
        "masks_summary.json",
        {"layers": result.get("layers", {}), "rows": rows},
    )


def log_study_report(
    study_dir: str | Path, study: str, sinks: list[str], options: dict[str, Any], report: str | Path
) -> None:
    """A written report's figures (its PNGs) as images and the HTML file as an artifact, in one run
    named ``study`` per sink."""
    if not sinks:
        return
    report = Path(report)
    tracker = open_tracker(sinks, study_info(study_dir, study), options)
    try:
        for png in sorted(report.parent.glob("*.png")):
            tracker.log_image(png.stem, png.read_bytes())
        if report.exists():
            tracker.log_file(report, "report")
    finally:
        tracker.close()
