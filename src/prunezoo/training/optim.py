"""Optimizers and per-step learning-rate schedules (a pure function of the step, so runs can resume
at any step — e.g. lottery-ticket rewinding to step k resumes the schedule at k)."""

from __future__ import annotations

import math

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
