"""Training-label noise with the conventions of the literature, each under its exact name.

The conventions differ in what "20 % noise" means, so realised corruption is always reported:

``uniform-resample``  (OpenLTH, MNIST-1D) pick ``ceil(rate*N)`` samples, draw a new label uniformly
                      over all K classes; ~1/K of them keep their label -> realised ~ rate*(K-1)/K.
``symmetric``         pick ``ceil(rate*N)`` samples, new label uniform over the K-1 *wrong* classes
                      -> realised = ceil(rate*N)/N.
``pairflip``          pick ``ceil(rate*N)`` samples, ``y -> (y + 1) mod K`` -> realised = ceil(rate*N)/N.
``subset-permute``    pick ``ceil(rate*N)`` samples and randomly permute their labels among
                      themselves (class counts unchanged); realised < rate (same-class swaps and
                      fixed points keep the label).

Noise draws from its own ``numpy.random.Generator(seed)``, never from global state, so the same
``seed`` corrupts the same samples in every run, at every pruning level, whatever else is seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

NOISE_KINDS: tuple[str, ...] = ("uniform-resample", "symmetric", "pairflip", "subset-permute")


@dataclass(frozen=True)
class NoiseResult:
    """Outcome of :func:`apply_label_noise`.

    ``noisy_indices`` are the (sorted) samples chosen for corruption, including those whose
    redrawn label happens to equal the original; ``realized_rate`` is the fraction of *all*
    samples whose label actually changed.
    """

    labels: Tensor
    noisy_indices: Tensor
    realized_rate: float
    kind: str
    rate: float
    seed: int

    @property
    def num_noisy(self) -> int:
        return len(self.noisy_indices)

    @property
    def num_changed(self) -> int:
        return round(self.realized_rate * len(self.labels))

    def to_meta(self) -> dict[str, Any]:
        """JSON-serialisable summary (indices omitted: they can be large; see ``noisy_indices``)."""
        return {
            "kind": self.kind,
            "rate": self.rate,
            "seed": self.seed,
            "num_noisy": self.num_noisy,
            "num_changed": self.num_changed,
            "realized_rate": self.realized_rate,
        }


def num_noisy(rate: float, n: int) -> int:
    """``ceil(rate * n)``, robust to float error (0.15 * 4000 is 600.0000000000001, not 601)."""
    return min(n, math.ceil(round(rate * n, 6)))


def apply_label_noise(
    y: Tensor | np.ndarray,
    rate: float,
    kind: str = "uniform-resample",
    num_classes: int | None = None,
    seed: int = 0,
) -> NoiseResult:
    """Corrupt a fraction ``rate`` of the labels ``y`` (never in place); see the module docstring.

    Args:
        y: integer labels, shape ``(N,)``.
        rate: fraction of samples to corrupt, in [0, 1].
        kind: one of :data:`NOISE_KINDS`.
        num_classes: K; inferred as ``max(y) + 1`` when None.
        seed: seed of the dedicated generator.

    Raises:
        ValueError: unknown ``kind``, ``rate`` outside [0, 1], labels outside [0, K), or K < 2 for
            a kind that needs a different class.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; known: {list(NOISE_KINDS)}")
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"noise rate must be in [0, 1], got {rate!r}")
    y_t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).long().reshape(-1).cpu()
    n = len(y_t)
    k = int(num_classes) if num_classes is not None else (int(y_t.max()) + 1 if n else 0)
    if n and (int(y_t.min()) < 0 or int(y_t.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got range [{int(y_t.min())}, {int(y_t.max())}]")

    rng = np.random.default_rng(int(seed))
    m = num_noisy(rate, n)
    if m and kind in ("symmetric", "pairflip") and k < 2:
        raise ValueError(f"noise kind {kind!r} needs at least 2 classes, got num_classes={k}")
    idx = np.sort(rng.choice(n, size=m, replace=False)) if m else np.empty(0, dtype=np.int64)
    old = y_t.numpy()[idx]

    if kind == "uniform-resample":
        new = rng.integers(0, k, size=m)
    elif kind == "symmetric":
        new = (old + rng.integers(1, k, size=m)) % k  # a shift in 1..K-1 is uniform over wrong classes
    elif kind == "pairflip":
        new = (old + 1) % k
    else:  # subset-permute
        new = old[rng.permutation(m)]

    labels = y_t.clone()
    labels[torch.from_numpy(idx).long()] = torch.from_numpy(np.asarray(new, dtype=np.int64))
    realized = float((labels != y_t).sum()) / n if n else 0.0
    return NoiseResult(
        labels=labels,
        noisy_indices=torch.from_numpy(idx).long(),
        realized_rate=realized,
        kind=kind,
        rate=rate,
        seed=int(seed),
    )
