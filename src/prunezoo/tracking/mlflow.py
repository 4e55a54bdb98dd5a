"""MLflow: one run per job in the experiment named after the study, at ``logging.options.mlflow_uri``
(default ``file:<study dir>/mlruns``; ``sqlite:///...`` or ``http://...`` for a database or server)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunezoo.tracking.base import RunInfo, Sink, flatten

MAX_PARAM_CHARS = 6000  # MLflow's limit for a param value (>= 2.x)
BATCH = 100  # MLflow's per-request limit for params


def tracking_uri(info: RunInfo, options: Mapping[str, Any]) -> str:
    uri = options.get("mlflow_uri")
    return str(uri) if uri else (info.study_dir / "mlruns").absolute().as_uri()


def _client(uri: str):
    if uri.startswith("file:") or "://" not in uri:
        # MLflow 3 refuses the file store unless asked; naming a file: URI is asking (a user's own
        # MLFLOW_ALLOW_FILE_STORE setting wins)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    # an unreachable server must not stall every job for minutes of retries (users' settings win)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created if missing (parallel jobs may race to create it)."""
    for _ in range(3):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name)
        except Exception:  # created meanwhile by another job: look it up again
            time.sleep(0.1)
    found = client.get_experiment_by_name(name)
    if found is None:
        raise RuntimeError(f"cannot create the MLflow experiment {name!r}")
    return found.experiment_id


class MlflowSink(Sink):
    """Params = the job's canonical config (flattened, ``training.lr``), metrics per epoch, ``result/...``
    metrics, artifacts: ``masks_summary.json`` per job, the study's figures and report."""

    name = "mlflow"

    def __init__(self, info: RunInfo, options: Mapping[str, Any]) -> None:
        super().__init__(info, options)
        self.client = _client(tracking_uri(info, options))
        experiment = experiment_id(self.client, str(options.get("mlflow_experiment") or info.study))
        tags = {f"prunezoo.{k}": v for k, v in info.tags().items()}
        run = self.client.create_run(experiment, run_name=info.label or info.name, tags=tags)
        self.run_id = run.info.run_id

    @classmethod
    def check(cls, info: RunInfo, options: Mapping[str, Any]) -> None:
        client = _client(tracking_uri(info, options))
        experiment_id(client, str(options.get("mlflow_experiment") or info.study))

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [
            Param(k, (json.dumps(v) if not isinstance(v, str) else v)[:MAX_PARAM_CHARS])
            for k, v in sorted(flatten(params).items())
        ]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def _metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in values.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._metrics(metrics, step)

    def log_densities(self, densities: Mapping[str, float], step: int, tag: str = "density") -> None:
        self._metrics({f"{tag}/{layer}": v for layer, v in densities.items()}, step)

    def log_summary(self, values: Mapping[str, float]) -> None:
        self._metrics(values, 0)

    def log_image(self, name: str, png: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="prunezoo-mlflow-") as tmp:
            path = Path(tmp) / f"{name}.png"
            path.write_bytes(png)
            self.client.log_artifact(self.run_id, str(path), "figures")

    def log_file(self, path: Path, folder: str = "") -> None:
        self.client.log_artifact(self.run_id, str(path), folder or None)

    def log_json(self, name: str, data: Any) -> None:
        self.client.log_dict(self.run_id, data, name)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
