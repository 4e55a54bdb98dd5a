"""N:M fine-grained structured sparsity: exactly ``n`` nonzeros in every group of ``m`` consecutive weights.

Groups run along a layer's input dimension: the weight is viewed as a matrix ``(out, in)`` — a
convolution's ``(out, in/groups, *kernel)`` flattened in PyTorch memory order, so a group of a conv
mixes kernel positions of one input channel before moving to the next (the im2col matrix the
sparse export multiplies) — and each row is cut into ``in/m`` groups of ``m`` consecutive entries.
2:4 is the pattern NVIDIA Ampere+ sparse tensor cores accelerate; 1:4 and 4:8 are other common ones.

A layer whose input dimension is not a multiple of ``m`` cannot hold the pattern (e.g. a first
conv over 3 RGB channels with a 3×3 kernel: 27 inputs); it is left dense, as NVIDIA's ASP does,
and :func:`nm_eligible` lists which layers qualify.

Selection is by score, so any criterion applies: within each group the ``n`` highest scores are
kept (ties by position, first wins). With the OBS saliency w²/(2[F⁻¹]_kk) as the score this is the
"OBS-style" N:M choice: per group, prune the ``m - n`` weights whose removal (with the optimal
correction of the others) costs least under the local quadratic model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from prunezoo.errors import ConfigError
from prunezoo.sparsity.selection import prunable_parameters

_PATTERN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_pattern(pattern: str | tuple[int, int], field: str = "pattern") -> tuple[int, int]:
    """``"2:4"`` → ``(2, 4)``; needs 1 <= n < m (n = m would be dense)."""
    if isinstance(pattern, tuple) and len(pattern) == 2 and all(isinstance(v, int) for v in pattern):
        n, m = pattern
    else:
        match = _PATTERN.match(pattern) if isinstance(pattern, str) else None
        if match is None:
            raise ConfigError(field, f"expected 'n:m' such as '2:4', got {pattern!r}")
        n, m = int(match.group(1)), int(match.group(2))
    if not 1 <= n < m:
        raise ConfigError(field, f"needs 1 <= n < m in 'n:m', got {n}:{m}")
    return n, m


def pattern_density(pattern: str | tuple[int, int]) -> float:
    n, m = parse_pattern(pattern)
    return n / m


def is_eligible(shape: torch.Size | tuple[int, ...], m: int) -> bool:
    """A weight of ``shape`` can hold an N:M pattern: at least 2-D, input size a multiple of ``m``."""
    if len(shape) < 2:
        return False
    inputs = 1
    for s in shape[1:]:
        inputs *= s
    return inputs % m == 0


def nm_eligible(params: Mapping[str, torch.Tensor], pattern: str | tuple[int, int]) -> dict[str, bool]:
    """``{name: whether the layer can hold the pattern}`` (ineligible layers stay dense)."""
    _, m = parse_pattern(pattern)
    return {name: is_eligible(p.shape, m) for name, p in params.items()}


def _groups(t: torch.Tensor, m: int) -> torch.Tensor:
    return t.reshape(t.shape[0], -1, m)


def nm_keep(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask keeping the ``n`` highest scores of every group of ``m`` (ties: first position wins;
    NaN: lowest)."""
    if not is_eligible(scores.shape, m):
        raise ValueError(f"a weight of shape {tuple(scores.shape)} has no whole groups of {m} along its input")
    # NaN ranks below every number (pruned first, as in top-k selection); a stable descending sort
    # keeps equal scores in positional order, so the result is reproducible.
    g = _groups(scores.detach().float().nan_to_num(nan=float("-inf")), m)
    order = torch.sort(g, dim=-1, descending=True, stable=True).indices[..., :n]
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, order, True)
    return keep.reshape(scores.shape)


def nm_core(scores: Mapping[str, torch.Tensor], pattern: str | tuple[int, int]) -> dict[str, torch.Tensor]:
    """Per layer, the weights the pattern always keeps: top-``n`` per group (eligible), all (ineligible).

    ``scores`` may carry ``-inf`` for weights no longer allowed (an earlier mask); every group must
    still have ``n`` allowed weights, else the pattern cannot be met inside that mask.
    """
    n, m = parse_pattern(pattern)
    out = {}
    for name, s in scores.items():
        if not is_eligible(s.shape, m):
            out[name] = torch.ones_like(s, dtype=torch.bool)
            continue
        keep = nm_keep(s, n, m)
        if bool(torch.isneginf(s.float()[keep]).any()):
            raise ValueError(
                f"pattern {n}:{m}: layer {name!r} has groups with fewer than {n} weights left "
                "in the given masks (an earlier mask did not keep the pattern)"
            )
        out[name] = keep
    return out


def group_counts(t: torch.Tensor, m: int) -> torch.Tensor:
    """Nonzeros (or ``True``s) per group of ``m``, shaped ``(out, in/m)``."""
    return (_groups(t.detach(), m) != 0).sum(-1)


def satisfies(t: torch.Tensor, pattern: str | tuple[int, int], *, exact: bool = True) -> bool:
    """Whether a weight or mask has exactly (``exact``) or at most ``n`` nonzeros in every group of ``m``."""
    n, m = parse_pattern(pattern)
    if not is_eligible(t.shape, m):
        return False
    counts = group_counts(t, m)
    return bool((counts == n).all()) if exact else bool((counts <= n).all())


def check_model(model: torch.nn.Module, pattern: str | tuple[int, int], names=None) -> dict[str, bool]:
    """``{weight name: exactly n nonzeros per group}`` for the eligible prunable weights of ``model``."""
    params = prunable_parameters(model)
    if names is not None:
        params = {k: params[k] for k in names}
    _, m = parse_pattern(pattern)
    return {k: satisfies(p, pattern) for k, p in params.items() if is_eligible(p.shape, m)}
