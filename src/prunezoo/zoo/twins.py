"""``prunezoo zoo twin``: sparsified twins of every model of a zoo, one twin set per method and level.

Methods (a :class:`TwinMethod`; ``--method mp|vd`` or a YAML mapping):

- ``kind: prune`` (``mp`` = criterion ``magnitude``, scheme ``global``): one-shot masks from the
  model's final state at each level (default 0.1, ..., 0.9) with any registered criterion and
  allocation scheme (``prunezoo.pruning.prune``; data-dependent criteria score ``batches``
  training batches), then ``epochs`` (default 15) of fine-tuning with the pruned weights held at
  exactly 0 (``MaskSet.attach``). Set ``mp-0.5``, ``snip-0.9``, ...
- ``kind: vd`` (``vd``): sparse variational dropout (``prunezoo.reparam.to_variational``) trained
  for ``epochs`` (default 25) from the final state, then ``from_variational`` (weights with
  log α ≥ ``threshold`` zeroed) is what every checkpoint stores. KL weight: ``kl_schedule: ramp``
  (default) is the model-zoo code's λ = min(1, ``ramp_to`` · epoch / ``ramp_length``) with
  ramp_to 0.01 over 25 epochs — about 500× the ELBO weight on MNIST, i.e. far stronger
  sparsification than the Bayesian objective; we keep it as default because the twins paper's
  numbers come from it. ``kl_schedule: elbo`` uses λ = 1/N (N training samples). Only Linear and
  Conv2d layers are variational (Conv1d layers of ``conv1d`` stay dense).

``trainer: batched`` (prune kind) fine-tunes a chunk of twins of one level at once with the
population trainer (``prunezoo.zoo.population``), masks enforced per member.

Runtime: ``device`` and ``gpus_per_job`` say where twins are made (not stored with the twin set's
method, so another machine continues the same set); a non-default ``precision``/``channels_last``/
``compile`` is part of the method (a twin set made in bf16 is another set). Masks are computed on the
device from the same weights (magnitude masks are identical on every device; random ones are drawn on
the CPU).

Every twin logs epoch 0 (right after pruning / conversion) and every fine-tuning epoch with
``sparsity_ratio`` (fraction of zero weights over conv/linear weights; VD: #(log α ≥ 3)/#weights,
the same quantity). The learning rate defaults to the model's own (``lr``) times ``lr_scale``
(1.0 for prune, 0.1 for VD: "a lower lr than the zoo"). The VD twin's ``done.json`` records the
sanity check: the converted model's test loss/accuracy before training next to the original's.

Damage: a finished twin whose ``done.json``, ``result.json``, ``params.json`` or last state no longer
matches its recorded checksum counts as unfinished (the bad file goes to ``<twin set>/quarantine/``,
logged) and is redone; a damaged source model stops the run with an error naming the file. One
process works on a twin at a time (``<twin set>/.<model>.lock``, an flock): another waits, then reads
it back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from prunezoo.criteria import CRITERIA
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import check_runtime, load_yaml, set_override
from prunezoo.pruning import prune
from prunezoo.reparam import from_variational, sparsity_ratio
from prunezoo.reparam.variational_dropout import finetune_variational
from prunezoo.sparsity import prunable_parameters
from prunezoo.training import Trainer, seed_everything
from prunezoo.training.callbacks import Callback, EnforceMasks
from prunezoo.training.runtime import PLACEMENT_FIELDS, RuntimeFields
from prunezoo.utils.io import CorruptFileError, read_json
from prunezoo.zoo import layout
from prunezoo.zoo.generate import (
    PopulationRuntimeFields,
    StoreEpochs,
    base_model_options,
    eval_row,
    member_runtime,
    member_spec,
    pick_row,
    training_config,
    zoo_data,
)
from prunezoo.zoo.runner import run_tasks

DEFAULT_LEVELS = [round(0.1 * i, 1) for i in range(1, 10)]


class TwinMethod(PopulationRuntimeFields):
    """How twins are made; the runtime fields (device, precision, ...) come from :class:`RuntimeFields`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")  # a dir name
    kind: Literal["prune", "vd"] = "prune"
    criterion: str = "magnitude"
    scheme: str = "global"
    levels: list[float] = Field(default_factory=lambda: list(DEFAULT_LEVELS))
    batches: int = Field(1, ge=1, description="training batches a data-dependent criterion scores")
    epochs: int | None = Field(None, ge=0, description="fine-tuning epochs (prune 15, vd 25)")
    lr: float | None = Field(None, gt=0, description="absolute lr; default: the model's lr x lr_scale")
    lr_scale: float | None = Field(None, gt=0, description="default 1.0 (prune), 0.1 (vd)")
    kl_schedule: Literal["ramp", "elbo"] = "ramp"
    ramp_to: float = Field(0.01, ge=0)
    ramp_length: int = Field(25, ge=1)
    threshold: float = 3.0
    source_epoch: int | None = Field(None, ge=0, description="state to start from (default: the last)")
    trainer: Literal["loop", "batched"] = "loop"
    chunk_size: int = Field(50, ge=1, description="twins per train_population call (trainer: batched)")

    def stored(self) -> dict[str, Any]:
        """The method as a twin set records and compares it: without where it runs (device, gpus_per_job)
        and with precision/channels_last/compile only when not the default (older sets compare equal)."""
        data = self.model_dump(mode="json", exclude=set(RuntimeFields.model_fields))
        return data | ({"runtime": r} if (r := self.hashed_runtime()) else {})

    @field_validator("trainer")
    @classmethod
    def _trainer(cls, v, info):
        if v == "batched" and info.data.get("kind") == "vd":
            raise ValueError("the batched trainer has no variational layers; use trainer: loop for vd")
        return v

    @field_validator("levels")
    @classmethod
    def _levels(cls, v):
        if not v or any(not 0 < x < 1 for x in v) or len(set(v)) != len(v):
            raise ValueError("must be distinct sparsities in (0, 1)")
        return v

    @field_validator("criterion")
    @classmethod
    def _criterion(cls, v):
        if v not in CRITERIA:  # a plug-in (entry point, module:attr) must load now
            from prunezoo.criteria import get_criterion

            try:
                get_criterion(v)
            except ConfigError as err:
                raise ValueError(err.message) from None
        return v

    @property
    def fine_tune_epochs(self) -> int:
        return self.epochs if self.epochs is not None else (25 if self.kind == "vd" else 15)

    def set_names(self) -> dict[str, float | None]:
        """``{twin set name: level}`` (``{"vd": None}`` for VD)."""
        if self.kind == "vd":
            return {self.name: None}
        return {layout.twin_set_name(self.name, lv): lv for lv in self.levels}

    def learning_rate(self, params: Mapping[str, Any]) -> float:
        if self.lr is not None:
            return self.lr
        return float(params["lr"]) * (
            self.lr_scale if self.lr_scale is not None else (0.1 if self.kind == "vd" else 1.0)
        )


def parse_twin_method(
    method: str | Mapping[str, Any],
    *,
    levels: str | list[float] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    overrides: list[str] | None = None,
    device: str | None = None,
) -> TwinMethod:
    """``"mp"``, ``"vd"`` or a (YAML) mapping of :class:`TwinMethod` fields, plus CLI overrides
    (``device``: ``--device``)."""
    if isinstance(method, str):
        if method in ("mp", "vd"):
            data: dict[str, Any] = {"name": method, "kind": "prune" if method == "mp" else "vd"}
        else:
            data = load_yaml(method, "--method")  # aliases bounded, errors name --method
            if not isinstance(data, dict):
                raise ConfigError(
                    "--method", f"expected mp, vd or a mapping like '{{name: snip, criterion: snip}}', got {method!r}"
                )
            data.setdefault("name", data.get("criterion", "prune"))
    else:
        data = dict(method)
    if levels is not None:
        try:
            data["levels"] = [float(x) for x in levels.split(",")] if isinstance(levels, str) else list(levels)
        except ValueError:
            raise ConfigError("--levels", f"expected comma-separated sparsities, got {levels!r}") from None
    if epochs is not None:
        data["epochs"] = epochs
    if lr is not None:
        data["lr"] = lr
    for assignment in overrides or []:
        set_override(data, assignment)
    if device is not None:
        data["device"] = device
    try:
        return TwinMethod.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        if isinstance(cause := (first.get("ctx") or {}).get("error"), ConfigError):  # names its own field
            raise ConfigError(f"method.{cause.field}", cause.message) from None
        loc = ".".join(str(p) for p in first["loc"]) or "method"
        raise ConfigError(
            f"method.{loc}", first["msg"].removeprefix("Value error, ") + f" (got {first.get('input')!r})"
        ) from None


class LogWeightSparsity(Callback):
    """Adds ``sparsity_ratio`` (zero fraction of the conv/linear weights) to each epoch's metrics."""

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        metrics["sparsity_ratio"] = weight_sparsity(trainer.model)


def weight_sparsity(model) -> float:
    params = prunable_parameters(model).values()
    total = sum(p.numel() for p in params)
    return sum(int((p == 0).sum()) for p in params) / total if total else 0.0


def prune_once(model, spec: TwinMethod, level: float, params: Mapping[str, Any], data):
    """One-shot masks at ``level`` (data-dependent criteria score ``spec.batches`` training batches),
    applied to ``model`` in place; returns the MaskSet."""
    from prunezoo.data import BatchLoader  # deferred: prunezoo.data loads torchvision

    loader = BatchLoader(data.train, params["batch_size"], shuffle=True, seed=params["seed"])
    batches = [b for _, b in zip(range(spec.batches), loader)]
    masks = prune(
        model, 1.0 - level, criterion=spec.criterion, scheme=spec.scheme, seed=params["seed"], batches=batches
    )
    masks.apply(model)
    return masks


def _twin_start(zoo: str, set_name: str, model_name: str, spec: TwinMethod, level: float | None):
    source = Path(zoo) / model_name
    try:
        params = read_json(source / layout.PARAMS_FILE)
        epoch = spec.source_epoch if spec.source_epoch is not None else layout.list_epochs(source)[-1]
        state = layout.checked_state(source, epoch)
    except CorruptFileError as err:
        raise CorruptFileError(
            err.path,
            f"{err.reason}; the zoo model {source} is damaged: remove that directory "
            "and run `prunezoo zoo generate` again to redo it",
        ) from None
    model = layout.build_member_model(params)
    model.load_state_dict(state)
    lr = spec.learning_rate(params)
    twin_params = {
        **{k: v for k, v in params.items() if k != "runtime"},  # the twin trains with its method's runtime
        "original": model_name,
        "method": spec.name,
        "kind": spec.kind,
        "level": level,
        "source_epoch": epoch,
        "twin": spec.stored(),
        "epochs": spec.fine_tune_epochs,
        "lr": lr,
        **({"runtime": r} if (r := spec.hashed_runtime()) else {}),
    }
    return params, model, twin_params


def twin_chunk(
    zoo: str,
    set_name: str,
    names: list[str],
    method: dict[str, Any],
    level: float,
    threads: int = 1,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Pruned twins of several models at once on ``device`` with the population trainer (``trainer: batched``)."""
    with contextlib.ExitStack() as stack:
        for name in sorted(names):  # one order for every process: no deadlock
            stack.enter_context(layout.model_lock(layout.twin_set_dir(zoo, set_name), name))
        return _twin_chunk(zoo, set_name, names, method, level, threads, device)


def _twin_chunk(
    zoo: str,
    set_name: str,
    names: list[str],
    method: dict[str, Any],
    level: float,
    threads: int = 1,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    import torch

    from prunezoo.zoo.population import train_population  # heavy; only in batched mode

    spec = TwinMethod.model_validate(method)
    set_dir = layout.twin_set_dir(zoo, set_name)
    todo = [n for n in names if not layout.model_done(set_dir / n)]
    torch.set_num_threads(threads)
    dirs, specs, masks, states, rows, firsts = [], [], [], [], [], []
    target = member_runtime({}, device).resolve()
    for name in todo:
        params, model, twin_params = _twin_start(zoo, set_name, name, spec, level)
        model.to(target)  # masks scored on the device (the population moves the states there too)
        data = zoo_data(params["dataset"])
        seed_everything(params["seed"])
        masks.append(prune_once(model, spec, level, params, data))
        layout.clear_model_dir(set_dir / name)
        layout.write_params(set_dir / name, twin_params)
        dirs.append(set_dir / name)
        specs.append(member_spec(params, lr=twin_params["lr"]))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        rows.append([])
        firsts.append(twin_params)
    if not todo:
        return [layout.read_done(set_dir / n)["final"] for n in names]

    def on_epoch(i: int, epoch: int, state: dict, metrics: dict) -> None:
        layout.save_state(dirs[i], epoch, state)
        zeros = sum(int((state[n] == 0).sum()) for n in masks[i])
        total = sum(state[n].numel() for n in masks[i])
        rows[i].append(pick_row(metrics, epoch) | {"sparsity_ratio": zeros / total})
        layout.write_results(dirs[i], rows[i])
        if epoch == spec.fine_tune_epochs:
            layout.mark_done(dirs[i], rows[i], trainer="batched")

    first = firsts[0]
    train_population(
        first["model"],
        base_model_options(first),
        zoo_data(first["dataset"]),
        specs,
        epochs=spec.fine_tune_epochs,
        batch_size=first["batch_size"],
        masks=masks,
        init_states=states,
        on_epoch=on_epoch,
        device=target,
        precision=spec.precision,
    )
    return [layout.read_done(set_dir / n)["final"] for n in names]


def twin_one(
    zoo: str,
    set_name: str,
    model_name: str,
    method: dict[str, Any],
    level: float | None,
    threads: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    """Make one twin on ``device`` (a runner task); returns its final result line."""
    with layout.model_lock(layout.twin_set_dir(zoo, set_name), model_name):
        return _twin_one(zoo, set_name, model_name, method, level, threads, device)


def _twin_one(
    zoo: str,
    set_name: str,
    model_name: str,
    method: dict[str, Any],
    level: float | None,
    threads: int = 1,
    device: str = "cpu",
) -> dict[str, Any]:
    import torch

    spec = TwinMethod.model_validate(method)
    twin_dir = layout.twin_set_dir(zoo, set_name) / model_name
    if layout.model_done(twin_dir):
        return layout.read_done(twin_dir)["final"]
    layout.clear_model_dir(twin_dir)
    torch.set_num_threads(threads)
    params, model, twin_params = _twin_start(zoo, set_name, model_name, spec, level)
    runtime = member_runtime(twin_params, device)
    model.to(runtime.resolve())
    data = zoo_data(params["dataset"])
    seed_everything(params["seed"])
    layout.write_params(twin_dir, twin_params)
    cfg = training_config(twin_params, epochs=spec.fine_tune_epochs, lr=twin_params["lr"])
    evals = {s: getattr(data, s) for s in ("test", "val") if getattr(data, s) is not None and len(getattr(data, s))}
    extra: dict[str, Any] = {}

    def train(final_model, rows: list[dict], callbacks: list, state_of=None) -> None:
        layout.save_state(twin_dir, 0, (state_of or (lambda m: m.state_dict()))(final_model))
        layout.write_results(twin_dir, rows)
        Trainer(
            final_model, data.train, cfg, eval_sets=evals, callbacks=callbacks, progress=False, runtime=runtime
        ).fit()

    if spec.kind == "prune":
        masks = prune_once(model, spec, level, params, data)
        rows = [eval_row(model, data, 0, precision=runtime.precision) | {"sparsity_ratio": weight_sparsity(model)}]
        train(model, rows, [EnforceMasks(masks), LogWeightSparsity(), StoreEpochs(twin_dir, rows)])
    else:
        # the same VD fine-tuning as a study's ``vd`` kind (reparam.finetune_variational), plus the twin's logging
        model.eval()
        original = eval_row(model, data, 0, precision=runtime.precision)

        def fit(vd, kl_callbacks: list) -> list[dict]:
            converted = eval_row(vd.eval(), data, 0, precision=runtime.precision)
            vd.train()
            extra["sanity"] = {
                "original_test_loss": original["test_loss"],
                "original_test_acc": original["test_acc"],
                "converted_test_loss": converted["test_loss"],
                "converted_test_acc": converted["test_acc"],
            }
            rows = [converted | {"sparsity_ratio": sparsity_ratio(vd)}]
            store = StoreEpochs(twin_dir, rows, state_of=lambda m: from_variational(m)[0].state_dict())
            train(vd, rows, [*kl_callbacks, store], store.state_of)
            return rows

        _, _, rows = finetune_variational(
            model,
            len(data.train),
            fit,
            threshold=spec.threshold,
            schedule=spec.kl_schedule,
            ramp_to=spec.ramp_to,
            ramp_length=spec.ramp_length,
        )
    layout.mark_done(twin_dir, rows, **extra)
    return rows[-1]


def make_twins(
    zoo: str | Path,
    method: TwinMethod,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    progress: bool | None = None,
    models: list[str] | None = None,
) -> dict[str, Any]:
    """Twins of every finished model of ``zoo`` (or of ``models``) for every level of ``method``."""
    zoo = Path(zoo)
    check_runtime(method, executor, "method.")  # device, precision: before any twin set is written
    try:
        zoo_cfg = layout.read_zoo_config(zoo)
        names = models if models is not None else [p.name for p in layout.list_models(zoo)]
    except FileNotFoundError as err:
        raise ConfigError("zoo", str(err)) from None
    if not names:
        raise ConfigError("zoo", f"{zoo} has no finished models; run `prunezoo zoo generate` first")
    method_dict = method.stored()  # what the set records and compares (not where it runs)
    task_method = method.model_dump(mode="json", exclude=set(PLACEMENT_FIELDS))  # a worker rebuilds the TwinMethod
    sets = method.set_names()
    for set_name, level in sets.items():
        set_dir = layout.twin_set_dir(zoo, set_name)
        if (set_dir / layout.CONFIG_FILE).exists():
            old = layout.read_zoo_config(set_dir).get("method")
            if old is not None and {k: v for k, v in old.items() if k != "levels"} != {
                k: v for k, v in method_dict.items() if k != "levels"
            }:
                raise ConfigError(
                    "method",
                    f"twin set {set_name} already exists with other settings {old}; give the method another name",
                )
        layout.write_zoo_config(
            set_dir,
            {
                "kind": "twins",
                "name": set_name,
                "method": method_dict,
                "level": level,
                "dataset": zoo_cfg.get("dataset"),
                "zoo": "../..",
            },
            f"# Twin set {set_name}\n\nTwins of the models of {zoo.name} "
            f"(params.json `original` names each one's dense model).\n",
        )
    tasks = [(str(zoo), s, n, task_method, lv) for s, lv in sets.items() for n in names]
    todo = [t for t in tasks if not layout.model_done(layout.twin_set_dir(zoo, t[1]) / t[2])]
    t0 = time.perf_counter()
    common = dict(
        executor=executor,
        workers=workers,
        threads=threads,
        address=address,
        progress=progress,
        description=f"twins {method.name}",
        device=method.device,
        gpus_per_job=method.gpus_per_job,
    )
    if method.trainer == "batched":
        chunks = []
        for set_name, level in sets.items():
            left = [t[2] for t in todo if t[1] == set_name]
            chunks += [
                (str(zoo), set_name, left[i : i + method.chunk_size], task_method, level)
                for i in range(0, len(left), method.chunk_size)
            ]
        run_tasks(
            twin_chunk, chunks, labels=[f"{c[1]} chunk" for c in chunks], weights=[len(c[2]) for c in chunks], **common
        )
    else:
        run_tasks(twin_one, todo, labels=[f"{t[1]}/{t[2]}" for t in todo], **common)
    summary: dict[str, Any] = {
        "trained": len(todo),
        "skipped": len(tasks) - len(todo),
        "seconds": time.perf_counter() - t0,
        "sets": {},
    }
    for set_name in sets:
        finals = [layout.read_done(layout.twin_set_dir(zoo, set_name) / n) for n in names]
        finals = [f["final"] for f in finals if f is not None]
        mean = lambda k, finals=finals: (
            sum(f.get(k, float("nan")) for f in finals) / len(finals) if finals else float("nan")
        )
        summary["sets"][set_name] = {
            "models": len(names),
            "done": len(finals),
            "test_acc": mean("test_acc"),
            "sparsity_ratio": mean("sparsity_ratio"),
        }
    return summary
