"""Exact top-k selection over one tensor or many (global), with deterministic tie-breaking.

Uses ``torch.kthvalue`` (selection, O(n)) instead of a full ``topk``/sort: it is what makes global
pruning of tens of millions of weights fast. Ties at the threshold are filled in flat index order
(layers in the given order), so the kept count is exact and the result reproducible.

NaN scores rank below every number, -inf included: they are kept only when ``k`` exceeds the
number of non-NaN scores (then in flat index order), so the count stays exact. A NaN score
usually means a broken criterion; :func:`nan_layers` names the layers that have them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def keep_count(density: float, n: int) -> int:
    """How many of ``n`` weights a density keeps: round half up, guarding float noise like 0.8*N."""
    return min(n, max(0, int(math.floor(density * n + 0.5 + 1e-9))))


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask keeping exactly the ``k`` highest scores of ``scores``."""
    flat = scores.reshape(-1)
    n = flat.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside [0, {n}]")
    if k == n:
        return torch.ones_like(scores, dtype=torch.bool)
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    # one dtype for the threshold and the comparisons (a float64 score compared with a float32
    # threshold could keep more than k)
    flat = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    nan = torch.isnan(flat)
    n_nan = int(nan.sum())
    if n_nan:
        if k >= n - n_nan:  # every number is kept, NaNs fill the rest in index order
            keep = ~nan
            keep[nan.nonzero().squeeze(1)[: k - (n - n_nan)]] = True
            return keep.reshape(scores.shape)
        flat = flat.masked_fill(nan, float("-inf"))
    # k-th largest == (n-k+1)-th smallest
    threshold = torch.kthvalue(flat, n - k + 1).values
    keep = flat > threshold
    missing = k - int(keep.sum())
    if missing > 0:
        tied = flat == threshold
        if n_nan:
            tied &= ~nan  # a NaN (now -inf) never wins a tie against a number
        keep[tied.nonzero().squeeze(1)[:missing]] = True
    return keep.reshape(scores.shape)


def global_keep_masks(scores: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Keep the ``k`` highest scores across all tensors (one global threshold)."""
    names = list(scores)
    dtype = torch.float64 if any(scores[n].dtype == torch.float64 for n in names) else torch.float32
    flat = torch.cat([scores[n].reshape(-1).to(dtype) for n in names])
    keep = keep_top_k(flat, k)
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep[start : start + size].reshape(scores[n].shape)
        start += size
    return out


def nan_layers(scores: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``{name: number of NaN scores}`` for the layers that have any."""
    out = {}
    for n, s in scores.items():
        if s.is_floating_point() and (count := int(torch.isnan(s).sum())):
            out[n] = count
    return out


def restrict_scores(scores: Mapping[str, torch.Tensor], allowed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores with disallowed entries at -inf so a new mask can only stay inside ``allowed``."""
    out = {}
    for n, s in scores.items():
        s = s.float()
        out[n] = s.masked_fill(~allowed[n], float("-inf")) if n in allowed else s
    return out
