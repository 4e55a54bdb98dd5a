"""Helpers shared by several test modules."""

from __future__ import annotations

import torch
from torch import nn


def randomize_bn(model: nn.Module) -> None:
    """Fresh BNs are identities (γ=1, β=0, μ=0, σ²=1); random statistics make equality tests meaningful."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.1)
