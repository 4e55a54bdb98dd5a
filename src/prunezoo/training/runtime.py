"""Where and how training runs: device, precision, memory format, compilation, loader workers.

:class:`RuntimeCore` declares device, precision, channels_last and compile once: :class:`RuntimeConfig`
(what a Trainer takes) and :class:`RuntimeFields` (inherited by every config that has a runtime: study,
zoo, twin method, bench suite; it adds ``gpus_per_job``) both extend it.

``device="auto"`` picks CUDA when ``torch.cuda.is_available()``, else MPS when available, else the CPU
(so a CPU-only machine always gets ``cpu``). An explicit device that this machine cannot provide is a
:class:`~prunezoo.errors.ConfigError` naming the field, raised before any work starts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from prunezoo.errors import ConfigError

DEVICE_SPELLINGS = "auto, cpu, cuda, cuda:N or mps"
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


def check_device(value: str) -> str:
    """``value`` normalised (stripped, lower case) if it is a device spelling; ValueError otherwise. Whether
    this machine has the device is :func:`resolve_device`'s question, asked when a run starts."""
    if not _DEVICE_RE.fullmatch(value.strip().lower()):
        raise ValueError(f"unknown device {value!r}; use {DEVICE_SPELLINGS}")
    return value.strip().lower()


def check_gpus_per_job(value: float) -> float:
    """``value`` if Ray can reserve it per job (a share of one GPU or whole GPUs); ValueError otherwise."""
    if not (value > 0 and (value <= 1 or float(value).is_integer())):
        raise ValueError("must be a fraction of one GPU in (0, 1] or a whole number of GPUs")
    return value


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_unavailable_reason() -> str:
    built = f"built with CUDA {torch.version.cuda}, no usable GPU found" if torch.version.cuda else "built without CUDA"
    return f"CUDA is not available on this machine (torch {torch.__version__}, {built})"


def resolve_device(spec: str, field: str = "device") -> torch.device:
    """The ``torch.device`` for ``spec`` (auto|cpu|cuda|cuda:N|mps); ConfigError(``field``) if this
    machine cannot provide it."""
    if not isinstance(spec, str) or not _DEVICE_RE.fullmatch(spec.strip().lower()):
        raise ConfigError(field, f"unknown device {spec!r}; use {DEVICE_SPELLINGS}")
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise ConfigError(field, f"MPS (Apple GPU) is not available on this machine (torch {torch.__version__})")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(field, f"{spec!r}: {_cuda_unavailable_reason()}")
    index = int(spec.split(":")[1]) if ":" in spec else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(field, f"{spec!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


class RuntimeCore(BaseModel):
    """The fields a Trainer's :class:`RuntimeConfig` and every config's :class:`RuntimeFields` share:
    declared, documented and validated here only (a bad value is an error at the field's own name)."""

    model_config = ConfigDict(extra="forbid")

    device: Annotated[
        str,
        AfterValidator(check_device),
        Field(description="where it runs: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps; not hashed"),
    ] = "auto"
    precision: Annotated[
        Literal["fp32", "bf16", "fp16"],
        Field(description="autocast precision of forward and loss (weights stay fp32); fp16 needs a GPU"),
    ] = "fp32"
    channels_last: Annotated[bool, Field(description="channels_last memory format for models and 4-D inputs")] = False
    compile: Annotated[bool, Field(description="torch.compile the model's forward")] = False


class RuntimeConfig(RuntimeCore):
    """How a Trainer runs; the defaults reproduce the plain CPU fp32 path exactly.

    - ``precision``: ``bf16``/``fp16`` autocast the forward and loss only; parameters and optimizer
      state stay fp32; fp16 scales the loss with ``torch.amp.GradScaler``. fp16 is refused on the CPU
      (use bf16 there).
    - ``channels_last``: model and 4-D inputs in ``torch.channels_last`` memory format.
    - ``compile``: ``torch.compile`` the forward (checkpoints keep the original module's names).
    - ``num_workers``: DataLoader workers for map-style Datasets; the sample order does not depend on it.
    """

    num_workers: int = Field(default=0, ge=0)

    def resolve(self, prefix: str = "") -> torch.device:
        """The device to run on; ConfigError naming ``{prefix}device`` / ``{prefix}precision`` if this
        machine cannot run this configuration."""
        device = resolve_device(self.device, f"{prefix}device")
        if self.precision == "fp16" and device.type == "cpu":
            raise ConfigError(
                f"{prefix}precision",
                "fp16 autocast is not supported on the CPU; use precision 'bf16' on the CPU (or 'fp32')",
            )
        return device


# What a config passes on to its RuntimeConfig; ``device`` and ``gpus_per_job`` say where a run computes,
# not what: never hashed (PLACEMENT_FIELDS).
RUNTIME_FIELDS = tuple(RuntimeCore.model_fields)  # device, precision, channels_last, compile
PLACEMENT_FIELDS = frozenset({"device", "gpus_per_job"})


class RuntimeFields(RuntimeCore):
    """The runtime fields of a study, zoo, twin method or bench suite: those configs inherit them from
    here (:class:`RuntimeCore`'s plus ``gpus_per_job``), with their types, defaults, docs and checks."""

    gpus_per_job: Annotated[
        float,
        AfterValidator(check_gpus_per_job),
        Field(description="Ray: GPUs each job reserves on a CUDA run (0.25: four jobs share one GPU); not hashed"),
    ] = 1.0

    def runtime_config(self) -> RuntimeConfig:
        """The :class:`RuntimeConfig` a Trainer of this config runs with."""
        return RuntimeConfig(**{f: getattr(self, f) for f in RUNTIME_FIELDS})

    def hashed_runtime(self) -> dict[str, Any]:
        """The runtime fields that change results (precision, channels_last, compile), only where not default:
        what job specs and member ids hash (empty for the default fp32 run, so old ids are unchanged)."""
        default = RuntimeConfig()
        return {
            f: getattr(self, f)
            for f in RUNTIME_FIELDS
            if f not in PLACEMENT_FIELDS and getattr(self, f) != getattr(default, f)
        }
