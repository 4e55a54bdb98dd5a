"""Tracker sinks: where a study's numbers go besides the run store (TensorBoard, MLflow, W&B).

A :class:`Sink` receives one job's parameters, per-epoch metrics, result rows, per-layer densities and
files. :class:`Tracker` fans out to the sinks of one job and isolates them: a sink that raises (on
construction or on any call) is logged once, by name, and dropped for the rest of the job; nothing a
sink does changes a result, a row or a hash (the run store stays the source of truth).

Library code: optional libraries are imported inside the sinks, never here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("prunezoo.tracking")

# (sink, error) pairs already warned about in this process: a sink failing the same way in every job
# of a study warns once, then at DEBUG.
_WARNED: set[tuple[str, str]] = set()


@dataclass
class RunInfo:
    """What a sink knows of the run it records: one job of a study (or the study itself, ``job_id=""``)."""

    study: str  # the study's name (MLflow experiment, W&B group prefix)
    study_id: str  # <name>-<config hash>
    study_dir: Path
    job_id: str = ""
    label: str = ""  # "gm@0.9 seed=0"
    method: str = ""
    seed: int | None = None
    point: str = ""
    run_dir: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the job's canonical spec

    @property
    def name(self) -> str:
        return self.job_id or "study"

    def tags(self) -> dict[str, str]:
        tags = {"study": self.study, "study_id": self.study_id, "job_id": self.job_id, "label": self.label}
        tags |= {"method": self.method, "point": self.point}
        if self.seed is not None:
            tags["seed"] = str(self.seed)
        return {k: v for k, v in tags.items() if v}


class Sink:
    """One tracker for one run. Every method is optional (a no-op here); ``close`` is called once at the end.

    Subclasses take ``(info, options)``: ``options`` is the study's ``logging.options`` mapping (each sink
    reads its own keys, e.g. ``mlflow_uri``) and may raise in ``__init__`` (missing library, unreachable
    server): the :class:`Tracker` turns that into one warning.
    """

    name = "sink"

    def __init__(self, info: RunInfo, options: Mapping[str, Any]) -> None:
        self.info, self.options = info, dict(options)

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_densities(self, densities: Mapping[str, float], step: int, tag: str = "density") -> None: ...
    def log_summary(self, values: Mapping[str, float]) -> None: ...
    def log_image(self, name: str, png: bytes) -> None: ...
    def log_file(self, path: Path, folder: str = "") -> None: ...
    def log_json(self, name: str, data: Any) -> None: ...
    def close(self) -> None: ...

    @classmethod
    def check(cls, info: RunInfo, options: Mapping[str, Any]) -> None:
        """Raise when this sink cannot work for the study at all (checked once, before its jobs run)."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics dict (None, strings, bools and NaN left out)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def reset_warnings() -> None:
    """Forget which sink failures were warned about: the next study warns about them again."""
    _WARNED.clear()


def warn_failure(sink: str, err: BaseException, what: str = "") -> None:
    """The one warning for a failing sink (later identical failures in this process: DEBUG)."""
    message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
    key = (sink, message)
    text = f"tracker sink {sink!r} failed{f' ({what})' if what else ''} and is off for this run: {message}"
    if key in _WARNED:
        log.debug(text)
    else:
        _WARNED.add(key)
        log.warning(text + " (results and the run store are unaffected)")


class Tracker:
    """The sinks of one run: every call goes to each live sink; one that raises is warned about once and
    dropped. Built with :func:`prunezoo.tracking.open_tracker`."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = list(sinks)

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def _each(self, what: str, call: Callable[[Sink], None]) -> None:
        for sink in list(self.sinks):
            try:
                call(sink)
            except Exception as err:  # a sink never fails a job
                warn_failure(sink.name, err, what)
                self.sinks.remove(sink)
                if what != "close":
                    try:
                        sink.close()
                    except Exception:
                        log.debug("closing the failed sink %r raised too", sink.name, exc_info=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._each("params", lambda s: s.log_params(params))

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        values = numeric(metrics)
        if values:
            self._each("metrics", lambda s: s.log_metrics(values, step))

    def log_densities(self, densities: Mapping[str, float], step: int, tag: str = "density") -> None:
        if densities:
            self._each("densities", lambda s: s.log_densities(dict(densities), step, tag))

    def log_summary(self, values: Mapping[str, Any]) -> None:
        clean = numeric(values)
        if clean:
            self._each("summary", lambda s: s.log_summary(clean))

    def log_image(self, name: str, png: bytes) -> None:
        self._each("image", lambda s: s.log_image(name, png))

    def log_file(self, path: Path, folder: str = "") -> None:
        self._each("file", lambda s: s.log_file(Path(path), folder))

    def log_json(self, name: str, data: Any) -> None:
        self._each("json", lambda s: s.log_json(name, data))

    def close(self) -> None:
        self._each("close", lambda s: s.close())
        self.sinks = []
