"""``vgg16-cifar``: VGG-16 with BatchNorm for 32x32 inputs (as in RigL / random-pruning papers).

13 bias-free 3x3 convs (64,64,M,128,128,M,256x3,M,512x3,M,512x3,M), each + BN + ReLU, then a
single ``fc`` Linear(512, num_classes). Prunable weights (conv + fc weights) total 14,715,584 for
10 classes. Layers are ``features.conv1..conv13`` (with ``bnK``, ``actK``, ``pool1..pool5``) and ``fc``.
Inputs must be at least 32x32 (five 2x2 poolings); a global average pool before ``fc`` is a no-op
at 32x32 and lets larger images through.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.layers import check_positive_float, image_shape
from prunezoo.models.registry import register_model

CFG_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, cfg=CFG_VGG16, width_multiplier: float = 1.0):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c, conv_i, pool_i = in_channels, 0, 0
        for v in cfg:
            if v == "M":
                pool_i += 1
                layers[f"pool{pool_i}"] = nn.MaxPool2d(2)
            else:
                conv_i += 1
                out = max(1, round(v * width_multiplier))
                layers[f"conv{conv_i}"] = nn.Conv2d(c, out, 3, padding=1, bias=False)
                layers[f"bn{conv_i}"] = nn.BatchNorm2d(out)
                layers[f"act{conv_i}"] = nn.ReLU()
                c = out
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@register_model("vgg16-cifar")
def vgg16_cifar(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    width_multiplier: float = 1.0,
) -> VGG:
    """VGG-16-BN for CIFAR: 13 bias-free 3x3 convs + Linear(512, classes) (options: width_multiplier)."""
    mult = check_positive_float(width_multiplier, "width_multiplier")
    c, h, w = image_shape(input_shape, "vgg16-cifar")
    if min(h, w) < 32:
        raise ConfigError(
            "input_shape",
            f"model 'vgg16-cifar' needs images of at least 32x32 (five 2x2 poolings), got {tuple(input_shape)}",
        )
    return VGG(c, num_classes, CFG_VGG16, mult)
