"""``transfer``: sparse transfer learning from a pretrained (pruned) model, its masks fixed.

The pretrained model comes from ``options.pretrain`` (a pretraining job of the same study: its own
dataset, model options and training, pruned with GMP to ``sparsity``; computed once per pretraining
config and seed and shared by every transfer method and task that names the same config) or from
``options.checkpoint`` (a prunezoo job directory, a safetensors or state-dict file). The downstream
model takes every tensor but the head (trained anew) and the pretrained masks, kept exact.

A structured run's directory (or its ``compact/`` folder) as ``options.checkpoint`` starts from the
compacted, channel-removed model itself: its own smaller shapes, its head replaced by a new Linear for
the study's classes, its nonzeros as the masks. Its row counts ``prunable`` and ``flops_dense`` on the
original dense architecture (built for the study's classes), so ``sparsity`` includes the removed channels.

Recipes (the study's ``training`` is the transfer training):

* ``dense``: every weight trains for ``training.epochs`` with the study's LR schedule;
* ``extended``: ``extend`` times longer, the LR scaled by ``lr_scale``;
* ``gradual-unfreeze``: head + biases + norms for ``stage_epochs``, then the blocks unfrozen one per
  stage from the last to the first, then one stage with everything; the LR decays linearly within a
  stage and is rewound at the next (prunezoo.schedules.unfreeze).

Early stopping: the row reports the epoch with the best validation accuracy (``select``; needs
``dataset.val_fraction`` > 0, else the last epoch); ``best_epoch`` says which. With ``patience: k``
training also stops once ``k`` epochs in a row have not improved on the best one (``stopped_epoch``
in the row; none when it ran its full length).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from prunezoo.methods.base import STRICT, FiniteDict, MethodConfig, MethodKind, Planner
from prunezoo.methods.common import one_result
from prunezoo.methods.registry import register_method_kind

RECIPES = ("dense", "extended", "gradual-unfreeze")
PRETRAIN_JOB = "transfer-pretrain"


class TransferConfig(MethodConfig):
    kind: Literal["transfer"]


class PretrainOptions(BaseModel):
    """How the study pretrains the model it transfers (one job per config and seed, shared)."""

    model_config = STRICT
    dataset: FiniteDict = Field(description="the pretraining dataset section (name, options, val_fraction...)")
    model_options: FiniteDict = Field(
        default_factory=dict, description="model options replaced for pretraining (e.g. head: mlm)"
    )
    training: FiniteDict = Field(default_factory=dict, description="the pretraining's training section (its own)")
    sparsity: float = Field(0.0, ge=0, lt=1, description="GMP target during pretraining; 0: dense pretraining")
    gmp_frequency: int = Field(10, ge=1, description="steps between GMP updates")
    scheme: str = Field("global", description="allocation scheme of the pretraining masks")
    exclude: list[str] = Field(default_factory=list, description="more parameters kept dense (the head always is)")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: dict) -> dict:
        if not isinstance(v.get("name"), str):
            raise ValueError("needs a dataset 'name'")
        return v

    @field_validator("training")
    @classmethod
    def _training(cls, v: dict) -> dict:
        from pydantic import ValidationError

        from prunezoo.training import TrainingConfig

        try:
            TrainingConfig.model_validate(v)
        except ValidationError as err:
            e = err.errors()[0]
            raise ValueError(f"{'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        return v

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v: str) -> str:
        from prunezoo.allocation import SCHEME_NAMES

        if v not in SCHEME_NAMES:
            raise ValueError(f"unknown scheme {v!r}; known: {sorted(SCHEME_NAMES)}")
        return v


class TransferOptions(BaseModel):
    model_config = STRICT
    recipe: Literal["dense", "extended", "gradual-unfreeze"] = Field("dense", description="transfer recipe")
    pretrain: PretrainOptions | None = Field(None, description="pretrain within the study (else 'checkpoint')")
    checkpoint: str | None = Field(None, description="start from this prunezoo job dir / weights file")
    masks: str | None = Field(None, description="mask file (default: the checkpoint's, else its zeros)")
    blocks: list[str] | None = Field(
        None, description="gradual-unfreeze: block module names, first to last (default: model.blocks)"
    )
    head: str | None = Field(None, description="the head module (default: 'head', else the last layer)")
    extend: float = Field(2.0, gt=1, description="extended: training length multiplier")
    lr_scale: float = Field(0.5, gt=0, description="extended: LR multiplier")
    stage_epochs: int = Field(1, ge=1, description="gradual-unfreeze: epochs per stage")
    select: Literal["val_acc", "val_loss", "last"] = Field(
        "val_acc", description="early stopping: the reported epoch (best on the validation split, or the last)"
    )
    patience: int | None = Field(
        None, ge=1, description="early stopping: stop after this many epochs without a better 'select' on val"
    )


def transfer_options(method_or_spec: Any) -> TransferOptions:
    opts = method_or_spec.options if isinstance(method_or_spec, MethodConfig) else method_or_spec.get("options", {})
    return TransferOptions.model_validate(opts)


@functools.lru_cache(maxsize=4)
def check_dataset(dataset_json: str) -> None:
    """Build the pretraining dataset once per process (every method naming it is preflighted)."""
    from prunezoo.data import load_dataset

    d = {k: v for k, v in json.loads(dataset_json).items() if k != "noisy_test"}
    load_dataset(d.pop("name"), **d.pop("options", {}), **d)


def best_epoch(history: list[dict], select: str) -> int:
    """Index of the reported epoch: best validation accuracy (ties: the earliest) or loss, or the last
    when there is no validation split."""
    key = "val_acc" if select == "val_acc" else "val_loss"
    if select == "last" or not history or any(h.get(key) is None for h in history):
        return len(history) - 1
    sign = 1.0 if select == "val_acc" else -1.0
    return max(range(len(history)), key=lambda i: (sign * history[i][key], -i))


class EarlyStopping:
    """Requests the trainer's stop once ``patience`` epochs have passed since the best one (:func:`best_epoch`).

    Stateless: the decision is read from ``trainer.history``, which checkpoints carry, so a resumed job
    that had already stopped stops again at once (in ``on_train_begin``) and an interrupted one goes on."""

    def __init__(self, patience: int, select: str):
        self.patience, self.select = patience, select
        self.stopped = False

    def _check(self, trainer) -> None:
        hist = trainer.history
        if hist and len(hist) - 1 - best_epoch(hist, self.select) >= self.patience:
            self.stopped = trainer.stop_requested = True

    def on_train_begin(self, trainer) -> None:
        self._check(trainer)

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        self._check(trainer)

    # The trainer's other hooks (a duck-typed Callback: this module does not import torch at load time).
    def on_epoch_begin(self, *args) -> None: ...
    def on_step_begin(self, *args) -> None: ...
    def on_after_backward(self, *args) -> None: ...
    def on_step_end(self, *args) -> None: ...
    def on_train_end(self, *args) -> None: ...


def compact_source(source: str | None) -> Path | None:
    """The compacted-model folder ``source`` names (a structured run directory or its ``compact/``), or None."""
    from prunezoo.structured.export import ARCH

    if source is None:
        return None
    path = Path(source).expanduser()
    for folder in (path, path / "compact"):
        if (folder / ARCH).is_file():
            return folder
    return None


def compact_start(folder: Path, num_classes: int, head: str | None, seed: int):
    """``(model, spec)``: the compacted model saved in ``folder``, its head a new seeded Linear with
    ``num_classes`` outputs; ``spec`` the original (dense) build spec. ConfigError names ``options.*``."""
    from torch import nn

    from prunezoo.errors import ConfigError
    from prunezoo.models.checkpoints import head_prefix
    from prunezoo.structured.export import ARCH, load_compact
    from prunezoo.training.seeding import seed_everything

    try:
        model = load_compact(folder)
        spec = json.loads((folder / ARCH).read_text())["spec"]
    except ConfigError as err:
        raise ConfigError("options.checkpoint", f"{folder}: {err.field}: {err.message}") from None
    except (OSError, ValueError, KeyError, RuntimeError) as err:  # a damaged or foreign compact folder
        raise ConfigError("options.checkpoint", f"{folder} is not a readable compacted model ({err})") from None
    name = head_prefix(model, head, "options.head")
    old = model.get_submodule(name)
    if not isinstance(old, nn.Linear):
        raise ConfigError("options.head", f"the compacted model's head {name!r} is a {type(old).__name__}, no Linear")
    seed_everything(seed)  # the new head's init, the same on every machine
    parent, _, child = name.rpartition(".")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(model.get_submodule(parent) if parent else model, child, new)
    return model.train(), spec


@register_method_kind
class Transfer(MethodKind):
    """Sparse transfer: a pretrained (GMP-pruned) model, masks fixed, fine-tuned on the study's dataset.

    Recipes dense, extended, gradual-unfreeze; pretraining in the study (options.pretrain, shared by
    every method naming the same config) or from options.checkpoint.
    """

    name = "transfer"
    Config = TransferConfig
    Options = TransferOptions
    has_target = False
    takes_start = False
    sparse_export = False
    sparse_export_note = "not supported for kind 'transfer'"
    job_kinds = (PRETRAIN_JOB,)

    def validate(self, method: MethodConfig) -> None:
        opts = transfer_options(method)
        if (opts.pretrain is None) == (opts.checkpoint is None):
            raise ValueError("options: give exactly one of 'pretrain' (pretrain in the study) or 'checkpoint'")
        if opts.masks is not None and opts.pretrain is not None:
            raise ValueError("options.masks: the pretraining's own masks are used with 'pretrain'")
        if opts.patience is not None and opts.select == "last":
            raise ValueError("options.patience: early stopping needs select 'val_acc' or 'val_loss', not 'last'")

    def job_count(self, method: MethodConfig) -> int:
        return 2 if transfer_options(method).pretrain is not None else 1

    def uses_finetune(self, method: MethodConfig) -> bool:
        return False

    def plan(self, method: MethodConfig, p: Planner) -> None:
        opts = transfer_options(method)
        spec: dict[str, Any] = {"method": p.spec}
        deps: tuple[str, ...] = ()
        if opts.pretrain is not None:
            pre = opts.pretrain
            # Only what the pretraining depends on: equal configs (every recipe, every task) share one job.
            pre_spec = {
                "dataset": pre.dataset,
                "training": pre.training,
                "method": {"pretrain": pre.model_dump(mode="json", exclude_defaults=True, exclude={"dataset"})},
            }
            job = p.add(PRETRAIN_JOB, method.name, f"{method.name}/pretrain", pre_spec, ())
            spec["pretrain"] = job.id
            deps = (job.id,)
        p.add(self.name, method.name, method.name, spec, deps)

    def densities(self, method: MethodConfig) -> list[float]:
        return []

    def preflight(self, method: MethodConfig, model) -> None:
        from prunezoo.errors import ConfigError
        from prunezoo.models.checkpoints import head_prefix, read_masks, start_from
        from prunezoo.schedules.unfreeze import find_blocks

        opts = transfer_options(method)
        if (folder := compact_source(opts.checkpoint)) is not None:  # the compacted model is the start
            model, _ = compact_start(folder, 2, opts.head, 0)
            if opts.masks is not None:
                read_masks(model, opts.masks, head=head_prefix(model, opts.head, "options.head"), field="options.masks")
            if opts.recipe == "gradual-unfreeze":
                find_blocks(model, opts.blocks, "options.blocks")
            return
        head = head_prefix(model, opts.head, "options.head")
        if opts.recipe == "gradual-unfreeze":
            find_blocks(model, opts.blocks, "options.blocks")
        if opts.checkpoint is not None or opts.masks is not None:
            start_from(model, opts.checkpoint, opts.masks, head=head, new_head=True, field="options")
        if opts.pretrain is not None:
            try:
                check_dataset(json.dumps(opts.pretrain.dataset, sort_keys=True))
            except (TypeError, ValueError, OSError) as err:
                raise ConfigError("options.pretrain.dataset", str(err)) from None

    # -- running ---------------------------------------------------------------------------------
    def runners(self) -> dict:
        return {self.name: self.run, PRETRAIN_JOB: self.run_pretrain}

    def run_pretrain(self, ctx, job: dict) -> dict:
        """Pretrain (GMP to ``sparsity``, or dense) and save ``final.safetensors`` + ``masks.safetensors``."""
        from prunezoo.models.checkpoints import head_prefix
        from prunezoo.models.flops import dense_flops, layer_flops
        from prunezoo.schedules import GradualMagnitudePruning
        from prunezoo.sparsity import MaskSet, prunable_parameters
        from prunezoo.training.checkpoint import save_state

        pre = PretrainOptions.model_validate({"dataset": ctx.spec["dataset"], **ctx.spec["method"]["pretrain"]})
        if pre.model_options:
            ctx.model_cfg = ctx.model_cfg.model_copy(update={"options": {**ctx.model_cfg.options, **pre.model_options}})
            probe = ctx.build_model()
            ctx.flops = layer_flops(probe, ctx.splits.input_shape)
            ctx.total_flops = dense_flops(probe, ctx.splits.input_shape)
        model = ctx.build_model()
        exclude = [f"{head_prefix(model)}.*", *pre.exclude]  # the pretraining head is never transferred
        callbacks = []
        if pre.sparsity > 0:
            sched = GradualMagnitudePruning(
                pre.sparsity,
                frequency=pre.gmp_frequency,
                end_epoch=0.75 * ctx.training.epochs,
                criterion="magnitude",
                scheme=pre.scheme,
                seed=ctx.seed,
                exclude=exclude,
            )
            callbacks.append(sched)
        history = ctx.fit(ctx.trainer(model, callbacks))
        masks = sched.masks if pre.sparsity > 0 else MaskSet.dense(prunable_parameters(model, exclude=exclude))
        masks.save(ctx.directory / "masks.safetensors")
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        # No result row: the pretraining task is not the study's; its curves stay under the job id.
        return {"rows": [], "histories": {"": history}, "layers": {"": masks.layer_densities()}}

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.models.checkpoints import head_prefix, start_from
        from prunezoo.schedules.unfreeze import GradualUnfreeze, find_blocks, unfreeze_stages
        from prunezoo.sparsity import MaskSet, prunable_parameters
        from prunezoo.training.callbacks import EnforceMasks
        from prunezoo.training.checkpoint import save_state

        opts = transfer_options(ctx.spec["method"])
        compact = compact_source(opts.checkpoint) if opts.pretrain is None else None
        dense_ref = None  # a compacted start: the original dense model, the row's reference
        if compact is not None:
            model, dense_ref = self._compact_model(ctx, compact, opts)
            head = head_prefix(model, opts.head, "options.head")
            masks = start_from(model, None, opts.masks, head=head, new_head=True, field="options")
        else:
            model = ctx.build_model()
            head = head_prefix(model, opts.head, "options.head")
            source = ctx.root / ctx.spec["pretrain"] if opts.pretrain is not None else opts.checkpoint
            masks = start_from(model, source, opts.masks, head=head, new_head=True, field="options")
        if masks is None:  # a plain state dict or a compacted model: its zeros are the masks
            masks = MaskSet.from_model(model, list(prunable_parameters(model, exclude=[f"{head}.*"])))
        cfg = ctx.training
        callbacks: list = [EnforceMasks(masks)]
        if opts.recipe == "extended":
            update: dict[str, Any] = {"epochs": round(cfg.epochs * opts.extend), "lr": cfg.lr * opts.lr_scale}
            if cfg.steps is not None:
                update["steps"] = round(cfg.steps * opts.extend)
            cfg = cfg.model_copy(update=update)
        elif opts.recipe == "gradual-unfreeze":
            stages = unfreeze_stages(model, find_blocks(model, opts.blocks, "options.blocks"), head)
            cfg = cfg.model_copy(update={"epochs": opts.stage_epochs * len(stages), "steps": None})
            callbacks.append(GradualUnfreeze(stages, lr=cfg.lr, stage_epochs=opts.stage_epochs))
        stopper = None
        if opts.patience is not None:
            if ctx.splits.val is None:
                from prunezoo.errors import ConfigError

                raise ConfigError("options.patience", "early stopping needs a validation split (dataset.val_fraction)")
            stopper = EarlyStopping(opts.patience, opts.select)
            callbacks.append(stopper)
        ctx.training = cfg
        history = ctx.fit(ctx.trainer(model, callbacks))
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        masks.save(ctx.directory / "masks.safetensors")
        best = best_epoch(history, opts.select)
        target = opts.pretrain.sparsity if opts.pretrain is not None else round(masks.sparsity(), 6)
        fields = {
            "kind": self.name,
            "level": None,
            "target_sparsity": target,
            "recipe": opts.recipe,
            "best_epoch": best + 1,
            "stopped_epoch": len(history) if stopper is not None and stopper.stopped else None,
        }
        if dense_ref is None:
            row = ctx.row(masks, history[best], **fields)
        else:
            row = self._compact_row(ctx, model, masks, dense_ref, history[best], head, fields)
        return one_result(row, history, masks)

    @staticmethod
    def _compact_model(ctx, folder: Path, opts: TransferOptions):
        """The compacted start on the job's device, and the dense original built for the study's task;
        the job's FLOP tables become the compact model's (training FLOPs are counted on it)."""
        from prunezoo.errors import ConfigError
        from prunezoo.models import build_model
        from prunezoo.models.flops import dense_flops, layer_flops

        model, spec = compact_start(folder, ctx.splits.num_classes, opts.head, ctx.seed)
        shape = tuple(ctx.splits.input_shape)
        if tuple(spec["input_shape"]) != shape:
            raise ConfigError(
                "options.checkpoint", f"the compacted model takes inputs {tuple(spec['input_shape'])}, the data {shape}"
            )
        dense = build_model(spec["model"], num_classes=ctx.splits.num_classes, input_shape=shape, **spec["options"])
        ctx.flops, ctx.total_flops = layer_flops(model, shape), dense_flops(model, shape)
        return model.to(ctx.device), dense

    @staticmethod
    def _compact_row(ctx, model, masks, dense, metrics: dict, head: str, fields: dict) -> dict:
        """The row of a compacted start: nonzeros of the compact model over the dense original's
        prunable weights (the head excluded, as for masks), FLOPs against the dense original's."""
        from prunezoo.models.flops import dense_flops
        from prunezoo.sparsity import prunable_parameters

        shape = ctx.splits.input_shape
        prunable = sum(p.numel() for p in prunable_parameters(dense, exclude=[f"{head}.*"]).values())
        dens = masks.layer_densities()
        sparse = ctx.total_flops - sum(f * (1.0 - dens.get(n, 1.0)) for n, f in ctx.flops.items())
        row = ctx.row(None, metrics, counts=(masks.nnz(), prunable, sparse), **fields)
        full = dense_flops(dense, shape)
        row.update(flops_dense=full, flop_speedup=full / max(sparse, 1.0), flops_sparse=int(round(sparse)))
        return row
