"""Datasets for prunezoo: one registry, seeded in-memory loading, label noise and GMM data.

>>> from prunezoo.data import load_dataset, BatchLoader
>>> data = load_dataset("mnist1d", val_fraction=0.1, noise_rate=0.15, noise_kind="symmetric")
>>> for xb, yb in BatchLoader(data.train, batch_size=128, seed=0): ...

Offline datasets: ``digits``, ``mnist5k``, ``mnist1d``, ``gmm-linear``, ``gmm-xor``. File-backed
(torchvision layout under ``root``, fetched only with ``download=True``): ``mnist``,
``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn`` (options ``augment``, ``subset``, ``test_subset``);
your own images: ``imagefolder`` (``root/train/<class>/*``, ``root/test/`` or ``root/val/``).
"""

from prunezoo.data import builtin as _builtin  # noqa: F401  (registers the offline datasets)
from prunezoo.data import vision as _vision  # noqa: F401  (registers the torchvision datasets)
from prunezoo.data.datasets import ArrayDataset, BatchTransform, DataSplits
from prunezoo.data.gmm import bayes_error, bayes_error_linear, bayes_error_mc, bayes_error_xor, true_posterior
from prunezoo.data.loader import BatchLoader
from prunezoo.data.noise import NOISE_KINDS, NoiseResult, apply_label_noise
from prunezoo.data.registry import DATASETS, DatasetSpec, default_data_root, load_dataset, register_dataset
from prunezoo.data.transforms import AUGMENTATIONS, RandomCropFlip
from prunezoo.utils.plugins import import_submodules

# a new built-in module registers itself: no import line to add here
import_submodules(__name__, __path__)

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "NOISE_KINDS",
    "ArrayDataset",
    "BatchLoader",
    "BatchTransform",
    "DataSplits",
    "DatasetSpec",
    "NoiseResult",
    "RandomCropFlip",
    "apply_label_noise",
    "bayes_error",
    "bayes_error_linear",
    "bayes_error_mc",
    "bayes_error_xor",
    "default_data_root",
    "load_dataset",
    "register_dataset",
    "true_posterior",
]
