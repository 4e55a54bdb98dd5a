"""Optimizers and per-step learning-rate schedules (a pure function of the step, so runs can resume
at any step — e.g. lottery-ticket rewinding to step k resumes the schedule at k)."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from prunezoo.training.config import TrainingConfig


def build_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def lr_at(step: int, total_steps: int, steps_per_epoch: int, cfg: TrainingConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based)."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if warmup and step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "step":
        passed = sum(step >= round(m * steps_per_epoch) for m in cfg.milestones)
        return cfg.lr * cfg.gamma**passed
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (1.0 - progress)  # linear decay to 0


ADAM_EPS = 1e-8  # torch.optim's default, which build_optimizer keeps


class StackedOptimizer:
    """``build_optimizer``'s SGD / Adam / AdamW for many models at once, their parameters stacked along
    a leading member dimension, member ``j`` with its own :class:`TrainingConfig` ``configs[j]`` (lr,
    momentum, nesterov, betas, weight decay, LR schedule). The updates are torch.optim's single-tensor
    formulas, element-wise, so row ``j`` follows the update torch.optim makes for member ``j`` alone.

    Every config must name the same optimizer (the state differs). ``step(grads)`` applies the LR of
    the current step (:func:`lr_at`), then advances it.
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        configs: list[TrainingConfig],
        *,
        total_steps: int,
        steps_per_epoch: int,
        start_step: int = 0,
    ):
        kinds = {c.optimizer for c in configs}
        if len(kinds) != 1:
            raise ValueError(f"one optimizer kind per stacked group, got {sorted(kinds)}")
        self.kind = kinds.pop()
        self.params, self.configs = params, configs
        self.total_steps, self.steps_per_epoch, self.step_count = total_steps, steps_per_epoch, start_step

        def vec(values) -> torch.Tensor:  # float64: coefficients computed as torch.optim does, in Python floats
            return torch.tensor([float(v) for v in values], dtype=torch.float64)

        self.weight_decay = vec(c.weight_decay for c in configs)
        self.momentum = vec(c.momentum for c in configs)
        self.nesterov = vec(c.nesterov for c in configs)
        self.beta1, self.beta2 = vec(c.betas[0] for c in configs), vec(c.betas[1] for c in configs)
        self.use_wd = bool((self.weight_decay != 0).any())
        self.use_nesterov = bool(self.nesterov.any())
        self.fixed_lr = None
        if all(c.lr_schedule == "constant" and not c.warmup_epochs for c in configs):
            self.fixed_lr = vec(c.lr for c in configs)
        self.t = 0  # Adam's bias-correction count (steps taken by this optimizer)
        self.state: dict[str, dict[str, torch.Tensor]] = {}

    def lrs(self) -> torch.Tensor:
        """Every member's learning rate for the current step."""
        if self.fixed_lr is not None:
            return self.fixed_lr
        return torch.tensor(
            [lr_at(self.step_count, self.total_steps, self.steps_per_epoch, c) for c in self.configs],
            dtype=torch.float64,
        )

    @staticmethod
    def _per_member(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))  # GPU stacks too

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        lr = self.lrs()
        self.t += 1
        for name, g in grads.items():
            p = self.params[name]
            col = partial(self._per_member, like=p)
            st = self.state.setdefault(name, {})
            if self.kind == "adamw" and self.use_wd:
                p.mul_(col(1 - lr * self.weight_decay))
            elif self.use_wd:
                g = g.add(p * col(self.weight_decay))
            if self.kind == "sgd":
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(col(self.momentum)).add_(g)
                if self.use_nesterov:  # members without nesterov: g + 0 * (buf - g) = buf
                    nest = col(self.nesterov)
                    step = torch.where(nest.bool(), g + col(self.momentum) * buf, buf)
                else:
                    step = buf
                p.sub_(step * col(lr))
                continue
            if not st:
                st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            m, v = st["exp_avg"], st["exp_avg_sq"]
            b1, b2 = self.beta1, self.beta2
            m.lerp_(g, col(1 - b1))
            v.mul_(col(b2)).addcmul_(g, g * col(1 - b2))
            denom = (v.sqrt() / col((1 - b2**self.t).sqrt())).add_(ADAM_EPS)
            p.sub_(m / denom * col(lr / (1 - b1**self.t)))
        self.step_count += 1
