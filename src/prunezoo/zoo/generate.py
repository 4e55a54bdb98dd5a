"""``prunezoo zoo generate``: seed zoos and hyperparameter-grid zoos, stored in the zoo layout.

A zoo config (YAML → :class:`ZooConfig`) names a dataset, an architecture, the training length and
the members: every hyperparameter field (``seeds``, ``activation``, ``init``, ``dropout``,
``optimizer``, ``lr``, ``weight_decay``) takes one value or a list, and the zoo is the cartesian
product of the lists (a *seed zoo* lists only seeds). Each member is content-addressed: its
directory name ends with a hash of everything that determines it, so re-running skips finished
models (``done.json``), redoes unfinished ones from scratch, and a changed config only adds models.

Conventions shared with :mod:`prunezoo.zoo.population` (``trainer: batched``): init is
``seed_everything(seed)`` then ``build_model``; member ``seed`` also drives the data order;
SGD uses ``momentum``, Adam betas (0.9, 0.999); epoch 0 is the init state, its train metrics are
evaluated on the training split, later epochs' are running means over the epoch's batches.

Runtime: ``device`` (not part of any member id: a zoo finished on another machine is the same zoo) and
``precision``/``channels_last``/``compile`` (in ``params.json`` under ``runtime`` and in the member id
only when not the default, so fp32 members keep their ids). Members are initialised on the CPU (the same
weights on every device), then trained and evaluated on the device.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prunezoo.errors import ConfigError
from prunezoo.experiments.config import (
    MAX_JOBS,
    DataConfig,
    ModelConfig,
    SafeName,
    check_output_dir,
    check_runtime,
    format_validation_error,
    read_config_data,
)
from prunezoo.experiments.executors import check_executor_options
from prunezoo.models import get_model_spec
from prunezoo.models.init import check_init
from prunezoo.models.layers import check_activation
from prunezoo.training import RuntimeConfig, Trainer, TrainingConfig, seed_everything
from prunezoo.training.callbacks import Callback
from prunezoo.training.evaluate import evaluate
from prunezoo.training.runtime import RuntimeFields
from prunezoo.zoo import layout
from prunezoo.zoo.runner import run_tasks

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
MAX_MEMBERS = MAX_JOBS  # a zoo beyond this is a typo, not a zoo
HYPER_FIELDS = ("activation", "init", "dropout", "optimizer", "lr", "weight_decay", "seed")
MODEL_HYPERS = ("activation", "init", "dropout")  # passed to build_model as model options
ROW_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "val_loss",
    "val_acc",
    "sparsity_ratio",
    "kl_weight",
)


class ZooData(DataConfig):
    """The study ``dataset`` section plus fixed random subsets for small CPU zoos."""

    split_seed: int = 42
    max_train: int | None = Field(None, ge=1)
    max_test: int | None = Field(None, ge=1)


class SeedRange(BaseModel):
    model_config = _STRICT
    start: int = Field(0, ge=0)
    count: int = Field(..., ge=1, le=MAX_MEMBERS)


def _listify(v: Any) -> list:
    return list(v) if isinstance(v, list | tuple) else [v]


class PopulationRuntimeFields(RuntimeFields):
    """:class:`RuntimeFields` of a config whose ``trainer`` field may say ``batched`` (zoo, twin method):
    then the runtime must be one the population trainer runs (:func:`check_population_runtime`)."""

    @model_validator(mode="after")
    def _batched_runtime(self) -> Self:
        if getattr(self, "trainer", "loop") == "batched":
            check_population_runtime(self)
        return self


class ZooConfig(PopulationRuntimeFields):
    """A zoo: dataset × architecture × (cartesian product of the hyperparameter lists); the runtime
    fields (device, precision, ...) come from :class:`RuntimeFields`."""

    model_config = _STRICT
    name: SafeName = "zoo"
    dataset: ZooData = Field(default_factory=lambda: ZooData(name="mnist5k"))
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="cnn-s"))
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(10, ge=1)
    trainer: Literal["loop", "batched"] = "loop"
    chunk_size: int = Field(50, ge=1, description="members per train_population call (trainer: batched)")
    seeds: list[int] | SeedRange = Field(default_factory=lambda: [0])
    activation: str | None | list[str] = None  # None: the model's default
    init: str | None | list[str | None] = None
    dropout: float | None | list[float] = None
    optimizer: Literal["adam", "sgd"] | list[Literal["adam", "sgd"]] = "adam"
    lr: float | list[float] = 3e-4
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float | list[float] = 0.0

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        seeds = list(range(v.start, v.start + v.count)) if isinstance(v, SeedRange) else v
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError("must be non-empty, distinct, non-negative integers")
        return seeds

    @field_validator("lr", "weight_decay")
    @classmethod
    def _ranges(cls, v, info):
        for x in _listify(v):
            if x is None:
                continue
            if info.field_name == "lr" and not x > 0:
                raise ValueError(f"must be > 0, got {x!r}")
            if info.field_name == "weight_decay" and x < 0:
                raise ValueError(f"must be >= 0, got {x!r}")
        return v

    @field_validator("activation", "init", "dropout")
    @classmethod
    def _model_options(cls, v, info):
        model = info.data.get("model")
        values = [x for x in _listify(v) if x is not None]
        if model is None or not values:
            return v

        if info.field_name not in get_model_spec(model.name).options:
            raise ValueError(f"model {model.name!r} has no {info.field_name!r} option")
        for x in values:
            try:
                if info.field_name == "activation":
                    check_activation(x)
                elif info.field_name == "init":
                    check_init(x)
                elif not 0 <= x < 1:
                    raise ValueError(f"must be in [0, 1), got {x!r}")
            except ConfigError as err:
                raise ValueError(str(err).split(": ", 1)[-1]) from None
        return v

    def members(self) -> list[dict[str, Any]]:
        """One hyperparameter dict per member (cartesian product, seeds varying fastest)."""
        lists = {f: _listify(getattr(self, "seeds" if f == "seed" else f)) for f in HYPER_FIELDS}
        return [dict(zip(HYPER_FIELDS, combo)) for combo in itertools.product(*lists.values())]


def check_population_runtime(cfg: RuntimeFields) -> None:
    """The batched (population) trainer runs fp32 or bf16 autocast; it has its own channels-last grouped
    convolutions and no torch.compile. ConfigError naming the field otherwise."""
    if cfg.precision == "fp16":
        raise ConfigError("precision", "the batched trainer runs fp32 or bf16 (fp16 needs a loss scaler it has not)")
    for field in ("channels_last", "compile"):
        if getattr(cfg, field):
            raise ConfigError(field, "not supported by the batched trainer; use trainer: loop")


def parse_zoo_config(data: Mapping[str, Any] | None) -> ZooConfig:
    try:
        cfg = ZooConfig.model_validate(dict(data or {}))
    except ValidationError as err:
        raise format_validation_error(err, drop_tags=True) from None  # no union-branch tags in paths
    lists = {f: len(_listify(getattr(cfg, f))) for f in (*HYPER_FIELDS[:-1], "seeds")}
    if (n := math.prod(lists.values())) > MAX_MEMBERS:
        raise ConfigError(
            max(lists, key=lists.get),
            f"the zoo would have {n:,} members (the product of {lists}); the limit is {MAX_MEMBERS:,}",
        )
    return cfg


def load_zoo_config(
    path: str | Path | None = None, overrides: list[str] | None = None, device: str | None = None
) -> ZooConfig:
    """Read a zoo YAML (``None``: all defaults) and apply ``--set key=value`` overrides (``device``: ``--device``)."""
    defaults = ZooConfig().model_dump(mode="json") if overrides else None  # --set model.x keeps model: cnn-s
    data = read_config_data(path, overrides, defaults)
    if device is not None:
        data["device"] = device
    return parse_zoo_config(data)


# ------------------------------------------------------------------------------------- members


def member_params(cfg: ZooConfig, hyper: Mapping[str, Any], num_classes: int, input_shape) -> dict[str, Any]:
    """The ``params.json`` of one member (``runtime``: only a non-default precision/channels_last/compile)."""
    options = dict(cfg.model.options)
    for f in MODEL_HYPERS:
        if hyper[f] is not None:
            options[f] = hyper[f]
    runtime = {"runtime": r} if (r := cfg.hashed_runtime()) else {}
    return {
        "model": cfg.model.name,
        "model_options": options,
        "num_classes": int(num_classes),
        "input_shape": list(input_shape),
        "dataset": dataset_spec(cfg),
        "seed": int(hyper["seed"]),
        "optimizer": hyper["optimizer"],
        "lr": float(hyper["lr"]),
        "momentum": float(cfg.momentum),
        "weight_decay": float(hyper["weight_decay"]),
        "activation": hyper["activation"],
        "init": hyper["init"],
        "dropout": hyper["dropout"],
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        **runtime,
    }


def member_runtime(params: Mapping[str, Any], device: str = "cpu") -> RuntimeConfig:
    """How a member (or its twin) trains: its ``params.json`` runtime on ``device``."""
    return RuntimeConfig(device=device, **params.get("runtime", {}))


def dataset_spec(cfg: ZooConfig) -> dict[str, Any]:
    return cfg.dataset.model_dump(mode="json", exclude_defaults=True) | {"name": cfg.dataset.name}


def member_id(params: Mapping[str, Any]) -> str:
    """``<model>-s<seed>-<hash>``: the hash covers everything that determines the member."""
    digest = hashlib.sha256(json.dumps(dict(params), sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{params['model']}-s{params['seed']}-{digest[:10]}"


@functools.lru_cache(maxsize=4)
def _cached_data(spec_json: str):
    # One load per worker process and dataset, not per model.
    return layout.load_zoo_data(json.loads(spec_json))


def zoo_data(spec: Mapping[str, Any]):
    return _cached_data(json.dumps(dict(spec), sort_keys=True))


def eval_row(
    model, data, epoch: int, *, train_metrics: Mapping[str, float] | None = None, precision: str = "fp32"
) -> dict[str, Any]:
    """A result line: train metrics (given, or evaluated on the train split), test and val (on the model's
    device, forward autocast to ``precision`` like the Trainer's evaluation)."""
    row: dict[str, Any] = {"epoch": epoch}
    if train_metrics is None:
        m = evaluate(model, data.train, precision=precision)
        train_metrics = {"train_loss": m["loss"], "train_acc": m["acc"]}
    row.update(train_metrics)
    for split in ("test", "val"):
        ds = getattr(data, split)
        if ds is not None and len(ds):
            m = evaluate(model, ds, precision=precision)
            row[f"{split}_loss"], row[f"{split}_acc"] = m["loss"], m["acc"]
    return row


def pick_row(metrics: Mapping[str, Any], epoch: int) -> dict[str, Any]:
    row = {k: metrics[k] for k in ROW_KEYS if k in metrics}
    if "train_loss" not in row and "train_eval_loss" in metrics:  # population's epoch-0 naming
        row["train_loss"], row["train_acc"] = metrics["train_eval_loss"], metrics["train_eval_acc"]
    row["epoch"] = epoch
    return {k: float(v) if k != "epoch" else int(v) for k, v in row.items()}


def training_config(params: Mapping[str, Any], *, epochs: int | None = None, lr: float | None = None):
    sgd = params["optimizer"] == "sgd"
    return TrainingConfig(
        epochs=params["epochs"] if epochs is None else epochs,
        batch_size=params["batch_size"],
        optimizer=params["optimizer"],
        lr=params["lr"] if lr is None else lr,
        momentum=params["momentum"] if sgd else 0.9,
        weight_decay=params["weight_decay"],
        seed=params["seed"],
    )


class StoreEpochs(Callback):
    """Trainer callback: after every epoch, store the state and rewrite ``result.json``."""

    def __init__(self, model_dir: Path, rows: list[dict], state_of=None):
        self.model_dir, self.rows = model_dir, rows
        self.state_of = state_of or (lambda model: model.state_dict())

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        layout.save_state(self.model_dir, epoch + 1, self.state_of(trainer.model))
        self.rows.append(pick_row(metrics, epoch + 1))
        layout.write_results(self.model_dir, self.rows)


def train_one(zoo: str, params: dict[str, Any], threads: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Train one member with the per-model Trainer on ``device`` (a runner task); returns its final result line."""
    with layout.model_lock(Path(zoo), member_id(params)):  # one process per member: another waits, then reads back
        return _train_one(zoo, params, threads, device)


def _train_one(zoo: str, params: dict[str, Any], threads: int = 1, device: str = "cpu") -> dict[str, Any]:
    import torch

    model_dir = Path(zoo) / member_id(params)
    if layout.model_done(model_dir):  # finished and intact (damaged files are quarantined, the member redone)
        return layout.read_done(model_dir)["final"]
    layout.clear_model_dir(model_dir)  # unfinished: redo from scratch (deterministic, small models)
    torch.set_num_threads(threads)
    runtime = member_runtime(params, device)
    data = zoo_data(params["dataset"])
    seed_everything(params["seed"])
    model = layout.build_member_model(params).to(runtime.resolve())  # initialised on the CPU: same weights
    layout.write_params(model_dir, params)
    layout.save_state(model_dir, 0, model.state_dict())
    rows = [eval_row(model, data, 0, precision=runtime.precision)]
    layout.write_results(model_dir, rows)
    evals = {s: getattr(data, s) for s in ("test", "val") if getattr(data, s) is not None and len(getattr(data, s))}
    Trainer(
        model,
        data.train,
        training_config(params),
        eval_sets=evals,
        callbacks=[StoreEpochs(model_dir, rows)],
        progress=False,
        runtime=runtime,
    ).fit()
    layout.mark_done(model_dir, rows, trainer="loop")
    return rows[-1]


def member_spec(params: Mapping[str, Any], *, lr: float | None = None):
    """The population :class:`~prunezoo.zoo.population.MemberSpec` of a ``params.json`` dict: the
    member's own settings, else the model's defaults (MemberSpec's own defaults are the seed zoo's)."""
    from prunezoo.zoo.population import MemberSpec  # heavy; only in batched mode

    defaults = get_model_spec(params["model"]).options
    hyper = {f: params["model_options"].get(f, defaults.get(f)) for f in MODEL_HYPERS}
    return MemberSpec(
        seed=params["seed"],
        optimizer=params["optimizer"],
        lr=params["lr"] if lr is None else lr,
        momentum=params["momentum"],
        weight_decay=params["weight_decay"],
        activation=hyper["activation"],
        init=hyper["init"],
        dropout=hyper["dropout"] or 0.0,
    )


def base_model_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Model options shared by a population (the per-member ones travel in the MemberSpec)."""
    return {k: v for k, v in params["model_options"].items() if k not in MODEL_HYPERS}


def train_chunk(zoo: str, chunk: list[dict[str, Any]], threads: int = 1, device: str = "cpu") -> list[dict[str, Any]]:
    """Train a chunk of members at once on ``device`` with :func:`prunezoo.zoo.population.train_population`."""
    import contextlib

    with contextlib.ExitStack() as stack:
        for name in sorted(member_id(p) for p in chunk):  # one order for every process: no deadlock
            stack.enter_context(layout.model_lock(Path(zoo), name))
        return _train_chunk(zoo, chunk, threads, device)


def _train_chunk(zoo: str, chunk: list[dict[str, Any]], threads: int = 1, device: str = "cpu") -> list[dict[str, Any]]:
    import torch

    from prunezoo.zoo.population import train_population  # heavy; only in batched mode

    todo = [p for p in chunk if not layout.model_done(Path(zoo) / member_id(p))]
    if not todo:
        return [layout.read_done(Path(zoo) / member_id(p))["final"] for p in chunk]
    torch.set_num_threads(threads)
    first = todo[0]
    data = zoo_data(first["dataset"])
    dirs = [Path(zoo) / member_id(p) for p in todo]
    rows: list[list[dict]] = [[] for _ in todo]
    for p, d in zip(todo, dirs):
        layout.clear_model_dir(d)
        layout.write_params(d, p)

    def on_epoch(i: int, epoch: int, state: dict, metrics: dict) -> None:
        layout.save_state(dirs[i], epoch, state)
        rows[i].append(pick_row(metrics, epoch))
        layout.write_results(dirs[i], rows[i])
        if epoch == first["epochs"]:
            layout.mark_done(dirs[i], rows[i], trainer="batched")

    train_population(
        first["model"],
        base_model_options(first),
        data,
        [member_spec(p) for p in todo],
        epochs=first["epochs"],
        batch_size=first["batch_size"],
        on_epoch=on_epoch,
        device=device,
        precision=member_runtime(first).precision,
    )
    return [layout.read_done(Path(zoo) / member_id(p))["final"] for p in chunk]


# ------------------------------------------------------------------------------------- the zoo


def zoo_readme(cfg: ZooConfig, n: int) -> str:
    return (
        f"# Model zoo {cfg.name}\n\n{n} `{cfg.model.name}` models on `{cfg.dataset.name}`, {cfg.epochs} epochs, "
        f"batch size {cfg.batch_size}, trainer `{cfg.trainer}`.\nGenerated by `prunezoo zoo generate`; "
        "layout: see `prunezoo.zoo.layout` (one directory per model: params.json, result.json, "
        "checkpoint_NNNNNN/state.safetensors, done.json; sparse twins under twins/).\n"
    )


def generate_zoo(
    cfg: ZooConfig,
    out: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    progress: bool | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Generate (or complete) the zoo in directory ``out``; returns a summary.

    ``limit``: train at most this many not-yet-done members (tests and partial runs).
    """
    check_executor_options(executor, workers, threads)  # before anything is written
    check_runtime(cfg, executor)  # device, precision: this machine (under Ray, the cluster) must have them
    out = check_output_dir(out)
    spec = dataset_spec(cfg)
    if (out / layout.CONFIG_FILE).exists():
        old = layout.read_zoo_config(out)
        for key, new in (("dataset", spec), ("model", cfg.model.model_dump(mode="json"))):
            if old.get(key) != new:
                raise ConfigError(
                    key, f"{out} holds a zoo with {key} {old.get(key)!r}, not {new!r}; use another output directory"
                )
    try:
        data = zoo_data(spec)
    except ConfigError:  # names its field (a dataset plug-in returning the wrong type: dataset.name)
        raise
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError("dataset", str(err)) from None
    params = [member_params(cfg, h, data.num_classes, data.input_shape) for h in cfg.members()]
    try:  # a probe model before anything is written: a model plug-in must build and be an nn.Module
        layout.build_member_model(params[0])
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError("model.options", str(err)) from None
    ids = [member_id(p) for p in params]
    layout.write_zoo_config(
        out,
        {
            "kind": "zoo",
            "name": cfg.name,
            "dataset": spec,
            "model": cfg.model.model_dump(mode="json"),
            "config": cfg.model_dump(mode="json"),
            "members": ids,
        },
        zoo_readme(cfg, len(params)),
    )
    todo = [p for p, i in zip(params, ids) if not layout.model_done(out / i)]
    if limit is not None:
        todo = todo[:limit]
    skipped = len(params) - len([p for p, i in zip(params, ids) if not layout.is_done(out / i)])
    import time

    t0 = time.perf_counter()
    if cfg.trainer == "batched":
        # Homogeneous chunks (same graph-changing settings) keep the vmapped groups large.
        todo.sort(key=lambda p: (p["optimizer"], str(p["activation"]), str(p["dropout"])))
        chunks = [todo[i : i + cfg.chunk_size] for i in range(0, len(todo), cfg.chunk_size)]
        run_tasks(
            train_chunk,
            [(str(out), c) for c in chunks],
            labels=[f"chunk {i}" for i in range(len(chunks))],
            weights=[len(c) for c in chunks],
            executor=executor,
            workers=workers,
            threads=threads,
            address=address,
            progress=progress,
            description=f"zoo {cfg.name}",
            device=cfg.device,
            gpus_per_job=cfg.gpus_per_job,
        )
    else:
        run_tasks(
            train_one,
            [(str(out), p) for p in todo],
            labels=[member_id(p) for p in todo],
            executor=executor,
            workers=workers,
            threads=threads,
            address=address,
            progress=progress,
            description=f"zoo {cfg.name}",
            device=cfg.device,
            gpus_per_job=cfg.gpus_per_job,
        )
    return {
        "directory": str(out),
        "models": len(params),
        "trained": len(todo),
        "skipped": skipped,
        "seconds": time.perf_counter() - t0,
        "done": sum(layout.is_done(out / i) for i in ids),
    }
