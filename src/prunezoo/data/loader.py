"""A seeded batch iterator over in-memory tensors.

``torch.utils.data.DataLoader`` collates one sample at a time through Python; for data that is
already one tensor, slicing by a permutation is 10-100x faster and trivially reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


def epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit seed derived from ``(seed, epoch)``.

    SeedSequence hashes the pair, so nearby seeds/epochs give unrelated streams (``seed + epoch``
    would make seed 0 epoch 1 collide with seed 1 epoch 0).
    """
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0])


class BatchLoader:
    """Iterates ``(x, y)`` batches of an :class:`~prunezoo.data.ArrayDataset`.

    Epoch ``e`` draws its order, then its augmentation, from a ``torch.Generator`` seeded by
    ``epoch_seed(seed, e)``: the same ``(seed, epoch)`` always yields identical batches, whatever
    happened before, so training can resume mid-run. As with ``DistributedSampler``, call
    :meth:`set_epoch` before each epoch, otherwise every pass repeats the same order.

    Args:
        dataset: an ArrayDataset (or any object with ``x`` and ``y`` tensors).
        batch_size: samples per batch.
        shuffle: random order per epoch (else dataset order; augmentation still seeded).
        seed: non-negative base seed.
        drop_last: drop the final incomplete batch.
        augment: apply ``dataset.transform`` (if any) to each batch; disable for evaluation.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        augment: bool = True,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.augment = bool(augment)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select which epoch's order (and augmentation) the next iteration produces."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.dataset.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def generator(self, epoch: int | None = None) -> torch.Generator:
        """The generator epoch ``epoch`` (default: the current one) draws from."""
        g = torch.Generator()
        g.manual_seed(epoch_seed(self.seed, self.epoch if epoch is None else epoch))
        return g

    def order(self, epoch: int | None = None) -> Tensor:
        """The sample order of an epoch (consumes the start of its generator, as iteration does)."""
        return self._order(self.generator(epoch))

    def _order(self, g: torch.Generator) -> Tensor:
        n = len(self.dataset.y)
        return torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = self.generator()
        order = self._order(g)
        ds = self.dataset
        get_batch = getattr(ds, "get_batch", None)
        aug_gen = g if self.augment else None
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if get_batch is not None:
                yield get_batch(idx, aug_gen)
            else:  # plain object with x / y tensors
                yield ds.x[idx].float(), ds.y[idx]

    def __repr__(self) -> str:
        return (
            f"BatchLoader(n={len(self.dataset.y)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"seed={self.seed}, drop_last={self.drop_last}, epoch={self.epoch})"
        )
