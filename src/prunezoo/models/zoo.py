"""The model-zoo CNNs ``cnn-s`` and ``cnn-l`` (ModelZooDataset architectures), with named layers.

The original code stores layers in a ModuleList whose indices shift when dropout is enabled; here
layers are named (conv1..conv3, fc1, fc2), so parameter names are the same with or without dropout.

- cnn-s (28x28, 1 or 3 channels): Conv(c,8,5) MaxPool2 act [Drop] Conv(8,6,5) MaxPool2 act [Drop]
  Conv(6,4,2) act Flatten(36) Linear(36,20) act [Drop] Linear(20,10): 2,464 params (c=1), 2,864 (c=3).
- cnn-l (3x32x32): Conv(3,16,3) MP act Drop Conv(16,32,3) MP act Drop Conv(32,15,3) MP act Drop
  Flatten(60) Linear(60,20) act Drop Linear(20,10): 10,853 params.

Defaults follow the seed zoo: tanh activation, no dropout; ``init=None`` keeps PyTorch's init
(the seed zoo itself used ``init="uniform"``). The flatten width adapts to other input sizes.
"""

from __future__ import annotations

import torch
from torch import nn

from prunezoo.models.init import check_init, init_weights
from prunezoo.models.layers import check_activation, check_dropout, flat_features, image_shape, make_activation
from prunezoo.models.registry import register_model


class ZooCNN(nn.Module):
    """Three conv blocks then fc1 -> act -> drop -> fc2. ``pool3`` toggles the third max-pool (cnn-l)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        channels: tuple[int, int, int],
        kernels: tuple[int, int, int],
        pool3: bool,
        hidden: int,
        activation: str,
        dropout: float,
        model: str,
    ):
        super().__init__()
        c_in = input_shape[0]
        c1, c2, c3 = channels
        k1, k2, k3 = kernels
        self.conv1 = nn.Conv2d(c_in, c1, k1)
        self.pool1 = nn.MaxPool2d(2)
        self.act1 = make_activation(activation)
        self.drop1 = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c1, c2, k2)
        self.pool2 = nn.MaxPool2d(2)
        self.act2 = make_activation(activation)
        self.drop2 = nn.Dropout(dropout)
        self.conv3 = nn.Conv2d(c2, c3, k3)
        # cnn-s has neither pooling nor dropout after conv3; cnn-l has both.
        self.pool3 = nn.MaxPool2d(2) if pool3 else nn.Identity()
        self.act3 = make_activation(activation)
        self.drop3 = nn.Dropout(dropout) if pool3 else nn.Identity()
        self.fc1 = nn.Linear(flat_features(self.features, input_shape, model), hidden)
        self.act4 = make_activation(activation)
        self.drop4 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act1(self.pool1(self.conv1(x))))
        x = self.drop2(self.act2(self.pool2(self.conv2(x))))
        return self.drop3(self.act3(self.pool3(self.conv3(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        return self.fc2(self.drop4(self.act4(self.fc1(x))))


@register_model("cnn-s")
def cnn_s(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    activation: str = "tanh",
    dropout: float = 0.0,
    init: str | None = None,
) -> ZooCNN:
    """Model-zoo CNN-s (8-6-4 convs, fc 20; 2,464 params on 1x28x28) (options: activation, dropout, init)."""
    check_activation(activation)
    dropout = check_dropout(dropout)
    check_init(init)
    model = ZooCNN(
        image_shape(input_shape, "cnn-s"),
        num_classes,
        channels=(8, 6, 4),
        kernels=(5, 5, 2),
        pool3=False,
        hidden=20,
        activation=activation,
        dropout=dropout,
        model="cnn-s",
    )
    return init_weights(model, init)


@register_model("cnn-l")
def cnn_l(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    activation: str = "tanh",
    dropout: float = 0.0,
    init: str | None = None,
) -> ZooCNN:
    """Model-zoo CNN-l (16-32-15 convs, fc 20; 10,853 params on 3x32x32) (options: activation, dropout, init)."""
    check_activation(activation)
    dropout = check_dropout(dropout)
    check_init(init)
    model = ZooCNN(
        image_shape(input_shape, "cnn-l"),
        num_classes,
        channels=(16, 32, 15),
        kernels=(3, 3, 3),
        pool3=True,
        hidden=20,
        activation=activation,
        dropout=dropout,
        model="cnn-l",
    )
    return init_weights(model, init)
