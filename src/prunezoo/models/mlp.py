"""Fully connected networks: ``mlp`` and its aliases ``lenet-300-100`` and ``gmm-mlp``.

Shapes used in the literature are just hidden-width choices:

- LeNet-300-100 (784-300-100-10): ``hidden=[300, 100]`` (alias ``lenet-300-100``);
- 784-P-10 / 784-P-100-10 (sparse double descent, MNIST): ``hidden=[P]`` / ``hidden=[P, 100]``;
- GMM model 100-P-2, no bias, ReLU, Kaiming-uniform: ``hidden=[P], bias=False,
  init="kaiming_uniform"`` with ``num_classes=2`` (alias ``gmm-mlp``, ``P`` defaults to 100);
- logistic regression: ``hidden=[]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from prunezoo.models.init import check_init, init_weights
from prunezoo.models.layers import check_activation, check_positive_int, make_activation
from prunezoo.models.registry import option_error, register_alias, register_model


class MLP(nn.Module):
    """``Flatten -> fc1 -> act1 -> ... -> fcN``; the output layer ``fcN`` has no activation."""

    def __init__(
        self, in_features: int, hidden: Sequence[int], num_classes: int, *, bias: bool = True, activation: str = "relu"
    ):
        super().__init__()
        widths = [in_features, *hidden, num_classes]
        self.num_layers = len(widths) - 1
        for i in range(1, self.num_layers + 1):
            self.add_module(f"fc{i}", nn.Linear(widths[i - 1], widths[i], bias=bias))
            if i < self.num_layers:
                self.add_module(f"act{i}", make_activation(activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(1, self.num_layers):
            x = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x))
        return getattr(self, f"fc{self.num_layers}")(x)


@register_model("mlp")
def mlp(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    hidden: Sequence[int] = (300, 100),
    bias: bool = True,
    activation: str = "relu",
    init: str | None = None,
) -> MLP:
    """Multilayer perceptron on the flattened input; layers fc1..fcN (options: hidden, bias, activation, init)."""
    if isinstance(hidden, int | str) or not isinstance(hidden, Sequence):
        raise option_error("hidden", f"must be a list of layer widths, got {hidden!r}")
    hidden = [check_positive_int(h, "hidden") for h in hidden]
    if not isinstance(bias, bool):
        raise option_error("bias", f"must be true or false, got {bias!r}")
    check_activation(activation)
    check_init(init)
    model = MLP(math.prod(input_shape), hidden, num_classes, bias=bias, activation=activation)
    return init_weights(model, init)


register_alias("lenet-300-100", "mlp", fixed={"hidden": [300, 100]}, description="LeNet-300-100: mlp 784-300-100-10")
register_alias(
    "gmm-mlp",
    "mlp",
    defaults={"hidden": [100], "bias": False, "init": "kaiming_uniform"},
    description="GMM model D-P-2: mlp, one hidden layer (P=100), no bias, ReLU, Kaiming-uniform init",
)
