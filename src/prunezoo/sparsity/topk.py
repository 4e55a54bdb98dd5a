"""Exact top-k selection over one tensor or many (global), with deterministic tie-breaking.

Uses ``torch.kthvalue`` (selection, O(n)) instead of a full ``topk``/sort: it is what makes global
pruning of tens of millions of weights fast. Ties at the threshold are filled in flat index order
(layers in the given order), so the kept count is exact and the result reproducible.
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
    # k-th largest == (n-k+1)-th smallest
    threshold = torch.kthvalue(flat.float(), n - k + 1).values
    keep = flat > threshold
    missing = k - int(keep.sum())
    if missing > 0:
        ties = (flat == threshold).nonzero().squeeze(1)[:missing]
        keep[ties] = True
    return keep.reshape(scores.shape)


def global_keep_masks(scores: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Keep the ``k`` highest scores across all tensors (one global threshold)."""
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1).float() for n in names])
    keep = keep_top_k(flat, k)
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep[start : start + size].reshape(scores[n].shape)
        start += size
    return out


def restrict_scores(scores: Mapping[str, torch.Tensor], allowed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores with disallowed entries at -inf so a new mask can only stay inside ``allowed``."""
    out = {}
    for n, s in scores.items():
        s = s.float()
        out[n] = s.masked_fill(~allowed[n], float("-inf")) if n in allowed else s
    return out
