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
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunezoo.criteria import TRAINING_CRITERIA, make_tracker
from prunezoo.data import load_dataset
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import BranchConfig, DataConfig, MethodConfig, ModelConfig
from prunezoo.models import build_model
from prunezoo.models.flops import dense_flops, layer_flops
from prunezoo.schedules import GradualMagnitudePruning, IterativeSchedule, run_iterative
from prunezoo.schedules.iterative import ResetMode
from prunezoo.pruning import prune
from prunezoo.sparsity import MaskSet, prunable_parameters
from prunezoo.training import Trainer, TrainingConfig, seed_everything
from prunezoo.training.callbacks import EnforceMasks, SnapshotAtStep, StopAtStep, TrainingFlops
from prunezoo.training.checkpoint import META_FILE, latest_checkpoint, load_state, remove_checkpoint, save_state
from prunezoo.utils.io import (
    CorruptFileError,
    clean_staging,
    file_lock,
    quarantine,
    read_json,
    remove_tree,
    verify_file,
    verify_tree,
    write_json,
)

RESULT_FILE = "result.json"
REINIT_SEED_OFFSET = 1_000_003  # random-reinit control: a different, still reproducible, init


@functools.lru_cache(maxsize=4)
def dataset_splits(dataset_json: str):
    d = DataConfig.model_validate(json.loads(dataset_json))
    return load_dataset(d.name, root=d.root, download=d.download, val_fraction=d.val_fraction,
                        noise_rate=d.noise_rate, noise_kind=d.noise_kind, noise_seed=d.noise_seed, **d.options)


@dataclass
class JobContext:
    """What every job kind needs: data, a model builder, trainer factory and FLOP tables."""

    spec: dict[str, Any]
    directory: Path
    root: Path

    def __post_init__(self) -> None:
        self.seed = self.spec["seed"]
        self.splits = dataset_splits(json.dumps(self.spec["dataset"], sort_keys=True))
        self.model_cfg = ModelConfig.model_validate(self.spec["model"])
        self.training = TrainingConfig.model_validate({**self.spec["training"], "seed": self.seed})
        ft = self.spec.get("finetune")
        self.finetune = TrainingConfig.model_validate({**ft, "seed": self.seed}) if ft is not None else None
        probe = self.build_model()
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
            noise = apply_label_noise(test.y, data.noise_rate, data.noise_kind, self.splits.num_classes,
                                      seed=data.noise_seed + 1)
            self.eval_sets["test_noisy"] = test.with_labels(noise.labels)

    def build_model(self, seed: int | None = None) -> nn.Module:
        seed_everything(self.seed if seed is None else seed)
        return build_model(self.model_cfg.name, num_classes=self.splits.num_classes,
                           input_shape=self.splits.input_shape, **self.model_cfg.options)

    def trainer(self, model: nn.Module, callbacks=(), finetune: bool = False) -> Trainer:
        cfg = self.finetune if finetune else self.training
        counter = TrainingFlops(self.flops, self.total_flops)
        self.flop_counters.append(counter)
        return Trainer(model, self.splits.train, cfg, eval_sets=self.eval_sets, callbacks=[*callbacks, counter],
                       progress=False)

    @property
    def train_flops(self) -> float:
        """Training FLOPs of every trainer this job ran (3 × density-weighted forward per sample)."""
        return sum(c.flops for c in self.flop_counters)

    def fit(self, trainer: Trainer, name: str = "checkpoint", start_step: int = 0) -> list[dict]:
        ckpt = self.directory / name
        resume = ckpt if latest_checkpoint(ckpt) is not None else None
        return trainer.fit(start_step, checkpoint_dir=ckpt, resume_from=resume)

    def score_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``n`` training batches (fixed order) for data-dependent criteria."""
        from prunezoo.data import BatchLoader

        loader = BatchLoader(self.splits.train, self.training.batch_size, shuffle=True, seed=self.seed)
        loader.set_epoch(0)
        return [batch for _, batch in zip(range(n), loader)]

    def start_masks(self, model: nn.Module, method: MethodConfig) -> MaskSet | None:
        """Sparse-to-sparse start: the random ER mask later masks must stay inside (or None)."""
        if method.start is None:
            return None
        from prunezoo.pruning import random_er_masks

        st = method.start
        return _masks_once(self.directory / "start-masks.safetensors", lambda: random_er_masks(
            model, st.density, st.scheme, seed=self.seed, flow_preservation=st.flow_preservation,
            **prune_options(method)))

    def method(self, name: str, extra: dict | None = None) -> MethodConfig:
        return MethodConfig.model_validate({"name": name, **self.spec["method"], **(extra or {})})

    def row(self, masks: MaskSet, metrics: dict, **fields) -> dict:
        dens = masks.layer_densities()
        sparse = self.total_flops - sum(f * (1.0 - dens.get(n, 1.0)) for n, f in self.flops.items())
        return {
            **fields,
            "sparsity": round(masks.sparsity(), 6),
            "nnz": masks.nnz(),
            "prunable": masks.numel(),
            "compression": masks.numel() / max(masks.nnz(), 1),
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


def prune_options(method: MethodConfig) -> dict:
    opts: dict = dict(method.scheme_options)
    for key in ("include", "exclude"):
        if getattr(method, key) is not None:
            opts[key] = getattr(method, key)
    if method.keep_dense:
        opts["keep_dense"] = method.keep_dense
    if method.overrides:
        opts["overrides"] = method.overrides
    if method.pattern is not None:  # N:M: every prune() of the method keeps the pattern
        opts["pattern"] = method.pattern
    return opts


def scoring_criterion(method: MethodConfig):
    """The method's criterion, scoring in ``options.score_mode`` when given (else its paper's mode)."""
    from prunezoo.criteria import SCORING_MODES, criterion_with_mode, make_obs

    mode = method.options.get("score_mode")
    fisher = {k: v for k, v in method.options.items() if k in ("block_size", "damp", "num_samples", "per_sample")}
    if method.criterion == "obs" and fisher:  # update: false masks by saliency alone; its Fisher options still apply
        return make_obs(**fisher, mode=mode or SCORING_MODES["obs"])
    return criterion_with_mode(method.criterion, mode)


def _masks_once(path: Path, make: Callable[[], MaskSet]) -> MaskSet:
    # Masks are computed once and saved before training, so a resumed job never re-derives them.
    if path.exists():
        return load_masks(path)
    masks = make()
    masks.save(path)
    return masks


def load_masks(path: Path) -> MaskSet:
    """A saved MaskSet, checked against its recorded checksum; damage raises CorruptFileError."""
    verify_file(path)
    try:
        return MaskSet.load(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors' own error type for torn files
        raise CorruptFileError(path, f"unreadable masks ({err})") from None


def _one(suffix: str, row: dict, history: list[dict], masks: MaskSet) -> dict:
    return {"rows": [{"suffix": suffix, **row}], "histories": {suffix: history},
            "layers": {suffix: masks.layer_densities()}}


# -- job kinds ------------------------------------------------------------------------------------
def _dense(ctx: JobContext, job: dict) -> dict:
    model = ctx.build_model()
    if not (ctx.directory / "init.safetensors").exists():
        save_state(ctx.directory / "init.safetensors", model.state_dict())
    history = ctx.fit(ctx.trainer(model))
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    masks = MaskSet.dense(prunable_parameters(model))
    return _one("", ctx.row(masks, history[-1], kind="dense", level=None, target_sparsity=0.0), history, masks)


def _oneshot(ctx: JobContext, job: dict) -> dict:
    sparsity = ctx.spec["sparsity"]
    method = ctx.method(job["method"], {"sparsities": [sparsity]})
    model = ctx.build_model()
    start = ctx.start_masks(model, method)
    model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
    if method.criterion == "obs" and method.options.get("update", True):
        masks = _obs_pruned_once(ctx, model, method, 1.0 - sparsity, start)
    else:
        masks = _masks_once(ctx.directory / "masks.safetensors", lambda: prune(
            model, 1.0 - sparsity, criterion=scoring_criterion(method), scheme=method.scheme, seed=ctx.seed,
            masks=start, batches=ctx.score_batches(method.batches), **prune_options(method)))
    masks.apply(model)
    history = ctx.fit(ctx.trainer(model, [EnforceMasks(masks)], finetune=True))
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    return _one("", ctx.row(masks, history[-1], kind="oneshot", level=None, target_sparsity=sparsity), history, masks)


def _obs_pruned_once(ctx: JobContext, model: nn.Module, method: MethodConfig, density: float,
                     start: MaskSet | None) -> MaskSet:
    """OBS prunes *and* corrects the surviving weights (joint update per Fisher block); the corrected
    weights are saved before the masks, so a resumed job reloads both instead of re-deriving them."""
    from prunezoo.criteria import obs_prune

    weights, mask_path = ctx.directory / "obs-pruned.safetensors", ctx.directory / "masks.safetensors"
    if mask_path.exists() and weights.exists():
        model.load_state_dict(load_state(weights))
        return load_masks(mask_path)
    opts = {k: v for k, v in method.options.items() if k != "update"}  # block_size, damp... (checked in config)
    if "score_mode" in opts:
        opts["mode"] = opts.pop("score_mode")
    masks = obs_prune(model, density, ctx.score_batches(method.batches), scheme=method.scheme, masks=start,
                      seed=ctx.seed, **opts, **prune_options(method))
    save_state(weights, model.state_dict())
    masks.save(mask_path)
    return masks


def _at_init(ctx: JobContext, job: dict) -> dict:
    """Prune at initialisation (SNIP, GraSP, SynFlow...; ``rounds`` > 1 = iterative), then train."""
    from prunezoo.pruning import prune_iteratively

    sparsity = ctx.spec["sparsity"]
    method = ctx.method(job["method"], {"sparsities": [sparsity]})
    model = ctx.build_model()
    start = ctx.start_masks(model, method)
    masks = _masks_once(ctx.directory / "masks.safetensors", lambda: prune_iteratively(
        model, 1.0 - sparsity, criterion=scoring_criterion(method), rounds=method.rounds, scheme=method.scheme,
        seed=ctx.seed, masks=start, batches=ctx.score_batches(method.batches),
        **{k: v for k, v in method.options.items() if k != "score_mode"}, **prune_options(method)))
    masks.apply(model)
    history = ctx.fit(ctx.trainer(model, [EnforceMasks(masks)]))
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    return _one("", ctx.row(masks, history[-1], kind="at-init", level=None, target_sparsity=sparsity), history, masks)


def _gmp(ctx: JobContext, job: dict) -> dict:
    sparsity = ctx.spec["sparsity"]
    method = ctx.method(job["method"], {"sparsities": [sparsity]})
    model = ctx.build_model()
    start = ctx.start_masks(model, method)
    from_dense = bool(method.options.get("from_dense"))  # prune while fine-tuning the trained dense model
    if from_dense:
        model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
    criterion, trackers = method.criterion, []
    if criterion in TRAINING_CRITERIA:  # movement: scores accumulated by a callback during this training
        trackers = [make_tracker(criterion, **_selection(method))]
        criterion = trackers[0].criterion
    epochs = (ctx.finetune if from_dense else ctx.training).epochs
    sched = GradualMagnitudePruning(sparsity, frequency=method.gmp_frequency, end_epoch=0.75 * epochs,
                                    criterion=criterion, scheme=method.scheme, seed=ctx.seed, masks=start,
                                    **prune_options(method))
    history = ctx.fit(ctx.trainer(model, [*trackers, sched], finetune=from_dense))
    masks = sched.masks
    masks.save(ctx.directory / "masks.safetensors")
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    return _one("", ctx.row(masks, history[-1], kind="gmp", level=None, target_sparsity=sparsity), history, masks)


def schedule_callback(method: MethodConfig, sparsity: float, start: MaskSet | None = None, seed: int = 0):
    """The training-time callback of a dynamic method (its constructor options come from YAML)."""
    opts = {**prune_options(method), **method.options}
    try:
        if method.kind == "dst":  # RigL (grow: gradient, default) or SET (grow: random); ERK unless told
            from prunezoo.schedules import DynamicSparseTraining

            scheme = "erk" if method.scheme == "global" else method.scheme
            return DynamicSparseTraining(sparsity, scheme=scheme, masks=start, seed=seed, **opts)
        from prunezoo.schedules import ACDC

        return ACDC(sparsity, criterion=method.criterion, scheme=method.scheme, seed=seed, **opts)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"methods[{method.name}].options", str(err)) from None


def _dynamic(ctx: JobContext, job: dict) -> dict:
    """Methods whose masks change during training from init: RigL/SET (``dst``) and AC/DC."""
    sparsity = ctx.spec["sparsity"]
    method = ctx.method(job["method"], {"sparsities": [sparsity]})
    model = ctx.build_model()
    sched = schedule_callback(method, sparsity, ctx.start_masks(model, method), ctx.seed)
    history = ctx.fit(ctx.trainer(model, [sched]))
    masks = sched.masks
    masks.save(ctx.directory / "masks.safetensors")
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    result = _one("", ctx.row(masks, history[-1], kind=method.kind, level=None, target_sparsity=sparsity),
                  history, masks)
    result["events"] = {"": sched.events}  # mask updates: IoU, zero fraction per phase...
    return result


def _structured(ctx: JobContext, job: dict) -> dict:
    """Remove a fraction of channels of the trained dense model (Torch-Pruning dependency graph),
    fine-tune the smaller model, save it compacted, measure CPU latency against the dense one."""
    import copy

    from prunezoo.structured import BatchNormL1, apply_structured, compare_latency, deploy, save_compact
    from prunezoo.structured.study import canonical_structured_criterion

    ratio = ctx.spec["sparsity"]
    method = ctx.method(job["method"], {"sparsities": [ratio]})
    model = ctx.build_model()
    model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
    example = ctx.score_batches(1)[0][0][:32]
    dense = copy.deepcopy(model)
    dense_prunable = sum(p.numel() for p in prunable_parameters(model).values())
    options = dict(method.options)
    if canonical_structured_criterion(method.criterion) == "slimming":  # BN-γ L1 fine-tune first (Liu et al. 2017)
        ctx.fit(ctx.trainer(model, [BatchNormL1(float(options.pop("l1", 1e-4)))], finetune=True), name="slimming")
    batches = ctx.score_batches(method.batches)
    try:
        result = apply_structured(model, example[:1], ratio, method.criterion, batches=batches, seed=ctx.seed,
                                  evaluate_fn=lambda m: _batch_accuracy(m, batches), options=options)
    except ConfigError as err:
        raise ConfigError(f"methods[{method.name}].{err.field}", str(err)[len(err.field) + 2:]) from None
    history = ctx.fit(ctx.trainer(model, finetune=True))
    save_compact(model, ctx.directory / "compact", {"model": ctx.model_cfg.name, "num_classes": ctx.splits.num_classes,
                                                     "input_shape": list(ctx.splits.input_shape),
                                                     "options": ctx.model_cfg.options})
    # Deployed (BN folded, channels-last) dense and compact timed in alternating pairs, one thread.
    timing = compare_latency(deploy(dense), deploy(model), example, repeats=20, threads=1)
    dense_latency, latency = timing["baseline_ms"], timing["candidate_ms"]
    nnz = sum(p.numel() for p in prunable_parameters(model).values())
    flops_after = dense_flops(model, ctx.splits.input_shape)
    m = history[-1]
    row = {
        "kind": "structured", "level": None, "target_sparsity": ratio,
        "sparsity": round(1 - nnz / dense_prunable, 6), "nnz": nnz, "prunable": dense_prunable,
        "compression": dense_prunable / max(nnz, 1), "test_acc": m.get("test_acc"), "test_loss": m.get("test_loss"),
        "train_loss": m.get("train_loss"), "val_acc": m.get("val_acc"), "test_ece": m.get("test_ece"),
        "train_flops": ctx.train_flops, "flops_dense": ctx.total_flops, "flops_sparse": flops_after,
        "flop_speedup": ctx.total_flops / max(flops_after, 1), "latency_ms": latency,
        "latency_dense_ms": dense_latency, "latency_speedup": timing["speedup"],
    }
    kept = {f"{n}.weight" if not n.endswith("weight") else n: result.channels_after[n] / c
            for n, c in result.channels_before.items() if c}
    return {"rows": [{"suffix": "", **row}], "histories": {"": history}, "layers": {"": kept},
            "structured": result.to_dict()}


def _batch_accuracy(model: nn.Module, batches: list) -> float:
    """Accuracy on the scoring batches: the metric a structured sensitivity scan ranks layers by."""
    was = model.training
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    model.train(was)
    return correct / max(sum(len(y) for _, y in batches), 1)


def _selection(method: MethodConfig) -> dict:
    return {k: v for k, v in (("include", method.include), ("exclude", method.exclude)) if v is not None}


def _reparam(ctx: JobContext, job: dict) -> dict:
    """STR and edge-popup: train a reparameterised model from init, then squash it to plain weights."""
    from prunezoo import reparam

    sparsity = ctx.spec.get("sparsity")
    method = ctx.method(job["method"], {"sparsities": [sparsity]} if sparsity is not None else None)
    model = ctx.build_model()
    start = ctx.start_masks(model, method)
    try:
        if method.kind == "str":  # sparsity emerges from the learned thresholds (weight decay on s)
            reparam.apply_str(model, allowed=start, **_selection(method), **method.options)
        else:
            scheme = "uniform" if method.scheme == "global" else method.scheme
            from prunezoo.allocation import layer_densities

            dens = layer_densities(model, 1 - sparsity, scheme, **prune_options(method))
            reparam.apply_edge_popup(model, dens, allowed=start, seed=ctx.seed, **_selection(method), **method.options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"methods[{method.name}].options", str(err)) from None
    history = ctx.fit(ctx.trainer(model))
    masks = reparam.squash_str(model) if method.kind == "str" else reparam.squash_edge_popup(model)
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    masks.save(ctx.directory / "masks.safetensors")
    target = sparsity if sparsity is not None else round(masks.sparsity(), 6)
    return _one("", ctx.row(masks, history[-1], kind=method.kind, level=None, target_sparsity=target), history, masks)


VD_MODEL_OPTIONS = ("log_sigma2_init", "threshold")


def _vd(ctx: JobContext, job: dict) -> dict:
    """Sparse variational dropout on the trained dense model (the model-zoo twin recipe), trained
    with the fine-tuning config; weights with log α ≥ threshold are pruned."""
    from prunezoo import reparam

    method = ctx.method(job["method"])
    model = ctx.build_model()
    model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
    model_opts = {k: v for k, v in method.options.items() if k in VD_MODEL_OPTIONS}
    loss_opts = {k: v for k, v in method.options.items() if k not in VD_MODEL_OPTIONS}
    try:
        vd = reparam.to_variational(model, inplace=True, **_selection(method), **model_opts)
        kl = reparam.VariationalDropoutLoss(len(ctx.splits.train), **loss_opts)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"methods[{method.name}].options", str(err)) from None
    history = ctx.fit(ctx.trainer(vd, [kl], finetune=True))
    plain, masks = reparam.from_variational(vd)
    save_state(ctx.directory / "final.safetensors", plain.state_dict())
    masks.save(ctx.directory / "masks.safetensors")
    return _one("", ctx.row(masks, history[-1], kind="vd", level=None, target_sparsity=round(masks.sparsity(), 6)),
                history, masks)


def _imp(ctx: JobContext, job: dict) -> dict:
    method = ctx.method(job["method"])
    model = ctx.build_model()
    schedule = IterativeSchedule(method.levels, method.fraction, method.reset, method.rewind_step)
    levels = run_iterative(model, lambda m, cbs, ft: ctx.trainer(m, cbs, ft), schedule, criterion=method.criterion,
                           scheme=method.scheme, seed=ctx.seed, workdir=ctx.directory,
                           initial_masks=ctx.start_masks(model, method), **prune_options(method))
    out: dict = {"rows": [], "histories": {}, "layers": {}}
    # Levels are trained at fixed masks, so their FLOPs follow from density (resumed levels ran no counter).
    samples = lambda cfg: (cfg.steps if cfg.steps is not None else cfg.epochs * math.ceil(  # noqa: E731
        len(ctx.splits.train) / cfg.batch_size)) * cfg.batch_size
    cumulative = 0.0
    for res in levels:
        cfg = ctx.finetune if res.level > 0 and method.reset is ResetMode.FINETUNE else ctx.training
        cumulative += 3.0 * ctx.row(res.masks, {})["flops_sparse"] * samples(cfg)
        if res.level == 0:
            continue
        suffix = f"/L{res.level:02d}"
        row = ctx.row(res.masks, res.final, kind="imp", level=res.level, target_sparsity=round(1 - res.density, 6))
        row["train_flops"] = cumulative
        out["rows"].append({"suffix": suffix, **row})
        out["histories"][suffix] = res.history
        out["layers"][suffix] = res.masks.layer_densities()
    return out


def _branch(ctx: JobContext, job: dict) -> dict:
    branch = BranchConfig.model_validate({"name": job["method"], **ctx.spec["branch"]})
    level = ctx.spec["level"]
    parent = ctx.root / ctx.spec["parent"]
    ticket = load_masks(parent / f"level_{level:02d}" / "masks.safetensors")
    start_step, finetune = 0, False
    if branch.kind == "random-reinit":
        model, masks = ctx.build_model(ctx.seed + REINIT_SEED_OFFSET), ticket
    elif branch.kind == "random-mask":
        model = ctx.build_model()
        masks = _masks_once(ctx.directory / "masks.safetensors", lambda: prune(
            model, ticket.density(), criterion="random", scheme="explicit", densities=ticket.layer_densities(),
            seed=ctx.seed + level))
    elif branch.kind == "rewind":
        model, masks, start_step = ctx.build_model(), ticket, branch.rewind_step
        if start_step > 0:
            snap = SnapshotAtStep(start_step, ctx.directory / "rewind.safetensors")
            if not snap.path.exists():
                ctx.trainer(model, [snap, StopAtStep(start_step)]).fit()
            model.load_state_dict(load_state(snap.path))
    else:  # finetune: the previous level's trained weights under this level's mask
        model, masks, finetune = ctx.build_model(), ticket, True
        model.load_state_dict(load_state(parent / f"level_{level - 1:02d}" / "final.safetensors"))
    masks.apply(model)
    history = ctx.fit(ctx.trainer(model, [EnforceMasks(masks)], finetune=finetune), start_step=start_step)
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    row = ctx.row(masks, history[-1], kind="branch", level=level, target_sparsity=round(ticket.sparsity(), 6))
    return _one("", row, history, masks)


def _srste(ctx: JobContext, job: dict) -> dict:
    """SR-STE (Zhou et al. 2021): train N:M from init with the pattern recomputed from the dense
    weights every step, then bake the final N:M mask into the weights."""
    from prunezoo.reparam.srste import apply_srste, squash_srste

    sparsity = ctx.spec["sparsity"]
    method = ctx.method(job["method"], {"sparsities": [sparsity]})
    model = ctx.build_model()
    try:
        apply_srste(model, method.pattern, **_selection(method), **method.options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"methods[{method.name}].options", str(err)) from None
    history = ctx.fit(ctx.trainer(model))
    masks = squash_srste(model)
    save_state(ctx.directory / "final.safetensors", model.state_dict())
    masks.save(ctx.directory / "masks.safetensors")
    return _one("", ctx.row(masks, history[-1], kind="sr-ste", level=None, target_sparsity=sparsity), history, masks)


RUNNERS: dict[str, Callable[[JobContext, dict], dict]] = {
    "dense": _dense, "oneshot": _oneshot, "at-init": _at_init, "gmp": _gmp, "imp": _imp, "branch": _branch,
    "dst": _dynamic, "acdc": _dynamic, "structured": _structured, "str": _reparam, "edge-popup": _reparam,
    "vd": _vd, "sr-ste": _srste,
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


RUNNERS.update({k: _with_sparse_latency(v) for k, v in RUNNERS.items() if k not in ("dense", "branch", "structured")})


MAX_REPAIRS = 8  # damaged files repaired within one execute_job call before giving up


def execute_job(job: dict, root: str | Path, threads: int | None = None) -> dict:
    """Run (or resume, or just read back) one job; returns its result dict.

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
        for attempt in range(MAX_REPAIRS + 1):
            try:
                result = RUNNERS[job["kind"]](JobContext(job["spec"], directory, root), job)
                break
            except CorruptFileError as err:
                if not err.path.is_relative_to(directory) or not err.path.exists():
                    raise CorruptFileError(err.path, f"{err.reason} (needed by job {job['id']}; run the "
                                                     "study again to redo the job that wrote it)") from None
                if attempt == MAX_REPAIRS:
                    raise
                _invalidate(directory, err)
        write_json(directory / RESULT_FILE, result)
        _tidy(directory)
        return result


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
