"""Plug-ins that live outside the package, used by import path (``tests.plugins:TinyNet``) in
tests/test_import_plugins.py: a model class, a model factory, a non-model, a dataset and a criterion."""

from __future__ import annotations

import math

import torch
from torch import nn

from prunezoo.criteria import ScoringContext
from prunezoo.data import ArrayDataset, DataSplits


class TinyNet(nn.Module):
    """A two-layer MLP on flattened inputs."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], hidden: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def make_tiny(num_classes, input_shape, hidden=8):
    """TinyNet from a factory function (positional parameters, like most user code)."""
    return TinyNet(num_classes, input_shape, hidden)


def make_headless(input_shape, width=4):
    """A factory that takes no num_classes: it is not passed one."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width))


def not_a_model(num_classes, input_shape):
    return {"num_classes": num_classes}


NOT_CALLABLE = 3


def stripes(seed: int = 0, n: int = 192, dim: int = 12) -> DataSplits:
    """Three classes told apart by which third of the features is shifted; half train, half test."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, dim, generator=g)
    third = dim // 3
    for c in range(3):
        x[y == c, c * third : (c + 1) * third] += 2.0
    half = n // 2
    return DataSplits(
        name="stripes",
        train=ArrayDataset(x[:half], y[:half]),
        test=ArrayDataset(x[half:], y[half:]),
        num_classes=3,
        input_shape=(dim,),
    )


def stripes_pair(n: int = 96):
    """The same data as a (train, test) pair of plain torch Datasets."""
    s = stripes(n=n)
    return (
        torch.utils.data.TensorDataset(s.train.x.double(), s.train.y),
        torch.utils.data.TensorDataset(s.test.x.double(), s.test.y),
    )


def not_a_dataset():
    return [1, 2, 3]


def smallest_magnitude(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """Higher = more important, so ``-|w|`` keeps the SMALLEST weights (the opposite of magnitude)."""
    return {name: -p.detach().abs() for name, p in ctx.params.items()}


def doubled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A training loss by import path (``training.loss: tests.plugins:doubled_cross_entropy``)."""
    return 2.0 * torch.nn.functional.cross_entropy(logits, targets)
