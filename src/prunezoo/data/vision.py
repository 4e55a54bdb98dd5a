"""File-backed image datasets, parsed by torchvision and held in memory as uint8 tensors.

``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn`` use torchvision's on-disk layout
under ``root`` (an existing torchvision data folder works as is). Nothing is fetched unless
``download=True``; missing files raise :class:`FileNotFoundError` naming the expected paths.

Common options: ``augment`` (a name of :data:`~prunezoo.data.transforms.AUGMENTATIONS`, or true/false
for the dataset's usual recipe), ``subset: N`` / ``test_subset: M`` (a seeded, class-stratified sample
of N training / M test images, drawn with ``subset_seed``; the test split stays whole unless
``test_subset`` is given, so accuracies stay comparable with published ones).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets as tvd

from prunezoo.data.datasets import ArrayDataset, DataSplits, stratified_subset
from prunezoo.data.registry import register_dataset
from prunezoo.data.transforms import batch_augmentation, resolve_augment

# Per-channel mean/std of the training images in [0, 1] (the usual published values).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


# torchvision's CIFAR/SVHN constructors md5-check every file on every load. When the user has
# not asked for a download we only require the files to exist and let torchvision's own parsing
# (pickle / loadmat) validate the content: the checksum pass re-reads ~180 MB per load, and it
# rejects legitimately re-packed or test fixture files. With download=True the stock classes are
# used, so freshly fetched files are fully verified.
class _PresentCIFARMixin:
    # set by the torchvision class this is mixed into
    root: str
    base_folder: str
    train_list: list[list[str]]
    test_list: list[list[str]]
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        return all(
            os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f, _ in self.train_list + self.test_list
        )

    def _load_meta(self) -> None:  # as torchvision's, minus the md5 check
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as fh:
            self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _PresentCIFAR10(_PresentCIFARMixin, tvd.CIFAR10):
    pass


class _PresentCIFAR100(_PresentCIFARMixin, tvd.CIFAR100):
    pass


class _PresentSVHN(tvd.SVHN):
    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


def _require(name: str, root: Path, files: list[Path]) -> None:
    """Raise a FileNotFoundError naming every missing file and how to fetch them."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r}: files not found under {root} (missing: {', '.join(missing)}). "
            f"Pass download=True (CLI: --download, or dataset.download: true in a study) to fetch them "
            f"with torchvision, or point root at a folder in torchvision's layout."
        )


def check_subset_options(subset: Any, test_subset: Any, subset_seed: Any) -> None:
    """Reject bad ``subset``/``test_subset``/``subset_seed`` values before any file is read."""
    for what, n in (("subset", subset), ("test_subset", test_subset)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"{what} must be a positive integer (or null for the whole split), got {n!r}")
    if isinstance(subset_seed, bool) or not isinstance(subset_seed, int) or subset_seed < 0:
        raise ValueError(f"subset_seed must be an integer >= 0, got {subset_seed!r}")


def take_subsets(x_tr, y_tr, x_te, y_te, subset: int | None, test_subset: int | None, seed: int):
    """Apply ``subset``/``test_subset``: ``(x_tr, y_tr, src_tr, x_te, y_te, src_te)``, ``src_*`` the kept
    positions in the full splits (None when a split is whole)."""
    src_tr = stratified_subset(y_tr, subset, seed, what="subset") if subset is not None else None
    src_te = stratified_subset(y_te, test_subset, seed, what="test_subset") if test_subset is not None else None
    if src_tr is not None:
        x_tr, y_tr = x_tr[src_tr], y_tr[src_tr]
    if src_te is not None:
        x_te, y_te = x_te[src_te], y_te[src_te]
    return x_tr, y_tr, src_tr, x_te, y_te, src_te


def _splits(
    name: str,
    x_tr,
    y_tr,
    x_te,
    y_te,
    classes,
    root: Path,
    *,
    normalize: bool,
    transform=None,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
) -> DataSplits:
    mean, std = NORMALIZATION[name] if normalize else (None, None)
    full = {"num_train": len(y_tr), "num_test": len(y_te)}
    x_tr, y_tr, src_tr, x_te, y_te, src_te = take_subsets(x_tr, y_tr, x_te, y_te, subset, test_subset, subset_seed)
    train = ArrayDataset(x_tr, y_tr, mean=mean, std=std, transform=transform, source_index=src_tr)
    test = ArrayDataset(x_te, y_te, mean=mean, std=std, source_index=src_te)
    extra = {}
    if subset is not None or test_subset is not None:  # absent otherwise: whole-split meta stays as it was
        extra["subset"] = {"train": subset, "test": test_subset, "seed": subset_seed, **full}
    return DataSplits(
        name=name,
        train=train,
        test=test,
        num_classes=len(classes),
        input_shape=tuple(x_tr.shape[1:]),
        meta={
            "source": f"torchvision ({root})",
            "classes": [str(c) for c in classes],
            "normalization": {"mean": list(mean), "std": list(std)} if mean is not None and std is not None else None,
            "augmentation": repr(transform) if transform is not None else None,
            **extra,
        },
    )


def _mnist_like(name: str, cls: type, root: Path, download: bool, normalize: bool, **kw: Any) -> DataSplits:
    check_subset_options(kw["subset"], kw["test_subset"], kw["subset_seed"])
    augment = resolve_augment(kw.pop("augment"), default="cifar-crop")  # digits: never mirrored
    raw = root / cls.__name__ / "raw"
    legacy = root / cls.__name__ / "processed"
    has_legacy = (legacy / "training.pt").is_file() and (legacy / "test.pt").is_file()
    if not download and not has_legacy:  # torchvision also reads its old processed/*.pt format
        _require(
            name,
            root,
            [raw / f"{s}-{k}-idx{d}-ubyte" for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))],
        )
    tr = cls(str(root), train=True, download=download)
    te = cls(str(root), train=False, download=download)
    return _splits(
        name,
        tr.data.unsqueeze(1).contiguous(),
        tr.targets.long(),
        te.data.unsqueeze(1).contiguous(),
        te.targets.long(),
        tr.classes,
        root,
        normalize=normalize,
        transform=batch_augmentation(augment),
        **kw,
    )


@register_dataset("mnist", needs_files=True)
def mnist(
    *,
    root: Path,
    download: bool = False,
    normalize: bool = True,
    augment: bool | str = False,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
) -> DataSplits:
    """MNIST via torchvision (root/MNIST/raw/*-ubyte), 60k/10k, input (1, 28, 28)."""
    return _mnist_like(
        "mnist",
        tvd.MNIST,
        root,
        download,
        normalize,
        augment=augment,
        subset=subset,
        test_subset=test_subset,
        subset_seed=subset_seed,
    )


@register_dataset("fashion-mnist", needs_files=True)
def fashion_mnist(
    *,
    root: Path,
    download: bool = False,
    normalize: bool = True,
    augment: bool | str = False,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
) -> DataSplits:
    """Fashion-MNIST via torchvision (root/FashionMNIST/raw/*-ubyte), 60k/10k, input (1, 28, 28)."""
    return _mnist_like(
        "fashion-mnist",
        tvd.FashionMNIST,
        root,
        download,
        normalize,
        augment=augment,
        subset=subset,
        test_subset=test_subset,
        subset_seed=subset_seed,
    )


def _nhwc_to_nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def _cifar(
    name: str, stock: type[Any], present: type[Any], root: Path, download: bool, normalize: bool, **kw: Any
) -> DataSplits:
    check_subset_options(kw["subset"], kw["test_subset"], kw["subset_seed"])
    augment = resolve_augment(kw.pop("augment"))
    if not download:
        folder = root / stock.base_folder
        _require(
            name, root, [folder / f for f, _ in stock.train_list + stock.test_list] + [folder / stock.meta["filename"]]
        )
    cls = stock if download else present
    tr = cls(str(root), train=True, download=download)
    te = cls(str(root), train=False, download=download)
    return _splits(
        name,
        _nhwc_to_nchw(tr.data),
        torch.tensor(tr.targets, dtype=torch.long),
        _nhwc_to_nchw(te.data),
        torch.tensor(te.targets, dtype=torch.long),
        tr.classes,
        root,
        normalize=normalize,
        transform=batch_augmentation(augment),
        **kw,
    )


@register_dataset("cifar10", needs_files=True)
def cifar10(
    *,
    root: Path,
    download: bool = False,
    augment: bool | str = True,
    normalize: bool = True,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
) -> DataSplits:
    """CIFAR-10 via torchvision (root/cifar-10-batches-py), 50k/10k, input (3, 32, 32); train crop+flip."""
    return _cifar(
        "cifar10",
        tvd.CIFAR10,
        _PresentCIFAR10,
        root,
        download,
        normalize,
        augment=augment,
        subset=subset,
        test_subset=test_subset,
        subset_seed=subset_seed,
    )


@register_dataset("cifar100", needs_files=True)
def cifar100(
    *,
    root: Path,
    download: bool = False,
    augment: bool | str = True,
    normalize: bool = True,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
) -> DataSplits:
    """CIFAR-100 (fine labels) via torchvision (root/cifar-100-python), 50k/10k, input (3, 32, 32)."""
    return _cifar(
        "cifar100",
        tvd.CIFAR100,
        _PresentCIFAR100,
        root,
        download,
        normalize,
        augment=augment,
        subset=subset,
        test_subset=test_subset,
        subset_seed=subset_seed,
    )


@register_dataset("svhn", needs_files=True)
def svhn(
    *,
    root: Path,
    download: bool = False,
    augment: bool | str = True,
    flip: bool = False,
    extra: bool = False,
    normalize: bool = True,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
) -> DataSplits:
    """SVHN via torchvision (root/{train,test}_32x32.mat), 73k/26k, input (3, 32, 32).

    Training augmentation is the 4-pixel random crop only: mirrored digits are not digits, so
    flipping is off unless ``flip=True`` (with ``augment: true``; a named ``augment`` is used as is).
    ``extra=True`` appends the 531k ``extra`` images to train.
    """
    check_subset_options(subset, test_subset, subset_seed)
    aug = resolve_augment(augment, default="cifar-crop-flip" if flip else "cifar-crop")
    parts = ["train", "extra"] if extra else ["train"]
    if not download:
        _require("svhn", root, [root / tvd.SVHN.split_list[s][1] for s in [*parts, "test"]])
    cls = tvd.SVHN if download else _PresentSVHN
    tr = [cls(str(root), split=s, download=download) for s in parts]
    te = cls(str(root), split="test", download=download)
    x_tr = torch.from_numpy(np.concatenate([d.data for d in tr]))  # torchvision already gives (N, 3, 32, 32)
    y_tr = torch.from_numpy(np.concatenate([d.labels for d in tr]).astype(np.int64))
    return _splits(
        "svhn",
        x_tr,
        y_tr,
        torch.from_numpy(te.data),
        torch.from_numpy(te.labels.astype(np.int64)),
        [str(i) for i in range(10)],
        root,
        normalize=normalize,
        transform=batch_augmentation(aug),
        subset=subset,
        test_subset=test_subset,
        subset_seed=subset_seed,
    )
