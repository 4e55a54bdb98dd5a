"""CIFAR ResNets: ``resnet-cifar`` (He et al. 2016, depth 6n+2) and ``resnet18-cifar``.

Both use BasicBlocks (3x3 conv-BN-ReLU, 3x3 conv-BN, add shortcut, ReLU) with bias-free convs and
a global-average-pool + ``fc`` head, so they accept any image size.

Shortcuts where the shape changes: ``"B"`` (default) is a 1x1 strided conv + BN, stored as
``<block>.shortcut.conv`` / ``<block>.shortcut.bn``. ``"A"`` is He et al.'s parameter-free option for
CIFAR (subsample, zero-pad channels): ResNet-20 has 269,722 parameters with A, 272,474 with B
(10 classes). A is offered for comparisons with papers, but structured pruning needs real modules
on both sides of each residual addition, hence B by default. ResNet-18 (B) has 11,173,962.

Initialisation: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 / bias 0, PyTorch-default ``fc``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.models.layers import check_positive_float, check_positive_int, image_shape
from prunezoo.models.registry import option_error, register_alias, register_model

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Option-A shortcut: spatial subsampling by ``stride`` and zero-padding of new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(planes),
                )
            )
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv1/bn1, stages ``layer1..layerK`` of BasicBlocks, global average pool, ``fc``."""

    def __init__(
        self, in_channels: int, widths: Sequence[int], blocks: Sequence[int], num_classes: int, shortcut: str = "B"
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU()
        in_planes = widths[0]
        for i, (planes, n) in enumerate(zip(widths, blocks, strict=True), start=1):
            stride = 1 if i == 1 else 2
            stage = []
            for j in range(n):
                stage.append(BasicBlock(in_planes, planes, stride if j == 0 else 1, shortcut))
                in_planes = planes
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.num_stages = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.pool(x).flatten(1))


def _check_shortcut(shortcut: str) -> str:
    s = str(shortcut).upper()
    if s not in SHORTCUTS:
        raise option_error("shortcut", f"unknown shortcut {shortcut!r}; known: {list(SHORTCUTS)}")
    return s


@register_model("resnet-cifar")
def resnet_cifar(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    depth: int = 20,
    width: int = 16,
    shortcut: str = "B",
) -> ResNet:
    """CIFAR ResNet of depth 6n+2 (20/32/44/56/110), stages width/2x/4x (options: depth, width, shortcut)."""
    depth = check_positive_int(depth, "depth")
    if depth < 8 or (depth - 2) % 6:
        raise option_error("depth", f"must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
    width = check_positive_int(width, "width")
    shortcut = _check_shortcut(shortcut)
    if shortcut == "A" and width % 2:
        raise option_error("width", f"shortcut 'A' pads channels symmetrically; use an even width, got {width}")
    shape = image_shape(input_shape, "resnet-cifar")
    n = (depth - 2) // 6
    model = ResNet(shape[0], [width, 2 * width, 4 * width], [n, n, n], num_classes, shortcut)
    return model


@register_model("resnet18-cifar")
def resnet18_cifar(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width_multiplier: float = 1.0,
    shortcut: str = "B",
) -> ResNet:
    """ResNet-18 for CIFAR: 3x3 stem, no max-pool, 64-128-256-512 (options: width_multiplier, shortcut)."""
    mult = check_positive_float(width_multiplier, "width_multiplier")
    shortcut = _check_shortcut(shortcut)
    widths = [max(1, round(w * mult)) for w in (64, 128, 256, 512)]
    shape = image_shape(input_shape, "resnet18-cifar")
    model = ResNet(shape[0], widths, [2, 2, 2, 2], num_classes, shortcut)
    return model


# literal names: prunezoo.names reads them from this source without importing torch
register_alias(
    "resnet20", "resnet-cifar", fixed={"depth": 20}, description="ResNet-20 for CIFAR (resnet-cifar depth=20)"
)
register_alias(
    "resnet32", "resnet-cifar", fixed={"depth": 32}, description="ResNet-32 for CIFAR (resnet-cifar depth=32)"
)
register_alias(
    "resnet44", "resnet-cifar", fixed={"depth": 44}, description="ResNet-44 for CIFAR (resnet-cifar depth=44)"
)
register_alias(
    "resnet56", "resnet-cifar", fixed={"depth": 56}, description="ResNet-56 for CIFAR (resnet-cifar depth=56)"
)
register_alias(
    "resnet110", "resnet-cifar", fixed={"depth": 110}, description="ResNet-110 for CIFAR (resnet-cifar depth=110)"
)
