"""Run a pruning study: train dense once, then every configured method; collect one row per
(method, sparsity) with accuracy, nnz, compression and dense/sparse FLOPs.

A study is written to ``<out>/<config-hash>/`` only when complete: it is built in a temporary
sibling directory and renamed at the end, so an error or interrupt leaves nothing half-written.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from prunezoo.allocation import allocate
from prunezoo.data import load_dataset
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import MethodConfig, StudyConfig
from prunezoo.experiments.store import RunStore
from prunezoo.models import build_model
from prunezoo.models.flops import dense_flops, layer_flops
from prunezoo.schedules import GradualMagnitudePruning, IterativeSchedule, OneShot, run_iterative
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.selection import prunable_parameters
from prunezoo.training import Trainer, seed_everything
from prunezoo.utils.io import write_json, write_text

STORE_NAME = "index.sqlite"

ROW_FIELDS = [
    "method", "kind", "level", "target_sparsity", "sparsity", "nnz", "prunable", "compression",
    "test_acc", "test_loss", "train_loss", "flops_dense", "flops_sparse", "flop_speedup",
]


@dataclass
class StudyResult:
    config: StudyConfig
    directory: Path
    rows: list[dict]
    reused: bool = False


def _row(method: str, kind: str, level: int | None, target: float, masks: MaskSet, metrics: dict, flops: dict,
         total_flops: int) -> dict:
    dens = masks.layer_densities()
    sparse = total_flops - sum(f * (1.0 - dens.get(n, 1.0)) for n, f in flops.items())
    return {
        "method": method,
        "kind": kind,
        "level": level,
        "target_sparsity": round(target, 6),
        "sparsity": round(masks.sparsity(), 6),
        "nnz": masks.nnz(),
        "prunable": masks.numel(),
        "compression": masks.numel() / max(masks.nnz(), 1),
        "test_acc": metrics.get("test_acc"),
        "test_loss": metrics.get("test_loss"),
        "train_loss": metrics.get("train_loss"),
        "flops_dense": total_flops,
        "flops_sparse": int(round(sparse)),
        "flop_speedup": total_flops / max(sparse, 1.0),
    }


def run_study(
    cfg: StudyConfig,
    out_root: str | Path = "runs",
    *,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    force: bool = False,
) -> StudyResult:
    out_root = Path(out_root)
    final_dir = out_root / f"{cfg.name}-{cfg.hash()}"
    if (final_dir / "results.json").exists() and not force:
        import json

        log(f"study already complete: {final_dir}")
        return StudyResult(cfg, final_dir, json.loads((final_dir / "results.json").read_text())["rows"], reused=True)

    out_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=out_root))
    try:
        rows, histories = _execute(cfg, work, progress=progress, log=log)
        write_json(work / "results.json", {"config_hash": cfg.hash(), "rows": rows})
        write_text(work / "results.csv", rows_to_csv(rows))
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(work, final_dir)
        RunStore(out_root / STORE_NAME).record_study(
            final_dir.name, cfg.name, cfg.hash(), final_dir, cfg.model_dump(mode="json"), "complete", rows, histories
        )
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return StudyResult(cfg, final_dir, rows)


def _execute(
    cfg: StudyConfig, work: Path, *, progress: bool | None, log: Callable[[str], None]
) -> tuple[list[dict], dict[str, list[dict]]]:
    write_text(work / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    d = cfg.dataset
    splits = load_dataset(
        d.name, root=d.root, download=d.download, val_fraction=d.val_fraction, noise_rate=d.noise_rate,
        noise_kind=d.noise_kind, noise_seed=d.noise_seed, **d.options,
    )
    seed_everything(cfg.seed)
    model = build_model(cfg.model.name, num_classes=splits.num_classes, input_shape=splits.input_shape,
                        **cfg.model.options)
    _preflight(cfg, model)
    init_state = _copy(model.state_dict())
    eval_sets = {"test": splits.test} | ({"val": splits.val} if splits.val is not None else {})
    flops = layer_flops(model, splits.input_shape)
    total_flops = dense_flops(model, splits.input_shape)

    def make_trainer(m: nn.Module, callbacks, finetune: bool, label: str) -> Trainer:
        tcfg = cfg.finetune if finetune else cfg.training
        return Trainer(m, splits.train, tcfg, eval_sets=eval_sets, callbacks=callbacks, progress=progress,
                       description=label)

    log(f"dense: training {cfg.model.name} on {d.name} ({len(splits.train)} train samples)")
    dense_hist = make_trainer(model, [], False, "dense").fit()
    dense_state = _copy(model.state_dict())
    dense_masks = MaskSet.dense(prunable_parameters(model))
    rows = [_row("dense", "dense", 0, 0.0, dense_masks, dense_hist[-1], flops, total_flops)]
    histories = {"dense": dense_hist}

    for method in cfg.methods:
        opts = _prune_options(method)
        if method.kind == "imp":
            model.load_state_dict(init_state)
            schedule = IterativeSchedule(method.levels, method.fraction, method.reset, method.rewind_step)
            log(f"{method.name}: {method.levels} levels, {method.fraction:.0%} of remaining per level")

            def factory(m, cbs, finetune, _name=method.name):
                return make_trainer(m, cbs, finetune, f"{_name}")

            levels = run_iterative(model, factory, schedule, criterion=method.criterion, scheme=method.scheme,
                                   seed=cfg.seed, **opts)
            for res in levels[1:]:
                rows.append(_row(method.name, "imp", res.level, 1 - res.density, res.masks, res.final, flops,
                                 total_flops))
                res.masks.save(work / "masks" / f"{method.name}-L{res.level:02d}.safetensors")
                histories[f"{method.name}/L{res.level}"] = res.history
            continue
        for sparsity in method.sparsities:
            label = f"{method.name}@{sparsity:g}"
            log(f"{label}")
            if method.kind == "oneshot":
                model.load_state_dict(dense_state)
                sched = OneShot(1 - sparsity, criterion=method.criterion, scheme=method.scheme, seed=cfg.seed,
                                **opts)
                hist = make_trainer(model, [sched], True, label).fit()
            else:  # gmp: sparsify gradually while training from the initial weights
                model.load_state_dict(init_state)
                sched = GradualMagnitudePruning(sparsity, frequency=method.gmp_frequency,
                                                end_epoch=0.75 * cfg.training.epochs, criterion=method.criterion,
                                                scheme=method.scheme, seed=cfg.seed, **opts)
                hist = make_trainer(model, [sched], False, label).fit()
            rows.append(_row(method.name, method.kind, None, sparsity, sched.masks, hist[-1], flops, total_flops))
            sched.masks.save(work / "masks" / f"{method.name}-{sparsity:g}.safetensors")
            histories[label] = hist
    write_json(work / "histories.json", histories)
    return rows, histories


def _prune_options(method: MethodConfig) -> dict:
    opts: dict = {}
    if method.include is not None:
        opts["include"] = method.include
    if method.exclude is not None:
        opts["exclude"] = method.exclude
    if method.keep_dense:
        opts["keep_dense"] = method.keep_dense
    if method.overrides:
        opts["overrides"] = method.overrides
    opts.update(method.scheme_options)
    return opts


def _preflight(cfg: StudyConfig, model: nn.Module) -> None:
    """Reject bad allocation settings before any training time is spent."""
    for i, method in enumerate(cfg.methods):
        densities = [1 - s for s in method.sparsities] or [(1 - method.fraction) ** method.levels]
        for density in densities:
            try:
                allocate(model, density, method.scheme, **_prune_options(method))
            except ConfigError as err:
                raise ConfigError(f"methods[{i}].{err.field}", str(err).split(": ", 1)[-1]) from None


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}
