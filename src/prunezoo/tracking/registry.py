"""Sink names -> sink classes. Built-ins are named here by module so that naming them (config validation,
``--log-to``) imports no tracker library; :func:`register_sink` adds one of your own."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from prunezoo.errors import ConfigError
from prunezoo.tracking.base import RunInfo, Sink, Tracker, warn_failure

# name -> "module:Class" (imported when a run opens it) or the class itself (registered at run time)
SINKS: dict[str, str | type[Sink]] = {
    "tensorboard": "prunezoo.tracking.tensorboard:TensorBoardSink",
    "mlflow": "prunezoo.tracking.mlflow:MlflowSink",
    "wandb": "prunezoo.tracking.wandb:WandbSink",
}
# The pip extra bringing each built-in sink's library (named in the warning when it is missing).
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def register_sink(name: str, cls: type[Sink]) -> type[Sink]:
    """Make ``cls`` usable as ``logging: {sinks: [name]}`` (in this process; pool workers: see CONTRIBUTING)."""
    SINKS[name] = cls
    cls.name = name
    return cls


def check_sink_names(names: list[str], field: str = "logging.sinks") -> list[str]:
    """``names`` without repeats, each a known sink; else :class:`ConfigError` naming ``field``."""
    unknown = [n for n in names if n not in SINKS]
    if unknown:
        raise ConfigError(field, f"unknown tracker sink {unknown[0]!r}; known: {sorted(SINKS)}")
    return list(dict.fromkeys(names))


def sink_class(name: str) -> type[Sink]:
    """The class of sink ``name`` (imports its module; a missing tracker library raises ImportError
    naming the extra to install)."""
    target = SINKS[name]
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    cls.name = name
    return cls


def _missing(name: str, err: ImportError) -> ImportError:
    extra = EXTRAS.get(name)
    hint = f": pip install 'prunezoo[{extra}]'" if extra else ""
    return ImportError(f"the {name} sink needs {err.name or 'a library that is not installed'}{hint}")


def check_sinks(names: list[str], info: RunInfo, options: dict[str, Any]) -> list[str]:
    """The sinks of ``names`` that can work for this study (each class's ``check``); the others are
    warned about once and left out. Run once before a study's jobs start."""
    usable = []
    for name in names:
        try:
            sink_class(name).check(info, options)
        except ImportError as err:
            warn_failure(name, _missing(name, err), "check")
        except Exception as err:
            warn_failure(name, err, "check")
        else:
            usable.append(name)
    return usable


def open_tracker(names: list[str], info: RunInfo, options: dict[str, Any]) -> Tracker:
    """A :class:`Tracker` over the sinks ``names`` for one run; a sink that cannot start is warned about
    once and left out (an empty tracker is falsy)."""
    sinks: list[Sink] = []
    for name in names:
        try:
            sinks.append(sink_class(name)(info, options))
        except ImportError as err:
            warn_failure(name, _missing(name, err), "start")
        except Exception as err:
            warn_failure(name, err, "start")
    return Tracker(sinks)


def study_info(study_dir: str | Path, study: str) -> RunInfo:
    """The :class:`RunInfo` of a study itself (its figures and report)."""
    study_dir = Path(study_dir)
    return RunInfo(study=study, study_id=study_dir.name, study_dir=study_dir)
