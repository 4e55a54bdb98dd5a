"""Iterative pruning (IMP, lottery tickets): train, prune a fraction of the *remaining* weights,
reset, repeat. Level 0 is the dense run; level L keeps (1 - fraction)^L of the prunable weights.

Reset modes (Frankle & Carbin 2019; Frankle et al. 2020; Renda et al. 2020):
  rewind-init  reset survivors to the initial weights W0 and retrain the full schedule;
  rewind       reset to W_k, the weights after ``rewind_step`` steps, and resume data order and
               LR schedule at step k;
  lr-rewind    keep the trained weights, retrain with the full LR schedule from step 0;
  finetune     keep the trained weights, train with the (smaller) fine-tuning config;
  reinit       draw fresh random weights (the random-reinit control) and train from step 0.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from prunezoo.pruning import imp_keep_count, prune
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.selection import prunable_parameters
from prunezoo.training.callbacks import Callback, EnforceMasks, SnapshotAtStep
from prunezoo.training.checkpoint import latest_checkpoint, load_state, save_state
from prunezoo.utils.io import write_json


class ResetMode(str, Enum):
    REWIND_INIT = "rewind-init"
    REWIND = "rewind"
    LR_REWIND = "lr-rewind"
    FINETUNE = "finetune"
    REINIT = "reinit"


@dataclass
class IterativeSchedule:
    levels: int
    fraction: float = 0.2
    reset: ResetMode = ResetMode.REWIND_INIT
    rewind_step: int = 0

    def __post_init__(self):
        self.reset = ResetMode(self.reset)
        if self.levels < 0:
            raise ValueError(f"levels must be >= 0, got {self.levels}")
        if not 0 < self.fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
        if self.rewind_step < 0:
            raise ValueError(f"rewind_step must be >= 0, got {self.rewind_step}")

    def keep_counts(self, total: int) -> list[int]:
        """Kept weights at levels 0..L (OpenLTH rule: remove ceil(fraction * remaining))."""
        counts = [total]
        for _ in range(self.levels):
            counts.append(imp_keep_count(counts[-1], self.fraction))
        return counts

    def densities(self, total: int) -> list[float]:
        return [c / total for c in self.keep_counts(total)]


@dataclass
class LevelResult:
    level: int
    density: float
    masks: MaskSet
    history: list[dict]
    state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


# make_trainer(model, callbacks, finetune) -> Trainer
TrainerFactory = Callable[[nn.Module, Sequence[Callback], bool], object]


def run_iterative(
    model: nn.Module,
    make_trainer: TrainerFactory,
    schedule: IterativeSchedule,
    *,
    criterion: str | Callable = "magnitude",
    scheme: str = "global",
    reinit: Callable[[nn.Module, int], None] | None = None,
    initial_masks: MaskSet | None = None,
    seed: int = 0,
    keep_states: bool = False,
    on_level: Callable[[LevelResult], None] | None = None,
    workdir: str | Path | None = None,
    **prune_options,
) -> list[LevelResult]:
    """Run levels 0..L in place on ``model``; returns one LevelResult per level.

    ``initial_masks`` (e.g. a random ER mask) makes it sparse-to-sparse: every later mask stays
    inside it, and level 0 is trained at that mask's density.
    With ``workdir`` every level persists (``level_XX/``: masks, final weights, history; per-epoch
    checkpoints while it trains), so a killed run resumes at the level and epoch it reached.
    """
    wd = Path(workdir) if workdir is not None else None
    selection = {k: prune_options[k] for k in ("include", "exclude") if k in prune_options}
    params = prunable_parameters(model, **selection)
    masks = initial_masks.clone() if initial_masks is not None else MaskSet.dense(params)
    masks.apply(model)
    init_state = _copy(model.state_dict())
    rewind_path = wd / "rewind.safetensors" if wd is not None else None
    snapshot = SnapshotAtStep(schedule.rewind_step, rewind_path) if schedule.reset is ResetMode.REWIND else None
    total = sum(p.numel() for p in params.values())
    results: list[LevelResult] = []
    for level in range(schedule.levels + 1):
        level_dir = wd / f"level_{level:02d}" if wd is not None else None
        if level_dir is not None and (level_dir / "result.json").exists():
            masks = MaskSet.load(level_dir / "masks.safetensors")
            model.load_state_dict(load_state(level_dir / "final.safetensors"))
            history = json.loads((level_dir / "result.json").read_text())["history"]
            if snapshot is not None and snapshot.state is None and rewind_path.exists():
                snapshot.state = load_state(rewind_path)
            result = LevelResult(
                level, masks.density(), masks.clone(), history, _copy(model.state_dict()) if keep_states else {}
            )
            results.append(result)
            if on_level is not None:
                on_level(result)
            continue
        start_step, finetune = 0, False
        if level > 0:
            keep = imp_keep_count(masks.nnz(), schedule.fraction)
            masks = prune(
                model,
                keep / total,
                criterion=criterion,
                scheme=scheme,
                masks=masks,
                seed=seed + level,
                **prune_options,
            )
            mode = schedule.reset
            if mode is ResetMode.REWIND_INIT:
                model.load_state_dict(init_state)
            elif mode is ResetMode.REWIND:
                model.load_state_dict(snapshot.state)
                start_step = schedule.rewind_step
            elif mode is ResetMode.FINETUNE:
                finetune = True
            elif mode is ResetMode.REINIT:
                (reinit or reset_parameters)(model, seed + 7919 * level)
            masks.apply(model)
        callbacks: list[Callback] = [EnforceMasks(masks)]
        if level == 0 and snapshot is not None:
            callbacks.append(snapshot)
        trainer = make_trainer(model, callbacks, finetune)
        ckpt = level_dir / "checkpoint" if level_dir is not None else None
        resume = ckpt if ckpt is not None and latest_checkpoint(ckpt) is not None else None
        history = trainer.fit(start_step=start_step, checkpoint_dir=ckpt, resume_from=resume)
        if level == 0 and snapshot is not None and snapshot.state is None:
            raise ValueError(f"rewind_step={schedule.rewind_step} is beyond the {trainer.total_steps} training steps")
        result = LevelResult(
            level, masks.density(), masks.clone(), history, _copy(model.state_dict()) if keep_states else {}
        )
        if level_dir is not None:
            masks.save(level_dir / "masks.safetensors")
            save_state(level_dir / "final.safetensors", model.state_dict())
            write_json(level_dir / "result.json", {"level": level, "density": result.density, "history": history})
            shutil.rmtree(ckpt, ignore_errors=True)  # the level's final state supersedes its checkpoints
        results.append(result)
        if on_level is not None:
            on_level(result)
    return results


def reset_parameters(model: nn.Module, seed: int) -> None:
    """Fresh default initialisation of every module that defines ``reset_parameters``."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}
