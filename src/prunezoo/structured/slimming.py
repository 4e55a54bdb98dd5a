"""Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network
Slimming"): train with an L1 penalty λ Σ|γ| on BatchNorm scales, then remove the channels with the
smallest |γ| under one global threshold (criterion ``bn-scale``, scope ``global``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from prunezoo.structured.prune import prune_channels
from prunezoo.training.callbacks import Callback

if TYPE_CHECKING:
    from prunezoo.structured.prune import StructuredResult
    from prunezoo.training.trainer import Trainer


def batchnorm_scales(model: nn.Module) -> list[torch.Tensor]:
    return [
        m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
    ]


class BatchNormL1(Callback):
    """Adds ``weight * Σ|γ|`` over every BatchNorm of ``trainer.model`` to the training loss.

    The subgradient it contributes to γ is ``weight * sign(γ)`` (the paper's λ, 1e-4 for CIFAR).
    """

    def __init__(self, weight: float = 1e-4):
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = float(weight)

    def extra_loss(self, trainer: Trainer, step: int) -> torch.Tensor | None:
        scales = batchnorm_scales(trainer.model)
        if not scales or self.weight == 0:
            return None
        return self.weight * sum(g.abs().sum() for g in scales)


def slim(
    model: nn.Module, example_input: torch.Tensor, ratio: float, *, ignored_layers: Sequence[str] | None = None
) -> StructuredResult:
    """Prune ``ratio`` of all channels by a global |γ| threshold (after training with BatchNormL1)."""
    return prune_channels(
        model, example_input, ratio, criterion="bn-scale", scope="global", ignored_layers=ignored_layers
    )
