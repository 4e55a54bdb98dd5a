"""Executing one job of a study plan, resumably, inside ``<root>/<job id>/``.

Every job trains with per-epoch checkpoints (weights, optimizer, RNG, schedule masks) and writes
``result.json`` last, atomically: a job with that file is finished and never re-run; a job without
it resumes from its latest checkpoint. Results depend only on the job spec, never on which process
or machine ran it, so local and Ray executors give identical numbers.

Recovery: one process at a time works in a job directory (``.lock``, an flock). Every file a job
writes has its sha256 recorded (``.checksums.json`` per directory, ``checkpoint.json`` for
checkpoints) and is checked whenever the job is resumed or read back. A damaged file is moved to
``quarantine/`` with a logged warning, together with the ``result.json`` markers that vouched for
it, and what it held is recomputed (same seeds, so the same bytes); a damaged checkpoint falls back
to the previous one. Leftovers of interrupted writes (``.*.tmp``, staging directories) are removed
when a job starts and when it ends.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunezoo.data import load_dataset
from prunezoo.experiments.config import DataConfig, MethodConfig, ModelConfig
from prunezoo.methods import METHOD_KINDS
from prunezoo.methods.common import (  # noqa: F401  (re-exported: older callers import them from here)
    REINIT_SEED_OFFSET,
    load_masks,
    masks_once,
    prune_options,
    scoring_criterion,
)
from prunezoo.methods.dense import DENSE
from prunezoo.models import build_model
from prunezoo.models.flops import dense_flops, layer_flops
from prunezoo.sparsity import MaskSet
from prunezoo.tracking import Tracker, log_job_result
from prunezoo.training import RuntimeConfig, Trainer, TrainingConfig, seed_everything
from prunezoo.training.callbacks import EnforceMasks, TrainingFlops
from prunezoo.training.checkpoint import META_FILE, latest_checkpoint, remove_checkpoint
from prunezoo.utils.io import (
    CorruptFileError,
    clean_staging,
    file_lock,
    quarantine,
    read_json,
    remove_tree,
    verify_tree,
    write_json,
)

RESULT_FILE = "result.json"


@functools.lru_cache(maxsize=4)
def dataset_splits(dataset_json: str):
    d = DataConfig.model_validate(json.loads(dataset_json))
    return load_dataset(
        d.name,
        root=d.root,
        download=d.download,
        val_fraction=d.val_fraction,
        noise_rate=d.noise_rate,
        noise_kind=d.noise_kind,
        noise_seed=d.noise_seed,
        **d.options,
    )


@dataclass
class JobContext:
    """What every job kind needs: data, a model builder, trainer factory, FLOP tables and the result row.

    Knows no method kind: each kind's ``run(ctx, job)`` (prunezoo.methods) uses it.

    ``device``: where this job runs (not part of the spec: the same job gives the same result files
    wherever it ran); resolved here, in the process that runs the job, so ``auto`` means this machine's
    GPU if it has one. The default, ``cpu``, is what tools re-opening a finished job (diagnostics,
    export) use; the study runner passes the study's device. Models come out of :meth:`build_model` on
    it, :meth:`score_batches` are on it, and :meth:`trainer` trains and evaluates there with the spec's
    ``runtime`` (precision, channels_last, compile)."""

    spec: dict[str, Any]
    directory: Path
    root: Path
    device: Any = "cpu"  # a device spelling in, the resolved torch.device after __post_init__
    # Tracker sinks of this job (execute_job sets it; not a field: results never depend on it).
    tracker = Tracker([])

    def __post_init__(self) -> None:
        self.runtime = RuntimeConfig(device=str(self.device), **self.spec.get("runtime", {}))
        self.device = self.runtime.resolve()
        self.seed = self.spec["seed"]
        self.splits = dataset_splits(json.dumps(self.spec["dataset"], sort_keys=True))
        self.model_cfg = ModelConfig.model_validate(self.spec["model"])
        self.training = TrainingConfig.model_validate({**self.spec["training"], "seed": self.seed})
        ft = self.spec.get("finetune")
        self.finetune = TrainingConfig.model_validate({**ft, "seed": self.seed}) if ft is not None else None
        probe = self.build_model(on_device=False)  # FLOP counting: a CPU forward, as it always was
        self.flops = layer_flops(probe, self.splits.input_shape)
        self.total_flops = dense_flops(probe, self.splits.input_shape)
        self.flop_counters: list[TrainingFlops] = []
        self.eval_sets = {"test": self.splits.test} | ({"val": self.splits.val} if self.splits.val is not None else {})
        noisy = self.splits.train.is_noisy
        if bool(noisy.any()):
            # Under label noise, track fit to the (noisy) training labels and memorisation of the
            # corrupted ones: the quantities sparse double descent is about.
            self.eval_sets["train_eval"] = self.splits.train  # not "train": that prefix is the running metric
            self.eval_sets["noisy"] = self.splits.train.subset(noisy.nonzero().flatten())
        data = DataConfig.model_validate(self.spec["dataset"])
        if data.noisy_test:  # test error on noisy labels too (SDD papers report both)
            from prunezoo.data import apply_label_noise

            test = self.splits.test
            noise = apply_label_noise(
                test.y, data.noise_rate, data.noise_kind, self.splits.num_classes, seed=data.noise_seed + 1
            )
            self.eval_sets["test_noisy"] = test.with_labels(noise.labels)

    @property
    def tracking_clock(self) -> dict[str, int]:
        """The epochs this job's trainers have sent to its sinks so far: the next trainer's curve continues."""
        return self.__dict__.setdefault("_tracking_clock", {"epochs": 0})

    def build_model(self, seed: int | None = None, *, on_device: bool = True) -> nn.Module:
        """The seeded model, initialised on the CPU (the same weights everywhere), then moved to the device."""
        seed_everything(self.seed if seed is None else seed)
        model = build_model(
            self.model_cfg.name,
            num_classes=self.splits.num_classes,
            input_shape=self.splits.input_shape,
            **self.model_cfg.options,
        )
        if self.model_cfg.checkpoint is not None or self.model_cfg.masks is not None:
            from prunezoo.models.checkpoints import start_from

            # model.checkpoint / model.masks: every model starts from it; its masks stay fixed (trainer())
            self.model_masks = start_from(model, self.model_cfg.checkpoint, self.model_cfg.masks)
        return model.to(self.device) if on_device else model

    def trainer(self, model: nn.Module, callbacks=(), finetune: bool = False) -> Trainer:
        cfg = self.finetune if finetune else self.training
        counter = TrainingFlops(self.flops, self.total_flops)
        self.flop_counters.append(counter)
        if getattr(self, "model_masks", None) is not None:  # the start checkpoint's masks are kept fixed
            callbacks = [EnforceMasks(self.model_masks), *callbacks]
        return Trainer(
            model,
            self.splits.train,
            cfg,
            eval_sets=self.eval_sets,
            # the tracking callback last: the checkpointed callbacks keep their positions
            callbacks=[*callbacks, counter, *self._tracking()],
            progress=False,
            runtime=self.runtime,
        )

    def _tracking(self) -> list:
        """The callback sending this trainer's epochs to the job's sinks (none when there are none)."""
        if not self.tracker:
            return []
        from prunezoo.tracking.callback import EpochMetrics

        return [EpochMetrics(self.tracker, self.tracking_clock)]

    @property
    def train_flops(self) -> float:
        """Training FLOPs of every trainer this job ran (3 × density-weighted forward per sample)."""
        return sum(c.flops for c in self.flop_counters)

    def fit(self, trainer: Trainer, name: str = "checkpoint", start_step: int = 0) -> list[dict]:
        ckpt = self.directory / name
        resume = ckpt if latest_checkpoint(ckpt) is not None else None
        return trainer.fit(start_step, checkpoint_dir=ckpt, resume_from=resume)

    def score_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``n`` training batches (fixed order) for data-dependent criteria, on the job's device."""
        from prunezoo.data.loader import make_loader, set_loader_epoch

        # a BatchLoader for in-memory data (as before), a seeded DatasetLoader for a lazy Dataset (imagefolder)
        loader = make_loader(self.splits.train, self.training.batch_size, shuffle=True, seed=self.seed)
        set_loader_epoch(loader, 0)
        return [(x.to(self.device), y.to(self.device)) for _, (x, y) in zip(range(n), loader)]

    def start_masks(self, model: nn.Module, method: MethodConfig) -> MaskSet | None:
        """Sparse-to-sparse start: the random ER mask later masks must stay inside (or None)."""
        if method.start is None:
            return None
        from prunezoo.pruning import random_er_masks

        st = method.start
        return masks_once(
            self.directory / "start-masks.safetensors",
            lambda: random_er_masks(
                model,
                st.density,
                st.scheme,
                seed=self.seed,
                flow_preservation=st.flow_preservation,
                **prune_options(method),
            ),
        )

    def method(self, name: str, extra: dict | None = None) -> MethodConfig:
        return MethodConfig.model_validate({"name": name, **self.spec["method"], **(extra or {})})

    def row(
        self, masks: MaskSet | None, metrics: dict, *, counts: tuple[int, int, float] | None = None, **fields
    ) -> dict:
        """The result row of a pruned model: sparsity, counts and FLOPs from ``masks`` (or, for a model that
        is physically smaller, ``counts`` = (nonzeros, dense prunable weights, its forward FLOPs)),
        metrics from ``metrics`` (the last epoch), plus ``fields`` (kind, level, target_sparsity...)."""
        if masks is not None:
            dens = masks.layer_densities()
            nnz, prunable = masks.nnz(), masks.numel()
            sparse = self.total_flops - sum(f * (1.0 - dens.get(n, 1.0)) for n, f in self.flops.items())
            sparsity = masks.sparsity()
        else:
            nnz, prunable, sparse = counts
            sparsity = 1 - nnz / prunable
        return {
            **fields,
            "sparsity": round(sparsity, 6),
            "nnz": nnz,
            "prunable": prunable,
            "compression": prunable / max(nnz, 1),
            "test_acc": metrics.get("test_acc"),
            "test_loss": metrics.get("test_loss"),
            "train_loss": metrics.get("train_loss"),
            "val_acc": metrics.get("val_acc"),
            "test_ece": metrics.get("test_ece"),
            "train_eval_acc": metrics.get("train_eval_acc"),
            "memorization": metrics.get("noisy_acc"),
            "train_eval_ece": metrics.get("train_eval_ece"),
            "test_noisy_acc": metrics.get("test_noisy_acc"),
            "train_flops": self.train_flops,
            "flops_dense": self.total_flops,
            "flops_sparse": int(round(sparse)),
            "flop_speedup": self.total_flops / max(sparse, 1.0),
        }


def _with_sparse_latency(runner: Callable[[JobContext, dict], dict]) -> Callable[[JobContext, dict], dict]:
    """Methods with ``sparse_export: true``: every row also gets the measured latency of its sparse export."""

    @functools.wraps(runner)
    def run(ctx: JobContext, job: dict) -> dict:
        result = runner(ctx, job)
        if (ctx.spec.get("method") or {}).get("sparse_export"):
            from prunezoo.deploy.run_export import add_sparse_latency

            add_sparse_latency(ctx, result)
        return result

    return run


def runner(job_kind: str, module: str = "") -> Callable[[JobContext, dict], dict]:
    """The function running jobs of ``job_kind``: the dense control, or the registered method kind's
    (looked up when the job runs, so kinds registered by user code run too; ``module``: where such a kind
    is defined, imported first when the kind is not registered in this process, e.g. a spawned worker)."""
    if module and job_kind != DENSE.name and not any(job_kind in mk.runners() for mk in METHOD_KINDS.values()):
        import importlib

        importlib.import_module(module)
    if job_kind == DENSE.name:
        return DENSE.run
    for mk in METHOD_KINDS.values():
        if (run := mk.runners().get(job_kind)) is not None:
            return _with_sparse_latency(run) if mk.sparse_export else run
    raise ValueError(
        f"no registered method kind runs jobs of kind {job_kind!r}; known: "
        f"{sorted({DENSE.name, *(k for mk in METHOD_KINDS.values() for k in mk.runners())})}"
    )


MAX_REPAIRS = 8  # damaged files repaired within one execute_job call before giving up


def execute_job(job: dict, root: str | Path, threads: int | None = None, device: str = "cpu") -> dict:
    """Run (or resume, or just read back) one job on ``device`` (a spelling, resolved here); returns its
    result dict.

    Holds the job's lock throughout: a second process asking for the same job waits, then reads
    back what the first one finished. Damaged files of this job are quarantined and redone (see the
    module docstring); damage in another job's files (a parent's weights) raises
    :class:`CorruptFileError` naming the file: re-running the study repairs that job first.
    """
    root = Path(root)
    directory = root / job["id"]
    directory.mkdir(parents=True, exist_ok=True)
    with file_lock(directory / LOCK_FILE):
        result = _read_back(directory)
        if result is not None:
            _tidy(directory)  # a kill may have come between result.json and the clean-up below
            return result
        if threads:
            torch.set_num_threads(threads)
        clean_staging(directory)
        write_json(directory / "job.json", job)
        tracker = job_tracker(job, root)  # the study's tracker sinks (none: an empty tracker that does nothing)
        try:
            for attempt in range(MAX_REPAIRS + 1):
                try:
                    ctx = JobContext(job["spec"], directory, root, device)
                    ctx.tracker = tracker
                    result = runner(job["kind"], job.get("module", ""))(ctx, job)
                    break
                except CorruptFileError as err:
                    if not err.path.is_relative_to(directory) or not err.path.exists():
                        raise CorruptFileError(
                            err.path,
                            f"{err.reason} (needed by job {job['id']}; run the study again to redo the job that "
                            "wrote it)",
                        ) from None
                    if attempt == MAX_REPAIRS:
                        raise
                    _invalidate(directory, err)
            write_json(directory / RESULT_FILE, result)
            log_job_result(tracker, result or {}, ctx.tracking_clock["epochs"])
        finally:
            tracker.close()
        _tidy(directory)
        return result


def job_tracker(job: dict, root: Path) -> Tracker:
    """The tracker of one job: a run in each sink of ``job["tracking"]`` (set by the study runner), with the
    job's spec as parameters; the study directory is ``root``'s parent."""
    tracking = job.get("tracking") or {}
    if not tracking.get("sinks"):
        return Tracker([])
    from prunezoo.tracking import RunInfo, open_tracker

    info = RunInfo(
        study=tracking.get("study", ""),
        study_id=root.parent.name,
        study_dir=root.parent,
        job_id=job["id"],
        label=job.get("label", ""),
        method=job.get("method", ""),
        seed=job.get("seed"),
        point=job.get("point", ""),
        run_dir=root / job["id"],
        params=job["spec"],
    )
    tracker = open_tracker(tracking["sinks"], info, tracking.get("options", {}))
    tracker.log_params({"job": {"id": job["id"], "kind": job["kind"]}, **job["spec"]})
    return tracker


def _tidy(directory: Path) -> None:
    """Drop what a finished job no longer needs: training checkpoints (the final state is saved;
    keeps disk small), the .previous ones kept for fallback, staging leftovers."""
    remove_checkpoint(directory / "checkpoint")
    for stale in [*directory.glob("*.previous"), *directory.glob("*/*.previous")]:
        remove_tree(stale)
    clean_staging(directory)


LOCK_FILE = ".lock"


def _read_back(directory: Path) -> dict | None:
    """The result of a finished job whose files are all intact; None if it has to run (again):
    damaged files are quarantined, with the result markers that depend on them."""
    problems = verify_tree(directory, skip=_is_checkpoint)
    for err in problems:
        _invalidate(directory, err)
    done = directory / RESULT_FILE
    if not done.exists():
        return None
    try:
        return read_json(done)
    except CorruptFileError as err:
        _invalidate(directory, err)
        return None


def _is_checkpoint(path: Path) -> bool:
    # Checkpoints carry their own checksums and fall back to .previous (latest_checkpoint).
    return (path / META_FILE).exists() or path.name.endswith(".previous")


def _invalidate(directory: Path, err: CorruptFileError) -> None:
    """Quarantine a damaged file and every ``result.json`` that vouched for it (its own folder's up
    to the job's; for a file at the job's top level, every one of the job: they all build on it)."""
    bad = err.path
    if bad.exists():
        quarantine(bad, err.reason, into=directory)
    if bad == directory / "job.json":  # a copy of the spec, rewritten on every start: nothing depends on it
        return
    folder = bad.parent
    markers = [folder / RESULT_FILE]
    while folder != directory and folder.is_relative_to(directory):
        folder = folder.parent
        markers.append(folder / RESULT_FILE)
    if bad.parent == directory:
        markers += sorted(directory.glob(f"*/{RESULT_FILE}"))
    for marker in markers:
        if marker != bad and marker.exists():
            quarantine(marker, f"depends on damaged {bad}", into=directory)
