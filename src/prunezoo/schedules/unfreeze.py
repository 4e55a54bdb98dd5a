"""Gradual unfreezing for sparse transfer (back to front, one stage per block, LR rewound per stage).

The stage plan works on module-name prefixes ("blocks"), not on a model class:

* stage 0: the head, every bias and every normalisation parameter train; the rest is frozen;
* stages 1..n: the blocks' parameters are unfrozen one block per stage, last block first;
* stage n+1: everything trains (embeddings and whatever no block covers included).

Each stage lasts ``stage_steps`` optimizer steps; the learning rate decays linearly to 0 within a
stage and is rewound to its base value at the first step of the next one. A frozen parameter has
``requires_grad=False``, so its ``.grad`` stays None (the trainer zeroes grads with ``set_to_none``)
and torch's optimizers skip it entirely: no weight decay, no momentum, bit-identical weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.training.callbacks import Callback

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def under(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` belongs to the module ``prefix`` ("" is the whole model)."""
    return not prefix or name == prefix or name.startswith(prefix + ".")


def find_blocks(model: nn.Module, blocks: Sequence[str] | None = None, field: str = "blocks") -> list[str]:
    """The block prefixes, first to last: ``blocks`` when given (each must name a module with
    parameters), else the model's ``prunezoo_block_names()``, else ``model.blocks`` (an ``nn.ModuleList``).
    ConfigError naming ``field`` otherwise."""
    modules = dict(model.named_modules())
    if blocks is None and callable(getattr(model, "prunezoo_block_names", None)):  # the model says (transformer)
        blocks = list(model.prunezoo_block_names())
    if blocks is None:
        found = getattr(model, "blocks", None)
        if not isinstance(found, nn.ModuleList) or len(found) == 0:
            children = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
            raise ConfigError(
                field,
                f"cannot tell the blocks of model {type(model).__name__} (no 'blocks' ModuleList): list their "
                f"module names first to last, e.g. {children}",
            )
        return [f"blocks.{i}" for i in range(len(found))]
    if not blocks:
        raise ConfigError(field, "must list at least one block")
    for b in blocks:
        if b not in modules or not b:
            raise ConfigError(field, f"no module {b!r} in model {type(model).__name__}; modules: {sorted(modules)[1:]}")
        if not any(True for _ in modules[b].parameters()):
            raise ConfigError(field, f"module {b!r} has no parameters")
    if len(set(blocks)) != len(blocks):
        raise ConfigError(field, f"blocks listed twice: {sorted({b for b in blocks if list(blocks).count(b) > 1})}")
    for a in blocks:
        for b in blocks:
            if a != b and under(b, a):
                raise ConfigError(field, f"block {b!r} lies inside block {a!r}")
    return list(blocks)


def always_trainable(model: nn.Module, head: str) -> set[str]:
    """Parameters that train from stage 0: the head's, every bias, every normalisation layer's."""
    names: set[str] = set()
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if under(full, head) or p_name == "bias" or isinstance(module, NORM_TYPES):
                names.add(full)
    return names


def unfreeze_stages(model: nn.Module, blocks: Sequence[str], head: str) -> list[set[str]]:
    """Trainable parameter names per stage: head + biases + norms, then one more block per stage from
    the last block to the first, then every parameter."""
    names = [n for n, _ in model.named_parameters()]
    current = always_trainable(model, head)
    stages = [set(current)]
    for block in reversed(blocks):
        current |= {n for n in names if under(n, block)}
        stages.append(set(current))
    stages.append(set(names))
    return stages


class GradualUnfreeze(Callback):
    """Applies :func:`unfreeze_stages` (stage ``k`` during steps ``[k, k+1) * stage_steps``) and the
    per-stage linear LR decay with rewinds. Sets the LR after the trainer's own (``on_step_begin``),
    so the training config's ``lr_schedule`` is overridden; a resumed run recomputes the stage from
    the step. ``lr``: the base LR each stage rewinds to; ``stage_steps`` (default: ``stage_epochs``
    epochs of the trainer)."""

    def __init__(self, stages: list[set[str]], *, lr: float, stage_steps: int | None = None, stage_epochs: int = 1):
        if stage_steps is not None and stage_steps < 1:
            raise ValueError(f"stage_steps must be >= 1, got {stage_steps}")
        if stage_epochs < 1:
            raise ValueError(f"stage_epochs must be >= 1, got {stage_epochs}")
        self.stages, self.lr, self.stage_epochs = stages, lr, stage_epochs
        self.stage_steps = stage_steps
        self.stage: int | None = None
        self.stage_log: list[tuple[int, int]] = []  # (step, stage) at every stage change

    def stage_at(self, step: int) -> int:
        assert self.stage_steps is not None
        return min(step // self.stage_steps, len(self.stages) - 1)

    def lr_at(self, step: int) -> float:
        assert self.stage_steps is not None
        within = step - self.stage_at(step) * self.stage_steps
        return self.lr * (1.0 - within / self.stage_steps)

    def _set_stage(self, model: nn.Module, stage: int, step: int) -> None:
        trainable = self.stages[stage]
        for name, p in model.named_parameters():
            p.requires_grad_(name in trainable)
        self.stage = stage
        self.stage_log.append((step, stage))

    def on_train_begin(self, trainer) -> None:
        if self.stage_steps is None:
            self.stage_steps = trainer.steps_per_epoch * self.stage_epochs
        self._set_stage(trainer.model, self.stage_at(trainer.step), trainer.step)

    def on_step_begin(self, trainer, step: int) -> None:
        stage = self.stage_at(step)
        if stage != self.stage:
            self._set_stage(trainer.model, stage, step)
        lr = self.lr_at(step)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr

    def on_train_end(self, trainer) -> None:
        for p in trainer.model.parameters():  # the model leaves training fully trainable again
            p.requires_grad_(True)


def frozen_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that are frozen now (tests and diagnostics)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
