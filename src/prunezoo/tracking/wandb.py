"""Weights & Biases: one run per job, grouped by study (``group = <study id>``), in project
``logging.options.wandb_project`` (default ``prunezoo``).

Mode (``wandb_mode``): the option, else ``WANDB_MODE``, else ``online`` when ``WANDB_API_KEY`` is set and
``offline`` otherwise, so nothing goes over the network (or waits for a login prompt) unless asked; offline
runs land in ``<study dir>/wandb/`` (``wandb_dir`` moves them) for a later ``wandb sync``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunezoo.tracking.base import RunInfo, Sink


def wandb_mode(options: Mapping[str, Any]) -> str:
    mode = options.get("wandb_mode") or os.environ.get("WANDB_MODE")
    if mode:
        return str(mode)
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def run_dir(info: RunInfo, options: Mapping[str, Any]) -> Path:
    root = options.get("wandb_dir")
    return Path(root) if root else info.study_dir


class WandbSink(Sink):
    """Config = the job's canonical spec; ``run.log`` per epoch (step = epoch); densities; the result row in
    the run summary; the study's figures as images."""

    name = "wandb"

    def __init__(self, info: RunInfo, options: Mapping[str, Any]) -> None:
        super().__init__(info, options)
        import wandb

        directory = run_dir(info, options)
        directory.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(mode=wandb_mode(options), silent=True, console="off", disable_git=True)  # type: ignore[arg-type]
        major, minor = (int(p) for p in wandb.__version__.split(".")[:2])
        self.run = wandb.init(
            project=str(options.get("wandb_project") or "prunezoo"),
            entity=options.get("wandb_entity"),
            group=info.study_id,
            job_type=info.method or "study",
            name=info.label or info.name,
            tags=[t for t in (info.method, info.point) if t][:64] or None,
            dir=str(directory),
            settings=settings,
            reinit="create_new" if (major, minor) >= (0, 19) else True,  # several runs in one process
        )
        self.step = 0

    @classmethod
    def check(cls, info: RunInfo, options: Mapping[str, Any]) -> None:
        import wandb  # noqa: F401  (ImportError: wandb missing)

        mode = wandb_mode(options)
        if mode not in ("online", "offline", "disabled", "shared"):
            raise ValueError(f"wandb_mode must be online, offline or disabled, got {mode!r}")
        directory = run_dir(info, options)
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".prunezoo-write-test"
        probe.write_bytes(b"")
        probe.unlink()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.step = max(self.step, step)  # W&B drops steps that go back
        self.run.log(dict(metrics), step=self.step)

    def log_densities(self, densities: Mapping[str, float], step: int, tag: str = "density") -> None:
        values = {f"{tag}/{layer}": v for layer, v in densities.items()}
        if tag == "density":
            self.log_metrics(values, step)
        else:  # final densities: the run summary
            self.run.summary.update(values)

    def log_summary(self, values: Mapping[str, float]) -> None:
        self.run.summary.update(dict(values))

    def log_image(self, name: str, png: bytes) -> None:
        import io

        import wandb
        from PIL import Image

        self.run.log({name: wandb.Image(Image.open(io.BytesIO(png)).convert("RGB"))}, step=self.step)

    def log_file(self, path: Path, folder: str = "") -> None:
        target = Path(self.run.dir) / folder / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())  # files in the run's directory are uploaded with it

    def log_json(self, name: str, data: Any) -> None:
        (Path(self.run.dir) / name).write_text(json.dumps(data, indent=1, sort_keys=True, default=str))

    def close(self) -> None:
        self.run.finish()
