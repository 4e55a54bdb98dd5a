"""The names of the registered components, readable without importing torch.

``prunezoo list`` and the CLI's start-up read these; the registries themselves (``prunezoo.data.DATASETS``,
``prunezoo.models.MODELS``, ``prunezoo.criteria.CRITERIA``, ``prunezoo.allocation.SCHEME_NAMES``,
``prunezoo.data.NOISE_KINDS``) live in modules that import torch. ``tests/test_cli_startup.py`` checks that
each table here holds exactly the names its registry holds, so a component registered without its name
here fails the tests.
"""

from __future__ import annotations

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist5k",
    "mnist1d",
    "gmm-linear",
    "gmm-xor",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "cifar100",
    "svhn",
)
MODELS: tuple[str, ...] = (
    "mlp",
    "lenet-300-100",
    "gmm-mlp",
    "lenet5",
    "cnn-s",
    "cnn-l",
    "conv1d",
    "resnet-cifar",
    "resnet18-cifar",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "vgg16-cifar",
)
CRITERIA: tuple[str, ...] = ("obd", "grasp", "magnitude", "obs", "random", "snip", "synflow", "taylor")
SCHEMES: tuple[str, ...] = ("global", "uniform", "erk", "balanced", "pyramidal", "explicit")
NOISE_KINDS: tuple[str, ...] = ("uniform-resample", "symmetric", "pairflip", "subset-permute")
