"""Inference export of a (dense or compacted) model: the deployment step every latency is taken on.

``deploy`` folds each BatchNorm into the Conv/Linear before it (eval statistics; torch.fx's
``fuse``) and, for 2-D convolutional models, runs in channels-last (NHWC) memory format. Both are
standard export steps and change no output (up to float rounding). They matter for the *ratio* of
pruned to dense latency on CPU: in the default NCHW layout oneDNN reorders every activation into
its blocked layout and back, and the un-folded BatchNorm is a separate pass over the activation —
costs proportional to activation size (halved by 50 % channel pruning) rather than to FLOPs (quartered),
so they cap the measured speed-up of thin compacted ResNets (profiled: see docs/performance.md).
Dense and compacted models must get the same treatment; :func:`compare_latency` takes both.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ChannelsLast(nn.Module):
    """Runs ``inner`` (whose 4-D parameters are channels-last) on a channels-last copy of the input."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a Conv/Linear (whose
    output nothing else reads) folded into that layer's weight and bias. Models torch.fx cannot
    trace are returned as an unfolded eval copy (``count_batchnorm`` tells how many remain)."""
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        return fuse(model, inplace=True)
    except Exception:
        return model


def count_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def deploy(model: nn.Module, *, fold_bn: bool = True, channels_last: bool = True) -> nn.Module:
    """Inference copy of ``model``: BN folded (``fold_bn``), NHWC when it has 2-D convs (``channels_last``).
    The original is left untouched; the copy is in eval mode and meant for ``torch.inference_mode``."""
    out = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    if channels_last and any(isinstance(m, nn.Conv2d) for m in out.modules()):
        out = ChannelsLast(out).eval()
    return out
