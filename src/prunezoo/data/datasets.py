"""In-memory datasets: :class:`ArrayDataset` (tensors + lazy normalisation) and :class:`DataSplits`.

Everything prunezoo trains on fits in memory (the largest, CIFAR, is 150 MB as uint8), so a dataset
is just two tensors. Images stay ``uint8`` until a batch is drawn: 4x less memory than float32 and
the conversion is a cheap vectorised op on the batch, not on the whole set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from prunezoo.data.noise import NoiseResult


class BatchTransform(Protocol):
    """A random per-batch transform (augmentation) on float inputs in [0, 1] (before normalisation).

    It must draw all its randomness from ``generator`` so a seeded loader reproduces it exactly,
    and must not modify ``x`` in place.
    """

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor: ...


class ArrayDataset:
    """A labelled dataset held as tensors.

    Args:
        x: inputs, shape ``(N, *input_shape)``; ``uint8`` (scaled by 1/255 on access), float32, or
            int64 token ids (returned as is: embeddings need integer inputs).
        y: integer labels, shape ``(N,)`` (stored as int64), or per-token targets ``(N, T)`` with
            ``-100`` where no target (masked-token modelling).
        mean, std: optional per-channel normalisation (a float or one value per channel, channel
            = dim 1 of a batch), applied after scaling to [0, 1] and after ``transform``.
        transform: optional :class:`BatchTransform` used by :class:`~prunezoo.data.BatchLoader`
            on training batches (augmentation). ``__getitem__`` and :meth:`prepare` never apply it,
            so evaluation is deterministic.
        clean_y: the labels before label noise; defaults to ``y`` (no noise).
        source_index: position of each sample in the split it was carved from (train split of
            the original dataset); defaults to ``arange(N)``.

    ``x[i]`` / ``y[i]`` give raw storage; ``dataset[i]`` gives the model-ready ``(x_i, y_i)``.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        transform: BatchTransform | None = None,
        clean_y: Tensor | None = None,
        source_index: Tensor | None = None,
    ):
        x = torch.as_tensor(x)
        y = torch.as_tensor(y).long()
        if x.dtype not in (torch.uint8, torch.float32, torch.int64):
            raise TypeError(f"x must be uint8, float32 or int64 (token ids), got {x.dtype}")
        if y.ndim not in (1, 2) or len(y) != len(x):
            raise ValueError(f"y must have shape ({len(x)},) or ({len(x)}, T), got {tuple(y.shape)}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.x = x
        self.y = y
        self.mean = _as_tuple(mean)
        self.std = _as_tuple(std)
        self.transform = transform
        self.clean_y = y if clean_y is None else torch.as_tensor(clean_y).long()
        self.source_index = torch.arange(len(y)) if source_index is None else torch.as_tensor(source_index).long()
        if self.clean_y.shape != y.shape or self.source_index.shape != y.shape[:1]:
            raise ValueError("clean_y and source_index must have the same shape as y")
        # Broadcastable (1, C, 1, ...) tensors, built once instead of on every batch.
        self._mean_t = self._broadcastable(self.mean)
        self._std_t = self._broadcastable(self.std)

    # -- shape ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape, e.g. ``(1, 28, 28)``."""
        return tuple(self.x.shape[1:])

    @property
    def is_noisy(self) -> Tensor:
        """Boolean mask of samples whose label differs from the clean one."""
        return self.y != self.clean_y

    # -- access -----------------------------------------------------------------------------------
    def __getitem__(self, index) -> tuple[Tensor, Tensor]:
        """``(x_i, y_i)`` ready for the model; a slice or index tensor gives a batch."""
        if isinstance(index, Tensor):
            index = int(index) if index.ndim == 0 else index
        if not isinstance(index, Tensor) and hasattr(index, "__index__"):  # int, numpy integer
            return self.prepare(self.x[index].unsqueeze(0))[0], self.y[index]
        return self.prepare(self.x[index]), self.y[index]

    def to_float(self, xb: Tensor) -> Tensor:
        """Raw storage -> float32 before normalisation: uint8 scaled to [0, 1], float32 and int64 token
        ids returned as is (``xb`` is never modified)."""
        if xb.dtype == torch.uint8:
            return xb.to(torch.float32).div_(255.0)  # the .to() already copied, so div_ is safe
        if xb.dtype == torch.int64:  # token ids: an embedding lookup needs them as integers
            return xb
        return xb.to(torch.float32)

    def normalize(self, xb: Tensor) -> Tensor:
        """Apply the per-channel ``(x - mean) / std`` (out of place; identity if none is set)."""
        if self._mean_t is None or self._std_t is None:  # both or neither (checked in __init__)
            return xb
        return (xb - self._mean_t.to(xb.device)) / self._std_t.to(xb.device)

    def prepare(self, xb: Tensor) -> Tensor:
        """Raw batch -> model input, without augmentation (what evaluation uses)."""
        return self.normalize(self.to_float(xb))

    def get_batch(self, index: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Model-ready batch at ``index``; augmented with ``transform`` when a generator is given."""
        xb = self.to_float(self.x[index])
        if generator is not None and self.transform is not None:
            xb = self.transform(xb, generator)  # augmentation works in [0, 1] pixel space (pads with black)
        return self.normalize(xb), self.y[index]

    # -- derived datasets -------------------------------------------------------------------------
    def subset(self, index: Tensor, *, keep_transform: bool = True) -> ArrayDataset:
        """The samples at ``index`` (copies), with the same normalisation (and transform if kept)."""
        index = torch.as_tensor(index).long()
        return ArrayDataset(
            self.x[index],
            self.y[index],
            mean=self.mean,
            std=self.std,
            transform=self.transform if keep_transform else None,
            clean_y=self.clean_y[index],
            source_index=self.source_index[index],
        )

    def with_labels(self, y: Tensor) -> ArrayDataset:
        """Same inputs with new (e.g. noisy) labels; ``clean_y`` keeps the current clean labels."""
        return ArrayDataset(
            self.x,
            y,
            mean=self.mean,
            std=self.std,
            transform=self.transform,
            clean_y=self.clean_y,
            source_index=self.source_index,
        )

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(n={len(self)}, input_shape={self.input_shape}, dtype={self.x.dtype}, "
            f"normalized={self.mean is not None}, transform={self.transform!r})"
        )

    # -- helpers ----------------------------------------------------------------------------------
    def _broadcastable(self, values: tuple[float, ...] | None) -> Tensor | None:
        if values is None:
            return None
        t = torch.tensor(values, dtype=torch.float32)
        if len(values) == 1:
            return t.reshape(())
        if self.x.ndim < 2 or self.x.shape[1] != len(values):
            raise ValueError(f"{len(values)} normalisation values for input shape {self.input_shape}")
        return t.reshape(1, -1, *([1] * (self.x.ndim - 2)))


def _as_tuple(v: float | Sequence[float] | None) -> tuple[float, ...] | None:
    if v is None:
        return None
    return (float(v),) if isinstance(v, (int, float)) else tuple(float(a) for a in v)


@dataclass(kw_only=True)
class DataSplits:
    """A dataset's splits plus what a model and a report need to know about it.

    ``meta`` is JSON-serialisable (sizes, seeds, normalisation, ``bayes_error`` for GMM data, a
    ``noise`` summary); ``noise`` keeps the full :class:`~prunezoo.data.noise.NoiseResult`
    (including the corrupted indices into ``train``).
    """

    name: str
    train: ArrayDataset
    test: ArrayDataset
    val: ArrayDataset | None = None
    num_classes: int
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    noise: NoiseResult | None = None

    def __repr__(self) -> str:
        sizes = f"train={len(self.train)}, val={len(self.val) if self.val is not None else 0}, test={len(self.test)}"
        return f"DataSplits({self.name!r}, {sizes}, num_classes={self.num_classes}, input_shape={self.input_shape})"


def stratified_subset(labels: Tensor, n: int, seed: int = 0, *, what: str = "subset") -> Tensor:
    """Sorted indices of a seeded, class-stratified sample of ``n`` of ``labels``.

    Each class gets ``n`` times its share (largest remainders round up, ties to the lower class), its
    samples drawn from one seeded permutation: the same ``(labels, n, seed)`` always gives the same set.
    ``what`` names the option in errors.
    """
    labels = torch.as_tensor(labels).long()
    total = len(labels)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    if n > total:
        raise ValueError(f"{what}={n} is larger than the split it samples ({total} samples)")
    if n == total:
        return torch.arange(total)
    classes, counts = labels.unique(return_counts=True)
    share = counts.double() * n / total
    quota = share.floor().long()
    short = n - int(quota.sum())
    if short:  # largest remainders first; stable sort keeps the lower class first on ties
        order = torch.sort(share - quota, descending=True, stable=True).indices
        quota[order[:short]] += 1
    g = torch.Generator()
    g.manual_seed(int(seed))
    perm = torch.randperm(total, generator=g)
    shuffled = labels[perm]
    picked = [perm[shuffled == c][:k] for c, k in zip(classes.tolist(), quota.tolist(), strict=True)]
    return torch.cat(picked).sort().values
