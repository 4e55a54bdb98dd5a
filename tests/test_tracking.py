"""Tracker sinks (issue 17): what each sink wrote, read back with the sink's own reader; a broken sink only
warns (once) and changes no result, row or hash; library code never prints."""

from __future__ import annotations

import ast
import json
import logging
import math
import struct
from pathlib import Path

import pytest

import prunezoo
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.store import RunStore
from prunezoo.experiments.study import STORE_NAME, run_study
from prunezoo.tracking import Sink, register_sink, reset_warnings


def tiny(sinks=(), options=None, **extra):
    return parse_config(
        {
            "name": "tiny",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [16]}},
            "training": {"epochs": 2},
            "finetune": {"epochs": 2},
            "methods": [{"name": "gm", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.8]}],
            "logging": {"sinks": list(sinks), "options": options or {}},
            **extra,
        }
    )


@pytest.fixture(autouse=True)
def _fresh_warnings():
    reset_warnings()  # "warn once" is per study and process: each test starts clean
    yield
    reset_warnings()


def _run(cfg, out: Path):
    return run_study(cfg, out, workers=1, progress=False)


def _store_history(out: Path, study_id: str, run: str) -> list[dict]:
    df = RunStore(out / STORE_NAME, readonly=True).metrics(study_id, run)
    return df.sort_values("epoch").to_dict("records")


def _job_ids(result) -> list[str]:
    return sorted({r["run_id"].split("/")[0] for r in result.rows})


# --- the sinks, read back by their own readers


def test_tensorboard_event_files_hold_the_store_history(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs"
    # spawned pool workers: each opens its job's sinks itself
    result = run_study(tiny(["tensorboard"]), out, workers=2, progress=False)
    jobs = _job_ids(result)
    assert len(jobs) == 2  # dense + one oneshot job
    for job in jobs:
        acc = EventAccumulator(str(result.directory / "tensorboard" / job), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()
        history = _store_history(out, result.directory.name, job)
        assert [h["epoch"] for h in history] == [1, 2]
        for key in ("test_acc", "train_loss", "lr"):
            events = acc.Scalars(key)
            assert [e.step for e in events] == [1, 2]
            assert [e.value for e in events] == pytest.approx([h[key] for h in history], rel=1e-6)
        row = next(r for r in result.rows if r["run_id"] == job)
        (final,) = acc.Scalars("result/test_acc")
        assert final.value == pytest.approx(row["test_acc"], rel=1e-6)
        assert "density" in tags["histograms"] and "final_density" in tags["histograms"]
        layer_tags = [t for t in tags["scalars"] if t.startswith("final_density/")]
        layers = json.loads((result.directory / "layers.json").read_text())[job]
        assert sorted(t.split("/", 1)[1] for t in layer_tags) == sorted(layers)
        for t in layer_tags:
            assert acc.Scalars(t)[0].value == pytest.approx(layers[t.split("/", 1)[1]], rel=1e-6)
        assert {"config/text_summary", "masks_summary.json/text_summary"} <= set(tags["tensors"])  # as text


def test_mlflow_file_store_has_one_run_per_job_with_params_and_metrics(tmp_path):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "runs"
    uri = (tmp_path / "mlruns").as_uri()
    result = _run(tiny(["mlflow"], {"mlflow_uri": uri}), out)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    by_job = {r.data.tags["prunezoo.job_id"]: r for r in runs}
    assert sorted(by_job) == _job_ids(result)
    for job, run in by_job.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["prunezoo.study_id"] == result.directory.name
        assert run.data.params["training.epochs"] == "2" and run.data.params["dataset.name"] == "digits"
        history = _store_history(out, result.directory.name, job)
        metric = client.get_metric_history(run.info.run_id, "test_acc")
        assert [m.step for m in sorted(metric, key=lambda m: m.step)] == [1, 2]
        assert [m.value for m in sorted(metric, key=lambda m: m.step)] == pytest.approx(
            [h["test_acc"] for h in history]
        )
        row = next(r for r in result.rows if r["run_id"] == job)
        assert run.data.metrics["result/sparsity"] == pytest.approx(row["sparsity"])
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["masks_summary.json"]
        summary = json.loads(
            Path(client.download_artifacts(run.info.run_id, "masks_summary.json", str(tmp_path))).read_text()
        )
        assert summary["layers"][""] == json.loads((result.directory / "layers.json").read_text())[job]
    labels = {j["id"]: j["label"] for j in json.loads((result.directory / "plan.json").read_text())}
    assert {job: run.info.run_name for job, run in by_job.items()} == labels


def _wandb_records(path: Path) -> list:
    """The records of a W&B ``.wandb`` file: W&B's header, LevelDB-log framed chunks, each a W&B protobuf Record."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        elif kind in (3, 4):  # middle, last
            pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_wandb_offline_runs_are_grouped_by_study_one_per_job(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "runs"
    result = _run(tiny(["wandb"]), out)
    files = sorted((result.directory / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    seen = {}
    for f in files:
        records = _wandb_records(f)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run.run_group == result.directory.name and run.project == "prunezoo"
        updates = [*run.config.update]  # the config at init, then config records
        updates += [u for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update]
        config = {u.key: json.loads(u.value_json) for u in updates}
        history = [
            {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in records
            if r.WhichOneof("record_type") == "history"
        ]
        summary = {
            (u.key or "/".join(u.nested_key)): json.loads(u.value_json)
            for r in records
            if r.WhichOneof("record_type") == "summary"
            for u in r.summary.update
        }
        seen[run.display_name] = (config, history, summary)
    plan = json.loads((result.directory / "plan.json").read_text())
    assert sorted(seen) == sorted(j["label"] for j in plan)  # one run per job, named by its label
    for job in _job_ids(result):
        row = next(r for r in result.rows if r["run_id"] == job)
        config, history, summary = next(v for v in seen.values() if v[0]["job"]["id"] == job)
        assert config["dataset"] == {"name": "digits"}
        store = _store_history(out, result.directory.name, job)
        accs = [(h["_step"], h["test_acc"]) for h in history if "test_acc" in h]
        assert accs == [(h["epoch"], pytest.approx(h["test_acc"])) for h in store]
        assert summary["result/test_acc"] == pytest.approx(row["test_acc"])
    job_dirs = sorted((result.directory / "wandb").glob("offline-run-*/files/masks_summary.json"))
    assert len(job_dirs) == 2


# --- failures never fail a study


def _rows_and_store(out: Path, study_id: str):
    store = RunStore(out / STORE_NAME, readonly=True)
    results = store.results(study_id).drop(columns=["study_id"]).to_dict("records")
    metrics = store.metrics(study_id).drop(columns=["time_s"]).to_dict("records")
    return results, metrics


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str).replace("NaN", "null") == json.dumps(
        b, sort_keys=True, default=str
    ).replace("NaN", "null")


def test_broken_sinks_warn_once_and_change_nothing(tmp_path, caplog):
    plain = _run(tiny(), tmp_path / "plain")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    broken = tiny(
        ["tensorboard", "mlflow"],
        {"tensorboard_dir": str(blocker / "tb"), "mlflow_uri": (blocker / "mlruns").as_uri()},
    )
    assert broken.hash() == plain.config.hash()  # sinks are not part of the study
    with caplog.at_level(logging.WARNING, logger="prunezoo"):
        logged = _run(broken, tmp_path / "logged")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "'tensorboard'" in w]) == 1, warnings
    assert len([w for w in warnings if "'mlflow'" in w]) == 1, warnings
    assert logged.directory.name == plain.directory.name
    assert logged.rows == plain.rows
    assert _same(
        _rows_and_store(tmp_path / "logged", logged.directory.name),
        _rows_and_store(tmp_path / "plain", plain.directory.name),
    )


class FailsMidJob(Sink):
    """Starts fine, then raises on the second epoch's metrics."""

    calls = 0

    def log_metrics(self, metrics, step):
        FailsMidJob.calls += 1
        if step == 2:
            raise RuntimeError("tracker went away")


class FailsAtStart(Sink):
    def __init__(self, info, options):
        raise ConnectionError("server unreachable")


def test_a_sink_failing_mid_job_or_at_start_warns_once_per_study(tmp_path, caplog):
    register_sink("fails-mid-job", FailsMidJob)
    register_sink("fails-at-start", FailsAtStart)
    plain = _run(tiny(), tmp_path / "plain")
    with caplog.at_level(logging.WARNING, logger="prunezoo"):
        logged = _run(tiny(["fails-mid-job", "fails-at-start"]), tmp_path / "logged")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    mid = [w for w in warnings if "'fails-mid-job'" in w]
    start = [w for w in warnings if "'fails-at-start'" in w]
    assert len(mid) == 1 and "tracker went away" in mid[0], warnings  # two jobs fail alike: one warning
    assert len(start) == 1 and "server unreachable" in start[0], warnings
    assert FailsMidJob.calls == 4  # epochs 1 and 2 of each job; off after the failure (no densities etc.)
    assert logged.rows == plain.rows
    assert _same(
        _rows_and_store(tmp_path / "logged", logged.directory.name),
        _rows_and_store(tmp_path / "plain", plain.directory.name),
    )


def test_missing_tracker_library_names_the_extra(tmp_path, caplog, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with caplog.at_level(logging.WARNING, logger="prunezoo"):
        result = _run(tiny(["mlflow"]), tmp_path / "runs")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "pip install 'prunezoo[mlflow]'" in text
    assert len(result.rows) == 2 and not (result.directory / "mlruns").exists()


# --- the config section


def test_logging_section_is_not_hashed_and_is_checked():
    assert tiny(["tensorboard", "wandb"], {"wandb_mode": "offline"}).hash() == tiny().hash()
    assert tiny(["mlflow", "mlflow"]).logging.sinks == ["mlflow"]
    with pytest.raises(ConfigError) as err:
        tiny(["tensorbored"])
    assert err.value.field == "logging.sinks" and "tensorboard" in str(err.value)
    with pytest.raises(ConfigError) as err:
        tiny(sweep={"logging.sinks": [["mlflow"], []]})
    assert "cannot be swept" in str(err.value)


def test_job_specs_and_ids_ignore_sinks():
    from prunezoo.experiments.plan import plan_study

    plain, logged = plan_study(tiny()), plan_study(tiny(["tensorboard"]))
    assert [j.to_dict() for j in plain] == [j.to_dict() for j in logged]
    assert "tracking" not in plain[0].to_dict()


# --- library code logs, never prints


def test_no_library_module_prints():
    root = Path(prunezoo.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if "cli" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, f"library code prints (use logging.getLogger('prunezoo...')): {offenders}"


def test_numeric_drops_what_trackers_cannot_plot():
    from prunezoo.tracking import numeric

    assert numeric({"a": 1, "b": 0.5, "c": None, "d": "x", "e": True, "f": math.nan}) == {"a": 1.0, "b": 0.5}
