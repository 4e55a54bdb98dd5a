"""``imagefolder``: the user's own images, in torchvision's ``ImageFolder`` layout under ``dataset.root``::

    root/train/<class>/*.png        training images, one folder per class (any of IMAGE_EXTENSIONS)
    root/test/<class>/*.png         test images (or root/val/ when there is no test/)
    root/val/<class>/*.png          with test/ as well: a validation split of its own

Class indices follow the sorted class-folder names, which must be the same in every split. Images are
decoded with PIL (RGB, or L with ``grayscale``) and, with ``size``, resized (bilinear) to ``size x size``
(or ``[height, width]``). ``in_memory`` (default: when the decoded pixels fit in ``IN_MEMORY_LIMIT`` bytes)
decodes every image once into a uint8 :class:`~prunezoo.data.ArrayDataset`, the fast seeded path with
batched augmentation; ``in_memory: false`` keeps an :class:`ImageFolderDataset` that decodes per sample
(torchvision.transforms.v2 augmentation, DataLoader workers). Normalisation: ``mean``/``std`` if given,
else the training set's per-channel statistics (lazy path: of at most ``STATS_SAMPLES`` training images).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prunezoo.data.datasets import ArrayDataset, DataSplits, stratified_subset
from prunezoo.data.registry import register_dataset
from prunezoo.data.transforms import batch_augmentation, resolve_augment, v2_augmentation
from prunezoo.data.vision import check_subset_options
from prunezoo.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
IN_MEMORY_LIMIT = 2 * 1024**3  # decoded uint8 bytes up to which in_memory: null decodes everything once
STATS_SAMPLES = 1024  # training images the lazy path estimates mean/std from

_LAYOUT = "expected root/train/<class>/<images> and root/test/<class>/... (or root/val/)"


def _root_error(message: str) -> ConfigError:
    return ConfigError("dataset.root", message)


# -- the folder layout --------------------------------------------------------------------------------
def _class_dirs(split: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(split.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _split_samples(split: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
    """``(class names, [(path, label)])`` of one split folder; ``classes``: the training split's, to check."""
    dirs = _class_dirs(split)
    if not dirs:
        raise _root_error(f"no class folders in {split} ({_LAYOUT})")
    names = list(dirs)
    if classes is not None and names != classes:
        only_train, only_here = sorted(set(classes) - set(names)), sorted(set(names) - set(classes))
        raise _root_error(
            f"class folders of {split} differ from train/'s: only in train/: {only_train}, "
            f"only in {split.name}/: {only_here} (every split needs the same class folders)"
        )
    samples, empty = [], []
    for label, name in enumerate(names):
        files = _images(dirs[name])
        if not files:
            empty.append(name)
        samples += [(str(f), label) for f in files]
    if empty:
        raise _root_error(
            f"class folders without images in {split}: {empty} (image files end in {', '.join(IMAGE_EXTENSIONS)})"
        )
    return names, samples


def _layout(root: Path | None) -> dict[str, Path]:
    """The split folders under ``root``: train, test and, when both test/ and val/ exist, val."""
    if root is None or not root.is_dir():
        raise _root_error(f"folder {root} not found ({_LAYOUT})")
    train, test, val = root / "train", root / "test", root / "val"
    if not train.is_dir():
        raise _root_error(f"no train/ folder in {root} ({_LAYOUT})")
    if not test.is_dir() and not val.is_dir():
        raise _root_error(f"no test/ (or val/) folder in {root} ({_LAYOUT})")
    if not test.is_dir():
        return {"train": train, "test": val}
    return {"train": train, "test": test, **({"val": val} if val.is_dir() else {})}


# -- decoding ---------------------------------------------------------------------------------------
def load_image(path: str, size: tuple[int, int] | None, grayscale: bool) -> Tensor:
    """One image file as a uint8 ``(C, H, W)`` tensor (RGB or L), resized (bilinear) to ``size`` if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = opened.convert("L" if grayscale else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def _decode_all(samples: list[tuple[str, int]], size, grayscale: bool) -> Tensor:
    images = [load_image(p, size, grayscale) for p, _ in samples]
    shapes = {tuple(t.shape[1:]) for t in images}
    if len(shapes) > 1:
        first: dict[tuple[int, ...], str] = {}
        for (p, _), t in zip(samples, images, strict=True):
            first.setdefault(tuple(t.shape[1:]), p)
        examples = ", ".join(f"{h}x{w} ({p})" for (h, w), p in list(first.items())[:3])
        raise ValueError(f"images have different sizes: {examples}; set size (e.g. size: 32) to resize them")
    return torch.stack(images)


def _channel_stats(x: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 ``(N, C, H, W)`` images scaled to [0, 1] (float64 sums)."""
    xs = x.transpose(0, 1).reshape(x.shape[1], -1).double() / 255.0
    std = xs.std(dim=1, unbiased=False).clamp_min(1e-6)  # a constant channel must not divide by zero
    return [round(float(v), 6) for v in xs.mean(dim=1)], [round(float(v), 6) for v in std]


# -- the lazy path ----------------------------------------------------------------------------------
class ImageFolderDataset(torch.utils.data.Dataset):
    """Images decoded per sample: ``dataset[i]`` is ``(x, y)`` with ``x`` float ``(C, H, W)``, augmented (on
    the training split) with torchvision.transforms.v2, scaled to [0, 1] and normalised.

    Has the ``y``/``clean_y``/``source_index`` tensors and ``subset``/``with_labels`` of an
    :class:`~prunezoo.data.ArrayDataset`, so validation splits and label noise work the same way.
    Augmentation draws from torch's global generator: prunezoo's DatasetLoader seeds it per batch.
    """

    def __init__(
        self,
        paths: list[str],
        y: Tensor,
        *,
        size: tuple[int, int],
        grayscale: bool,
        mean: list[float] | None,
        std: list[float] | None,
        augment: str = "none",
        clean_y: Tensor | None = None,
        source_index: Tensor | None = None,
    ):
        self.paths = list(paths)
        self.y = torch.as_tensor(y).long()
        self.clean_y = self.y if clean_y is None else torch.as_tensor(clean_y).long()
        self.source_index = torch.arange(len(self.y)) if source_index is None else torch.as_tensor(source_index)
        self.size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.grayscale = bool(grayscale)
        self.mean, self.std = mean, std
        self.augment = resolve_augment(augment)
        self.transform = v2_augmentation(self.augment, self.size) or None  # the v2 ops (None: no augmentation)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1 if self.grayscale else 3, *self.size)

    @property
    def is_noisy(self) -> Tensor:
        """Boolean mask of samples whose label differs from the clean one."""
        return self.y != self.clean_y

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = load_image(self.paths[int(index)], self.size, self.grayscale)
        for op in self.transform or ():
            x = op(x)
        x = x.to(torch.float32).div_(255.0)
        if self.mean is not None and self.std is not None:
            shape = (-1, 1, 1)
            x = (x - torch.tensor(self.mean).view(shape)) / torch.tensor(self.std).view(shape)
        return x, self.y[int(index)]

    def _derived(self, index: Tensor, y: Tensor, augment: str, clean_y: Tensor) -> ImageFolderDataset:
        return ImageFolderDataset(
            [self.paths[i] for i in index.tolist()],
            y,
            size=self.size,
            grayscale=self.grayscale,
            mean=self.mean,
            std=self.std,
            augment=augment,
            clean_y=clean_y,
            source_index=self.source_index[index],
        )

    def subset(self, index: Tensor, *, keep_transform: bool = True) -> ImageFolderDataset:
        index = torch.as_tensor(index).long()
        return self._derived(index, self.y[index], self.augment if keep_transform else "none", self.clean_y[index])

    def with_labels(self, y: Tensor) -> ImageFolderDataset:
        return self._derived(torch.arange(len(self)), y, self.augment, self.clean_y)

    def __repr__(self) -> str:
        return f"ImageFolderDataset(n={len(self)}, input_shape={self.input_shape}, augment={self.augment!r})"


# -- the builder ------------------------------------------------------------------------------------
def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
        return (size, size)
    if (
        isinstance(size, list | tuple)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(f"size must be a positive integer or [height, width], got {size!r}")


def _check_stats(name: str, values: Any, channels: int) -> list[float] | None:
    if values is None:
        return None
    vals = [values] if isinstance(values, int | float) and not isinstance(values, bool) else values
    if (
        not isinstance(vals, list | tuple)
        or len(vals) not in (1, channels)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in vals)
    ):
        raise ValueError(f"{name} must be a number or a list of {channels} numbers, got {values!r}")
    if name == "std" and any(v <= 0 for v in vals):
        raise ValueError(f"std must be > 0, got {values!r}")
    return [float(v) for v in vals] * (channels if len(vals) == 1 else 1)


def _subset(samples: list[tuple[str, int]], n: int | None, seed: int, what: str):
    if n is None:
        return samples, None
    idx = stratified_subset(torch.tensor([y for _, y in samples]), n, seed, what=what)
    return [samples[i] for i in idx.tolist()], idx


@register_dataset("imagefolder", needs_files=True)
def imagefolder(
    *,
    root: Path,
    download: bool = False,
    size: int | list[int] | None = None,
    augment: bool | str = "none",
    in_memory: bool | None = None,
    grayscale: bool = False,
    normalize: bool = True,
    mean: float | list[float] | None = None,
    std: float | list[float] | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
) -> DataSplits:
    """Your own images in ImageFolder layout: root/train/<class>/*, root/test/<class>/* (or val/)."""
    if download:
        raise ValueError("download: imagefolder reads your own files and cannot download anything")
    hw = _check_size(size)
    aug = resolve_augment(augment)
    if in_memory is not None and not isinstance(in_memory, bool):
        raise ValueError(f"in_memory must be true, false or null (decide by size), got {in_memory!r}")
    channels = 1 if grayscale else 3
    mean_v, std_v = _check_stats("mean", mean, channels), _check_stats("std", std, channels)
    if (mean_v is None) != (std_v is None):
        raise ValueError("give both mean and std, or neither")
    check_subset_options(subset, test_subset, subset_seed)

    folders = _layout(root)
    classes, train_all = _split_samples(folders["train"], None)
    found = {k: _split_samples(folders[k], classes)[1] for k in folders if k != "train"}
    train_s, src_tr = _subset(train_all, subset, subset_seed, "subset")
    test_s, src_te = _subset(found["test"], test_subset, subset_seed, "test_subset")
    val_s = found.get("val")
    if hw is None:  # the first training image's size; in memory, every other image must match it
        shape = load_image(train_s[0][0], None, grayscale).shape
        hw = (int(shape[1]), int(shape[2]))
    n_all = len(train_s) + len(test_s) + len(val_s or ())
    decoded_bytes = n_all * channels * hw[0] * hw[1]
    keep = decoded_bytes <= IN_MEMORY_LIMIT if in_memory is None else in_memory

    def labels(samples):
        return torch.tensor([y for _, y in samples], dtype=torch.long)

    if keep:
        size_arg = hw if size is not None else None  # without size, mixed sizes are an error, not a resize
        x_tr = _decode_all(train_s, size_arg, grayscale)
        if normalize and mean_v is None:
            mean_v, std_v = _channel_stats(x_tr)
        m, s = (mean_v, std_v) if normalize else (None, None)

        def array(samples, src=None, transform=None):
            x = _decode_all(samples, size_arg, grayscale)
            if tuple(x.shape[2:]) != tuple(x_tr.shape[2:]):
                raise ValueError(
                    f"images of different sizes in train/ ({tuple(x_tr.shape[2:])}) and test/val "
                    f"({tuple(x.shape[2:])}); set size (e.g. size: 32) to resize them"
                )
            return ArrayDataset(x, labels(samples), mean=m, std=s, transform=transform, source_index=src)

        train: Any = ArrayDataset(
            x_tr, labels(train_s), mean=m, std=s, transform=batch_augmentation(aug), source_index=src_tr
        )
        test: Any = array(test_s, src_te)
        val: Any = array(val_s) if val_s is not None else None
        input_shape = tuple(x_tr.shape[1:])
    else:
        if normalize and mean_v is None:
            pick = stratified_subset(labels(train_s), min(STATS_SAMPLES, len(train_s)), subset_seed)
            mean_v, std_v = _channel_stats(_decode_all([train_s[i] for i in pick.tolist()], hw, grayscale))
        m, s = (mean_v, std_v) if normalize else (None, None)

        def lazy(samples, src=None, aug_name="none"):
            return ImageFolderDataset(
                [p for p, _ in samples],
                labels(samples),
                size=hw,
                grayscale=grayscale,
                mean=m,
                std=s,
                augment=aug_name,
                source_index=src,
            )

        train, test = lazy(train_s, src_tr, aug), lazy(test_s, src_te)
        val = lazy(val_s) if val_s is not None else None
        input_shape = (channels, *hw)

    meta: dict[str, Any] = {
        "source": f"image folder ({root})",
        "classes": classes,
        "splits": {k: str(v) for k, v in folders.items()},
        "in_memory": bool(keep),
        "normalization": {"mean": m, "std": s} if m is not None else None,
        "augmentation": aug,
    }
    if subset is not None or test_subset is not None:
        meta["subset"] = {
            "train": subset,
            "test": test_subset,
            "seed": subset_seed,
            "num_train": len(train_all),
            "num_test": len(found["test"]),
        }
    return DataSplits(
        name="imagefolder",
        train=train,
        test=test,
        val=val,
        num_classes=len(classes),
        input_shape=input_shape,
        meta=meta,
    )
