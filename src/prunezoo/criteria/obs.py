"""Optimal Brain Surgeon with a damped block-diagonal empirical Fisher (Hassibi & Stork, NIPS
1993; the block-wise, damped empirical-Fisher form of WoodFisher, Singh & Alistarh, NeurIPS 2020).

Each layer's weights are flattened and cut into blocks of ``block_size`` consecutive entries
(the last block zero-padded; padded coordinates are decoupled and never selected). Per block,
F = λI + (1/m) Σ_n g_n g_nᵀ over m per-sample gradients, inverted directly (Cholesky; blocks
are small). Saliency: s_k = w_k² / (2 [F⁻¹]_kk), the loss increase of removing w_k *and*
optimally correcting the other weights of its block (registered ``"obs"``; higher = keep).

:func:`prunezoo.pruning.obs_prune` applies the correction. For the set P of weights pruned in a
block the joint OBS update is δw = -F⁻¹[:, P] ([F⁻¹]_PP)⁻¹ w_P, which sets w_P exactly to zero (up to
rounding; ``obs_prune`` then writes exact zeros) and minimises the quadratic loss model over
the block's survivors. Selection uses the single-weight saliencies (as WoodFisher's one-shot
variant), not a joint search over subsets.

Mode: eval mode (BatchNorm running statistics, no dropout), as WoodFisher's code computes the
Fisher of the trained network; ``mode="train"`` in :func:`make_obs`/``obs_prune`` changes it.

Cost: the inverse blocks take ``numel × block_size`` float64 per layer (64× the weights at the
default), fine for the small models prunezoo studies, too much for ImageNet-scale layers.
"""

from __future__ import annotations

import torch

from prunezoo.criteria._common import check_mode, iter_sample_gradients, loss_function, preserved, require_batches
from prunezoo.criteria.base import Criterion, ScoringContext, register_criterion
from prunezoo.errors import ConfigError

MODE = "eval"  # WoodFisher's code


def _check(block_size: int, damp: float) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError("block_size", f"must be a positive integer, got {block_size!r}")
    if not damp > 0:
        raise ConfigError("damp", f"must be > 0 (it keeps the Fisher blocks invertible), got {damp!r}")


def _blocks(flat: torch.Tensor, block_size: int) -> torch.Tensor:
    """(..., d) -> (..., ceil(d/B), B), zero-padded at the end."""
    d = flat.shape[-1]
    pad = (-d) % block_size
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.reshape(*flat.shape[:-1], -1, block_size)


def fisher_inverse_blocks(
    ctx: ScoringContext,
    *,
    block_size: int = 64,
    damp: float = 1e-4,
    num_samples: int | None = None,
    per_sample: bool | None = None,
    mode: str | None = MODE,
) -> dict[str, torch.Tensor]:
    """``{name: (num_blocks, B, B)}`` float64 inverses of λI + (1/m) Σ g gᵀ per block."""
    _check(block_size, damp)
    check_mode(mode)
    batches = require_batches(ctx, "obs")
    acc = {
        n: torch.zeros(-(-p.numel() // block_size), block_size, block_size, dtype=torch.float64, device=p.device)
        for n, p in ctx.params.items()
    }
    m = 0
    with preserved(ctx, mode=mode):
        for chunk in iter_sample_gradients(
            ctx, batches, loss_function(ctx), per_sample=per_sample, num_samples=num_samples
        ):
            for n, g in chunk.items():
                gb = _blocks(g.reshape(g.shape[0], -1).double(), block_size)  # (b, nb, B)
                acc[n] += torch.einsum("sni,snj->nij", gb, gb)
            m += next(iter(chunk.values())).shape[0]
    eye = torch.eye(block_size, dtype=torch.float64)
    out = {}
    for n, a in acc.items():
        fisher = a / max(m, 1) + damp * eye.to(a.device)
        out[n] = torch.cholesky_inverse(torch.linalg.cholesky(fisher))
    return out


def obs_saliency(weight: torch.Tensor, finv: torch.Tensor) -> torch.Tensor:
    """s_k = w_k² / (2 [F⁻¹]_kk), shaped like ``weight``."""
    d = weight.numel()
    diag = torch.diagonal(finv, dim1=-2, dim2=-1).reshape(-1)[:d]
    return (weight.detach().reshape(-1).double().pow(2) / (2 * diag)).reshape(weight.shape)


def obs_update(weight: torch.Tensor, finv: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """``weight + δw`` with the joint OBS update δw = -F⁻¹[:, P] ([F⁻¹]_PP)⁻¹ w_P per block.

    All blocks are solved at once: with D = diag(1_P), solving (D F⁻¹ D + I - D) z = D w gives
    z_P = ([F⁻¹]_PP)⁻¹ w_P and z = 0 off P, so δw = -F⁻¹ z. Returns float64, pruned entries
    (numerically) zero but not forced to zero.
    """
    block_size = finv.shape[-1]
    w = _blocks(weight.detach().reshape(-1).double(), block_size)  # (nb, B)
    p = _blocks(pruned.reshape(-1).to(torch.float64), block_size)
    a = finv * p.unsqueeze(-1) * p.unsqueeze(-2) + torch.diag_embed(1.0 - p)
    z = torch.linalg.solve(a, (w * p).unsqueeze(-1))
    new = w - (finv @ z).squeeze(-1)
    return new.reshape(-1)[: weight.numel()].reshape(weight.shape)


def make_obs(
    block_size: int = 64,
    damp: float = 1e-4,
    num_samples: int | None = None,
    per_sample: bool | None = None,
    mode: str = MODE,
) -> Criterion:
    """An OBS saliency criterion with the given Fisher-block options, scored in ``mode``."""
    _check(block_size, damp)
    check_mode(mode)

    def obs(ctx: ScoringContext) -> dict[str, torch.Tensor]:
        finv = fisher_inverse_blocks(
            ctx, block_size=block_size, damp=damp, num_samples=num_samples, per_sample=per_sample, mode=mode
        )
        return {n: obs_saliency(p, finv[n]).to(p.dtype) for n, p in ctx.params.items()}

    obs.__doc__ = f"OBS saliency w²/(2[F⁻¹]_kk), block_size={block_size}, damp={damp}, {mode} mode."
    return obs


register_criterion("obs")(make_obs())
