"""Tracker sinks: TensorBoard, MLflow and W&B runs fed by a study's jobs, besides the run store.

``logging: {sinks: [tensorboard, mlflow], options: {...}}`` in a study YAML (or ``prunezoo run --log-to``)
opens one run per job in each sink: the job's canonical config as parameters, the trainer's per-epoch
metrics (through :class:`prunezoo.tracking.callback.EpochMetrics`), per-layer densities, the result rows;
``prunezoo report`` adds the study's figures and the HTML report. A sink that fails warns once and is
switched off; results, store rows and hashes never depend on sinks.

Light on import (no torch, no tracker library): the sinks' modules are imported when a run opens them.
"""

from prunezoo.tracking.base import RunInfo, Sink, Tracker, flatten, numeric, reset_warnings
from prunezoo.tracking.registry import (
    SINKS,
    check_sink_names,
    check_sinks,
    open_tracker,
    register_sink,
    sink_class,
    study_info,
)
from prunezoo.tracking.results import log_job_result, log_study_report

__all__ = [
    "RunInfo",
    "Sink",
    "Tracker",
    "SINKS",
    "check_sink_names",
    "check_sinks",
    "flatten",
    "log_job_result",
    "log_study_report",
    "numeric",
    "open_tracker",
    "register_sink",
    "reset_warnings",
    "sink_class",
    "study_info",
]
