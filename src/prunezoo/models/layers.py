"""Small building blocks shared by the architectures: activations, option checks, shape inference."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.registry import option_error

# Activation modules by name (no in-place variants: hooks that record activations, e.g. APoZ,
# must see the tensor the next layer consumes, unaltered by later ops).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leakyrelu": nn.LeakyReLU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def check_activation(name: str, option: str = "activation") -> str:
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise option_error(option, f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return key


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[check_activation(name)]()


def check_dropout(p: float, option: str = "dropout") -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
        raise option_error(option, f"must be a probability in [0, 1), got {p!r}")
    return float(p)


def check_positive_int(value, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise option_error(option, f"must be a positive integer, got {value!r}")
    return value


def check_positive_float(value, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise option_error(option, f"must be a positive number, got {value!r}")
    return float(value)


def image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """``(C, H, W)`` for 2-D conv nets; rejects flat or 1-D inputs with a clear message."""
    if len(input_shape) != 3:
        raise ConfigError(
            "input_shape", f"model {model!r} needs (channels, height, width) inputs, got {tuple(input_shape)}"
        )
    return tuple(input_shape)  # type: ignore[return-value]


def flat_features(features: Callable[[torch.Tensor], torch.Tensor], input_shape: Sequence[int], model: str) -> int:
    """Width of ``features(x).flatten(1)`` for one input, found by a dummy forward pass.

    This lets the classifier adapt to any input size instead of hard-coding e.g. 36 for 28x28.
    """
    try:
        with torch.no_grad():
            return int(features(torch.zeros(1, *input_shape)).flatten(1).shape[1])
    except RuntimeError as err:
        raise ConfigError("input_shape", f"{tuple(input_shape)} is too small for model {model!r}: {err}") from None
