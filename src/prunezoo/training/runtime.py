"""Where and how training runs: device, precision, memory format, compilation, loader workers.

``device="auto"`` picks CUDA when ``torch.cuda.is_available()``, else MPS when available, else the CPU
(so a CPU-only machine always gets ``cpu``). An explicit device that this machine cannot provide is a
:class:`~prunezoo.errors.ConfigError` naming the field, raised before any work starts.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prunezoo.errors import ConfigError

DEVICE_SPELLINGS = "auto, cpu, cuda, cuda:N or mps"
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


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


class RuntimeConfig(BaseModel):
    """How a Trainer runs; the defaults reproduce the plain CPU fp32 path exactly.

    - ``precision``: ``bf16``/``fp16`` autocast the forward and loss only; parameters and optimizer
      state stay fp32; fp16 scales the loss with ``torch.amp.GradScaler``. fp16 is refused on the CPU
      (use bf16 there).
    - ``channels_last``: model and 4-D inputs in ``torch.channels_last`` memory format.
    - ``compile``: ``torch.compile`` the forward (checkpoints keep the original module's names).
    - ``num_workers``: DataLoader workers for map-style Datasets; the sample order does not depend on it.
    """

    model_config = ConfigDict(extra="forbid")

    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    num_workers: int = Field(default=0, ge=0)

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if not _DEVICE_RE.fullmatch(v.strip().lower()):
            raise ValueError(f"unknown device {v!r}; use {DEVICE_SPELLINGS}")
        return v.strip().lower()

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
