"""Dataset registry and :func:`load_dataset`, the one entry point to every dataset.

A *builder* returns the dataset's own train/test splits; :func:`load_dataset` then does what is
common to all of them, in a fixed order so that results do not depend on the dataset:

1. carve a validation split out of train (seeded by ``split_seed``), *before* any noise, so
   validation labels are clean;
2. corrupt the remaining training labels (seeded by ``noise_seed``); test and validation labels
   are never touched and ``train.clean_y`` keeps the originals;
3. record sizes, seeds and the noise summary in the JSON-serialisable ``meta``.

A name that is not registered resolves (:func:`get_dataset_spec`) as an entry point of the group
``prunezoo.datasets`` (an installed package's plug-in), else as an import path ``module:attr``. The
plug-in is a callable taking those of ``root``/``download`` it accepts plus the dataset options, and
returning a :class:`DataSplits`, or a pair ``(train, test)`` of :class:`ArrayDataset` or map-style
torch ``Dataset`` yielding ``(x, y)`` with an integer class ``y`` (materialised in memory as an
:class:`ArrayDataset`; ``num_classes`` = largest label + 1, ``input_shape`` = the shape of one ``x``).
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunezoo.data.datasets import ArrayDataset, DataSplits
from prunezoo.data.noise import NOISE_KINDS, NoiseResult, apply_label_noise
from prunezoo.errors import ConfigError
from prunezoo.utils.plugins import entry_point, is_import_path, load_import_path, track_registry

Builder = Callable[..., DataSplits]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``builder(root=Path | None, download=bool, **options) -> DataSplits``."""

    name: str
    builder: Builder
    description: str = ""
    needs_files: bool = False  # True when the data must be on disk (or downloaded) first

    @property
    def options(self) -> dict[str, Any]:
        """The builder's options and their defaults (``root``/``download`` excluded)."""
        return {
            p.name: p.default
            for p in inspect.signature(self.builder).parameters.values()
            if p.name not in ("root", "download") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    builder: Builder | None = None,
    *,
    description: str = "",
    needs_files: bool = False,
    overwrite: bool = False,
):
    """Register ``builder`` under ``name``; usable directly or as a decorator.

    The builder is called as ``builder(root=..., download=..., **options)`` with keyword-only
    options, and returns a :class:`DataSplits` with ``train``/``test`` (``val`` and noise are
    added by :func:`load_dataset`).
    """

    def deco(fn: Builder) -> Builder:
        if name in DATASETS and not overwrite:
            raise ValueError(f"dataset {name!r} is already registered (pass overwrite=True to replace it)")
        DATASETS[name] = DatasetSpec(name, fn, description or (inspect.getdoc(fn) or "").split("\n")[0], needs_files)
        return fn

    return deco(builder) if builder is not None else deco


ENTRY_POINT_GROUP = "prunezoo.datasets"


def get_dataset_spec(name: str) -> DatasetSpec:
    """The dataset ``name``: registered, else an entry point of ``prunezoo.datasets``, else an import
    path ``module:attr``; :class:`ConfigError` (field ``dataset.name``, a ``ValueError``) otherwise."""
    if name in DATASETS:
        return DATASETS[name]
    if ":" not in name and (obj := entry_point(ENTRY_POINT_GROUP, name, "dataset.name")) is not None:
        return spec_from_callable(name, obj)
    if is_import_path(name):
        return spec_from_callable(name, load_import_path(name, "dataset.name"))
    raise ConfigError(
        "dataset.name", f"unknown dataset {name!r}; known: {sorted(DATASETS)} or an import path 'module:attr'"
    )


def spec_from_callable(name: str, obj: Any) -> DatasetSpec:
    """A :class:`DatasetSpec` for a plug-in callable (see the module docstring for its contract)."""
    if isinstance(obj, DatasetSpec):
        return obj
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        raise ConfigError("dataset.name", f"{name!r}: cannot read the signature of {obj!r}") from None
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    takes = [r for r in ("root", "download") if r in params or open_ended]
    kw = inspect.Parameter.KEYWORD_ONLY
    options = [
        p.replace(kind=kw, annotation=p.empty)
        for p in params.values()
        if p.name not in ("root", "download") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]

    def builder(*, root: Path | None = None, download: bool = False, **options: Any) -> DataSplits:
        given = {"root": root, "download": download}
        return as_splits(name, obj(**{k: given[k] for k in takes}, **options))

    fixed = [inspect.Parameter("root", kw, default=None), inspect.Parameter("download", kw, default=False)]
    extra = [inspect.Parameter("options", inspect.Parameter.VAR_KEYWORD)] if open_ended else []
    builder.__signature__ = inspect.Signature([*fixed, *options, *extra])  # type: ignore[attr-defined]
    return DatasetSpec(name, builder, (inspect.getdoc(obj) or "").split("\n")[0])


def as_splits(name: str, result: Any) -> DataSplits:
    """What a dataset plug-in returned, as :class:`DataSplits`; ConfigError (``dataset.name``) if it cannot be."""
    if isinstance(result, DataSplits):
        return result
    if not (isinstance(result, tuple | list) and len(result) == 2):
        raise ConfigError(
            "dataset.name", f"{name!r} returned a {type(result).__name__}, not DataSplits or a (train, test) pair"
        )
    train, test = (_as_array_dataset(name, part, split) for part, split in zip(result, ("train", "test")))
    if train.input_shape != test.input_shape:
        raise ConfigError("dataset.name", f"{name!r}: train inputs {train.input_shape} but test {test.input_shape}")
    if len(train) == 0 or len(test) == 0:
        raise ConfigError("dataset.name", f"{name!r} returned an empty train or test split")
    num_classes = int(max(train.y.max(), test.y.max())) + 1
    return DataSplits(name=name, train=train, test=test, num_classes=num_classes, input_shape=train.input_shape)


def _as_array_dataset(name: str, part: Any, split: str) -> ArrayDataset:
    if isinstance(part, ArrayDataset):
        return part
    from torch.utils.data import Dataset

    if not isinstance(part, Dataset) or not hasattr(part, "__len__"):
        raise ConfigError(
            "dataset.name",
            f"{name!r}: the {split} split is a {type(part).__name__}, not an ArrayDataset or a torch Dataset",
        )
    try:
        items = [part[i] for i in range(len(part))]
        xs = torch.stack([torch.as_tensor(x) for x, _ in items])
        ys = torch.as_tensor([int(y) for _, y in items], dtype=torch.long)
    except (TypeError, ValueError, RuntimeError) as err:  # not (x, y) pairs of equal shape and integer class
        raise ConfigError("dataset.name", f"{name!r}: the {split} split does not yield (x, integer y): {err}") from None
    return ArrayDataset(xs if xs.dtype == torch.uint8 else xs.to(torch.float32), ys)


def _user_datasets() -> dict[str, Any]:
    # Registered by user code at run time: a worker process would not get it by importing prunezoo.
    from prunezoo import names

    return {n: s for n, s in DATASETS.items() if n not in names.DATASETS}


track_registry("datasets", _user_datasets, DATASETS.setdefault)


def default_data_root() -> Path:
    """Where file-backed datasets live when no ``root`` is given: ``$PRUNEZOO_DATA`` or
    ``~/.cache/prunezoo/data`` (a fixed place, so runs from any directory share one copy)."""
    env = os.environ.get("PRUNEZOO_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunezoo" / "data"


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    val_fraction: float = 0.0,
    split_seed: int = 42,
    noise_rate: float = 0.0,
    noise_kind: str = "uniform-resample",
    noise_seed: int = 0,
    **options: Any,
) -> DataSplits:
    """Build dataset ``name`` with an optional validation split and training-label noise.

    Args:
        name: a key of :data:`DATASETS`.
        root: data directory (file-backed datasets; ``mnist1d`` caches its generated arrays
            there). None: :func:`default_data_root` for file-backed datasets, no cache otherwise.
        download: let torchvision fetch missing files (never done implicitly).
        val_fraction: fraction of train moved to ``val``, in [0, 1).
        split_seed: seed of the train/val partition.
        noise_rate, noise_kind, noise_seed: see :func:`~prunezoo.data.noise.apply_label_noise`.
        **options: dataset-specific options (e.g. ``nu``/``dim`` for GMM, ``augment`` for CIFAR).

    Raises:
        ValueError: unknown dataset or option, or an out-of-range fraction/rate/kind.
        FileNotFoundError: files of a file-backed dataset missing and ``download=False``.
    """
    spec = get_dataset_spec(name)
    _check_options(spec, options)
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if noise_kind not in NOISE_KINDS:  # checked before building: a typo should not cost a data load
        raise ValueError(f"unknown noise kind {noise_kind!r}; known: {list(NOISE_KINDS)}")
    if not 0.0 <= float(noise_rate) <= 1.0:
        raise ValueError(f"noise rate must be in [0, 1], got {noise_rate!r}")

    if root is None and spec.needs_files:
        root = default_data_root()
    splits = spec.builder(
        root=Path(root).expanduser() if root is not None else None, download=bool(download), **options
    )

    train = splits.train
    if val_fraction > 0 and splits.val is not None:  # e.g. an image folder's own val/
        raise ValueError(f"dataset {name!r} brings its own validation split: set val_fraction to 0")
    n_val = len(splits.val) if splits.val is not None else 0
    if val_fraction > 0:
        n = len(train)
        n_val = max(1, round(val_fraction * n))
        if n_val >= n:
            raise ValueError(f"val_fraction={val_fraction} leaves no training samples (n_train={n})")
        g = torch.Generator()
        g.manual_seed(int(split_seed))
        perm = torch.randperm(n, generator=g)
        # Sorted so each split keeps the builder's order (the loader shuffles anyway).
        splits.val = train.subset(perm[:n_val].sort().values, keep_transform=False)  # no augmentation at eval
        train = train.subset(perm[n_val:].sort().values)

    if train.y.ndim > 1:  # per-token targets (masked-token modelling): there is no one label to corrupt
        if float(noise_rate) > 0:
            raise ValueError(f"noise_rate={noise_rate}: dataset {name!r} has per-token targets, not one label each")
        none = torch.empty(0, dtype=torch.long)
        noise = NoiseResult(train.y, none, 0.0, noise_kind, 0.0, int(noise_seed))
    else:
        noise = apply_label_noise(train.y, noise_rate, noise_kind, splits.num_classes, noise_seed)
    splits.train = train.with_labels(noise.labels) if noise.num_noisy else train
    splits.noise = noise

    splits.meta = {
        **splits.meta,
        "name": name,
        "num_classes": splits.num_classes,
        "input_shape": list(splits.input_shape),
        "num_train": len(splits.train),
        "num_val": n_val,
        "num_test": len(splits.test),
        "val_fraction": val_fraction,
        "split_seed": int(split_seed),
        "options": {k: _jsonable(v) for k, v in options.items()},
        "noise": noise.to_meta(),
    }
    return splits


def _check_options(spec: DatasetSpec, options: dict[str, Any]) -> None:
    params = inspect.signature(spec.builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset {spec.name!r}; accepted: {sorted(spec.options)}")


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v if not (isinstance(v, float) and not math.isfinite(v)) else str(v)
    except TypeError:
        return repr(v)
