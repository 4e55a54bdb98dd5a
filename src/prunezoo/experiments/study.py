"""Run a study: validate, plan jobs, execute them (resumably), collect rows, index them in the store.

Layout of ``<out>/<name>-<config hash>/``: ``config.yaml``, ``plan.json``, ``runs/<job id>/``
(one directory per job: ``job.json``, checkpoints while running, masks, final weights,
``result.json`` when finished) and, once every job is done, ``results.json``/``results.csv``
(one row per pruned model), ``histories.json`` and ``layers.json`` (per-layer densities).
Re-running an interrupted study continues where it stopped; a complete one is read back.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from prunezoo.errors import ConfigError
from prunezoo.experiments.config import StudyConfig, check_output_dir
from prunezoo.experiments.executors import check_executor_options, run_jobs
from prunezoo.experiments.jobs import dataset_splits
from prunezoo.experiments.plan import Job, plan_study, unique_jobs
from prunezoo.experiments.schema import ROW_FIELDS
from prunezoo.experiments.store import RunStore
from prunezoo.models import build_model
from prunezoo.utils.io import CorruptFileError, clean_staging, file_lock, quarantine, read_json, write_json, write_text
from prunezoo.utils.progress import ProgressBar

STORE_NAME = "index.sqlite"


@dataclass
class StudyResult:
    config: StudyConfig
    directory: Path
    rows: list[dict]
    reused: bool = False


def study_directory(cfg: StudyConfig, out_root: str | Path) -> Path:
    return Path(out_root) / f"{cfg.name}-{cfg.hash()}"


def run_study(
    cfg: StudyConfig,
    out_root: str | Path = "runs",
    *,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    force: bool = False,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
) -> StudyResult:
    """Run every job of ``cfg`` (skipping finished ones) and collect the result rows.

    ``force`` re-runs everything. Invalid settings raise :class:`ConfigError` before anything is
    written.
    """
    check_executor_options(executor, workers, threads)  # every option before anything on disk changes
    cfg.check_runtime(executor)  # device, precision: this machine (or, under Ray, the cluster) must have them
    out_root = check_output_dir(out_root)
    directory = study_directory(cfg, out_root)
    if not force and (rows := _complete_rows(directory)) is not None:
        log(f"study already complete: {directory}")
        if cfg.logging.sinks:  # sinks record jobs as they run
            log(f"nothing new for the tracker sinks {cfg.logging.sinks} (--force runs the study again)")
        return StudyResult(cfg, directory, rows, reused=True)
    jobs = plan_study(cfg)
    _preflight(cfg)
    _check_store(out_root / STORE_NAME)
    out_root.mkdir(parents=True, exist_ok=True)
    # One process per study (the lock file lives outside the study directory, which --force deletes):
    # a second process waits, then reads back what the first one finished.
    with file_lock(out_root / f".{directory.name}.lock", on_wait=log):
        return _run_locked(
            cfg,
            out_root,
            directory,
            jobs,
            progress=progress,
            log=log,
            force=force,
            executor=executor,
            workers=workers,
            threads=threads,
            address=address,
        )


def _complete_rows(directory: Path, repair: bool = False) -> list[dict] | None:
    """Rows of a completed study; None if it is not complete (or, with ``repair`` under the study
    lock, its results.json is damaged: quarantined, then rebuilt from the finished jobs)."""
    if not (directory / "results.json").exists():
        return None
    try:
        return read_json(directory / "results.json")["rows"]
    except CorruptFileError as err:
        if repair:
            quarantine(err.path, err.reason)
        return None


def _run_locked(
    cfg: StudyConfig,
    out_root: Path,
    directory: Path,
    jobs: list[Job],
    *,
    progress,
    log,
    force,
    executor,
    workers,
    threads,
    address,
) -> StudyResult:
    if not force and (rows := _complete_rows(directory, repair=True)) is not None:  # done by the one we waited for
        log(f"study already complete: {directory}")
        return StudyResult(cfg, directory, rows, reused=True)
    if force and directory.exists():
        import shutil

        shutil.rmtree(directory)
    runs = directory / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    clean_staging(directory)  # leftovers of writes a kill cut short (jobs also clean their own)
    write_text(directory / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    write_json(directory / "plan.json", [job.to_dict() for job in jobs])
    store = RunStore(out_root / STORE_NAME)
    study_id = directory.name
    store.record_study(study_id, cfg.name, cfg.hash(), directory, cfg.model_dump(mode="json"), "running")

    jobs = with_tracking(cfg, directory, jobs)  # after plan.json: sinks are not part of the plan
    todo = unique_jobs(jobs)
    finished = sum((runs / job.id / "result.json").exists() for job in todo)
    log(f"{cfg.name}: {len(todo)} jobs ({finished} already done) → {directory}")
    with ProgressBar("jobs", len(todo), enabled=progress) as bar:

        def on_done(job: Job, result: dict) -> None:
            accs = [r["test_acc"] for r in result["rows"] if r.get("test_acc") is not None]
            bar.advance(description=job.label)
            log(f"done {job.label}" + (f": test acc {accs[-1]:.2%}" if accs else ""))

        results = run_jobs(
            jobs,
            runs,
            executor=executor,
            workers=workers,
            threads=threads,
            address=address,
            on_done=on_done,
            device=cfg.device,
            gpus_per_job=cfg.gpus_per_job,
        )

    rows, histories, layers, events = collect(jobs, results)
    write_json(directory / "histories.json", histories)
    if events:
        write_json(directory / "events.json", events)
    write_json(directory / "layers.json", layers)
    write_text(directory / "results.csv", rows_to_csv(rows))
    # The index before results.json: if it cannot be written (disk full), the study is not marked
    # complete and the next run redoes both (otherwise the index would say "running" for good).
    store.record_study(
        study_id, cfg.name, cfg.hash(), directory, cfg.model_dump(mode="json"), "complete", rows, histories
    )
    write_json(directory / "results.json", {"config_hash": cfg.hash(), "rows": rows})  # last: marks completion
    clean_staging(directory)
    return StudyResult(cfg, directory, rows)


def with_tracking(cfg: StudyConfig, directory: Path, jobs: list[Job]) -> list[Job]:
    """``jobs`` carrying the study's tracker sinks (``logging``) that work here: each is checked once
    (a failing one warns and is left out; the study runs on), then opened per job by the worker."""
    if not cfg.logging.sinks:
        return jobs
    import dataclasses

    from prunezoo.tracking import check_sinks, reset_warnings, study_info

    reset_warnings()  # each study warns once about each failing sink (in this process)
    options = dict(cfg.logging.options)
    sinks = check_sinks(cfg.logging.sinks, study_info(directory, cfg.name), options)
    if not sinks:
        return jobs
    tracking = {"sinks": sinks, "options": options, "study": cfg.name}
    return [dataclasses.replace(job, tracking=tracking) for job in jobs]


def collect(jobs: list[Job], results: dict[str, dict]) -> tuple[list[dict], dict, dict, dict]:
    """Result rows (one per plan entry and row of its job); histories, layer densities and schedule
    events (mask updates, phase statistics) by run id."""
    rows, histories, layers, events = [], {}, {}, {}
    for job in jobs:
        res = results[job.id]
        for r in res["rows"]:
            run_id = job.id + r["suffix"]
            row = {k: v for k, v in r.items() if k != "suffix"}
            rows.append({**row, "method": job.method, "seed": job.seed, "point": job.point, "run_id": run_id})
        for suffix, hist in res["histories"].items():
            histories[job.id + suffix] = hist
        for suffix, dens in res["layers"].items():
            layers[job.id + suffix] = dens
        for suffix, ev in res.get("events", {}).items():
            events[job.id + suffix] = ev
    return [{k: r.get(k) for k in ROW_FIELDS} for r in rows], histories, layers, events


def _check_store(path: Path) -> None:
    """An existing run store must be readable before the study writes anything (a garbage index.sqlite)."""
    import sqlite3

    if path.exists():
        try:
            RunStore(path).studies()
        except Exception as err:  # pandas re-raises sqlite's error as its own DatabaseError (from it)
            cause = err if isinstance(err, sqlite3.DatabaseError) else err.__cause__
            if not isinstance(cause, sqlite3.DatabaseError):
                raise
            raise ConfigError(
                "--out", f"{path} is not a readable prunezoo run store ({cause}); move it away to start a new one"
            ) from None


def _preflight(cfg: StudyConfig) -> None:
    """Reject settings that would only fail mid-study (dataset, model, allocation) before any training."""
    for point, pcfg in cfg.points():
        where = f"sweep[{point}]." if point else ""
        d = pcfg.dataset
        section = "dataset"  # what a TypeError/ValueError is about: the dataset's options, then the model's
        try:
            splits = dataset_splits(json.dumps(d.model_dump(mode="json", exclude_defaults=True), sort_keys=True))
            section = "model"
            model = build_model(
                pcfg.model.name, num_classes=splits.num_classes, input_shape=splits.input_shape, **pcfg.model.options
            )
            if (check_data := getattr(model, "prunezoo_check_data", None)) is not None:
                check_data(splits)  # e.g. token ids within a transformer's vocab_size, before any training
            if pcfg.model.checkpoint is not None or pcfg.model.masks is not None:  # shapes checked before training
                from prunezoo.models.checkpoints import start_from

                start_from(model, pcfg.model.checkpoint, pcfg.model.masks)
        except ConfigError as err:
            raise ConfigError(where + err.field, err.message, err.more) from None
        except (TypeError, ValueError, OSError) as err:
            raise ConfigError(
                f"{where}{section}.options" if not isinstance(err, OSError) else f"{where}dataset", str(err)
            ) from None
        for i, method in enumerate(pcfg.methods):
            try:
                method.method_kind.preflight(method, model)  # each kind checks what its jobs will need
            except ConfigError as err:
                field = err.field.split("].", 1)[-1] if err.field.startswith("methods[") else err.field
                raise ConfigError(f"{where}methods[{i}].{field}", str(err).split(": ", 1)[-1]) from None


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
