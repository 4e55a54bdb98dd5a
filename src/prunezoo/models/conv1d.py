"""``conv1d``: the MNIST-1D reference CNN (Greydanus 2020, ``ConvBase``; ~94% test accuracy).

conv1 (1->C, k5, s2, p1), conv2 (C->C, k3, s2, p1), conv3 (C->C, k3, s2, p1), each + ReLU, then a
linear classifier ``fc`` on the flattened features (C=25 and length 40 give 25*5 = 125 features,
5,210 parameters). The classifier width adapts to the sequence length.
"""

from __future__ import annotations

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.init import check_init, init_weights
from prunezoo.models.layers import check_activation, check_positive_int, flat_features, make_activation
from prunezoo.models.registry import register_model


class Conv1dNet(nn.Module):
    def __init__(self, in_channels: int, length: int, num_classes: int, channels: int = 25, activation: str = "relu"):
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.Conv1d(in_channels, channels, 5, stride=2, padding=1)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.act2 = make_activation(activation)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.act3 = make_activation(activation)
        self.fc = nn.Linear(flat_features(self.features, (in_channels, length), "conv1d"), num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # Accept (N, L) as well as (N, C, L): MNIST-1D arrays often come without a channel axis.
        if x.ndim == 2:  # (N, C*L): a (N, C, L) input is used as it is (population training stacks C)
            x = x.reshape(x.shape[0], self.in_channels, -1)
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        return self.act3(self.conv3(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


@register_model("conv1d")
def conv1d(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    channels: int = 25,
    activation: str = "relu",
    init: str | None = None,
) -> Conv1dNet:
    """MNIST-1D CNN: three strided Conv1d layers + linear (options: channels, activation, init)."""
    channels = check_positive_int(channels, "channels")
    check_activation(activation)
    check_init(init)
    if len(input_shape) == 1:
        input_shape = (1, input_shape[0])
    if len(input_shape) != 2:
        raise ConfigError(
            "input_shape", f"model 'conv1d' needs (channels, length) or (length,) inputs, got {tuple(input_shape)}"
        )
    model = Conv1dNet(input_shape[0], input_shape[1], num_classes, channels, activation)
    return init_weights(model, init)
