"""TensorBoard: event files under ``<study dir>/tensorboard/<job id>/`` (``tensorboard --logdir <study
dir>/tensorboard`` shows every job of the study; option ``tensorboard_dir`` moves the root)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunezoo.tracking.base import RunInfo, Sink


def log_root(info: RunInfo, options: Mapping[str, Any]) -> Path:
    root = options.get("tensorboard_dir")
    return Path(root) if root else info.study_dir / "tensorboard"


class TensorBoardSink(Sink):
    """Scalars per epoch, per-layer densities as a histogram plus one scalar per layer, the job's config
    and masks summary as text, the study's figures as images."""

    name = "tensorboard"

    def __init__(self, info: RunInfo, options: Mapping[str, Any]) -> None:
        super().__init__(info, options)
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.logdir = log_root(info, options) / info.name
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.logdir))

    @classmethod
    def check(cls, info: RunInfo, options: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (ImportError: tensorboard missing)

        root = log_root(info, options)
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".prunezoo-write-test"  # a read-only directory fails here, not in the writer's thread
        probe.write_bytes(b"")
        probe.unlink()

    def log_params(self, params: Mapping[str, Any]) -> None:
        text = json.dumps(dict(params), indent=1, sort_keys=True, default=str)
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_densities(self, densities: Mapping[str, float], step: int, tag: str = "density") -> None:
        import numpy as np

        self.writer.add_histogram(tag, np.asarray(list(densities.values()), dtype=np.float64), step)
        for layer, value in densities.items():
            self.writer.add_scalar(f"{tag}/{layer}", value, step)
        self.writer.flush()

    def log_summary(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, 0)
        self.writer.flush()

    def log_image(self, name: str, png: bytes) -> None:
        import numpy as np
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        self.writer.add_image(name, image, 0, dataformats="HWC")
        self.writer.flush()

    def log_file(self, path: Path, folder: str = "") -> None:
        if path.suffix in (".json", ".txt", ".md", ".yaml"):
            self.writer.add_text(f"{folder}/{path.name}" if folder else path.name, path.read_text(), 0)
        # other files (the HTML report) have no TensorBoard form: they stay in the study directory

    def log_json(self, name: str, data: Any) -> None:
        text = json.dumps(data, indent=1, sort_keys=True, default=str)
        self.writer.add_text(name, "\n".join("    " + line for line in text.splitlines()), 0)

    def close(self) -> None:
        self.writer.close()
