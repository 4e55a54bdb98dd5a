"""LeNet-5 in its two common variants.

- ``classic`` (~61.7k parameters on 1x28x28): conv 6@5x5 (padding 2, so 28x28 behaves like the
  original 32x32), pool, conv 16@5x5, pool, fc 120, fc 84, fc 10.
- ``caffe`` (431,080 parameters on 1x28x28): conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10 —
  the "LeNet-5" of Han et al. and most sparsification papers. The Caffe prototxt has no
  nonlinearity after its convolutions; like most PyTorch ports we apply the activation there too
  (parameter counts are unaffected).

Defaults are ReLU and max-pooling for both; ``activation="tanh", pool="avg"`` gives the
LeCun-style classic network.
"""

from __future__ import annotations

import torch
from torch import nn

from prunezoo.models.init import check_init, init_weights
from prunezoo.models.layers import check_activation, flat_features, image_shape, make_activation
from prunezoo.models.registry import option_error, register_model

# (conv1 channels, conv2 channels, conv1 padding, hidden fc widths)
_VARIANTS = {
    "classic": (6, 16, 2, (120, 84)),
    "caffe": (20, 50, 0, (500,)),
}
_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class LeNet5(nn.Module):
    """conv1, conv2 (each followed by act and 2x2 pool), then fc1..fcN."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        variant: str = "classic",
        activation: str = "relu",
        pool: str = "max",
    ):
        super().__init__()
        c1, c2, pad, hidden = _VARIANTS[variant]
        self.conv1 = nn.Conv2d(input_shape[0], c1, 5, padding=pad)
        self.act1 = make_activation(activation)
        self.pool1 = _POOLS[pool](2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.act2 = make_activation(activation)
        self.pool2 = _POOLS[pool](2)
        widths = [flat_features(self.features, input_shape, "lenet5"), *hidden, num_classes]
        self.num_fc = len(widths) - 1
        for i in range(1, self.num_fc + 1):
            self.add_module(f"fc{i}", nn.Linear(widths[i - 1], widths[i]))
            if i < self.num_fc:
                self.add_module(f"act{i + 2}", make_activation(activation))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        return self.pool2(self.act2(self.conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        for i in range(1, self.num_fc):
            x = getattr(self, f"act{i + 2}")(getattr(self, f"fc{i}")(x))
        return getattr(self, f"fc{self.num_fc}")(x)


@register_model("lenet5")
def lenet5(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    variant: str = "classic",
    activation: str = "relu",
    pool: str = "max",
    init: str | None = None,
) -> LeNet5:
    """LeNet-5, variant 'classic' (6-16-120-84) or 'caffe' (20-50-500) (options: variant, activation, pool, init)."""
    if variant not in _VARIANTS:
        raise option_error("variant", f"unknown variant {variant!r}; known: {sorted(_VARIANTS)}")
    if pool not in _POOLS:
        raise option_error("pool", f"unknown pool {pool!r}; known: {sorted(_POOLS)}")
    check_activation(activation)
    check_init(init)
    model = LeNet5(image_shape(input_shape, "lenet5"), num_classes, variant, activation, pool)
    return init_weights(model, init)
