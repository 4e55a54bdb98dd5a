"""ThiNet (Luo et al. 2017, "ThiNet: A Filter Level Pruning Method for Deep Neural Network Compression").

A layer's output channels are judged by the *next* layer: each sampled scalar output of the next
layer is a sum over its input channels, y = Σ_c x̂_c. Greedily remove the channel set T minimising
||Σ_{c∈T} x̂_c||² (the reconstruction error of dropping them), then refit the next layer's weights
on the kept channels by least squares (ThiNet refits per-channel scales; refitting the full weight,
as in He et al. 2017's channel pruning, can only reconstruct better). Supported pairs: Conv2d →
Conv2d (groups 1; BN/ReLU/pooling in between) and Linear → Linear; the layer's output channels must
feed only ``next_layer`` (no residual coupling), since the others are not reconstructed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.structured.importance import PRUNABLE


@dataclass
class ThiNetResult:
    """Channels kept/removed (indices of the original layer) and the relative squared
    reconstruction error ||Y − Ŷ||²/||Y||² of the next layer on the fitted rows, before/after refit."""

    kept: list[int]
    removed: list[int]
    error_no_refit: float
    error_refit: float


def _inputs_of(model: nn.Module, module: nn.Module, batches: Iterable) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    h = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                model(b[0] if isinstance(b, Sequence) else b)
    finally:
        h.remove()
        for m, t in modes:
            m.training = t
    return torch.cat(seen)


def _rows(x: torch.Tensor, nxt: nn.Module) -> torch.Tensor:
    """Next-layer inputs as (rows, C_in, taps): one row per output location."""
    if isinstance(nxt, nn.Linear):
        return x.flatten(1)[:, :, None]
    u = F.unfold(x, nxt.kernel_size, dilation=nxt.dilation, padding=nxt.padding, stride=nxt.stride)
    n, _, locs = u.shape
    return u.view(n, nxt.in_channels, -1, locs).permute(0, 3, 1, 2).reshape(n * locs, nxt.in_channels, -1)


@torch.no_grad()
def thinet_prune(
    model: nn.Module,
    layer: str,
    next_layer: str,
    batches: Sequence,
    ratio: float,
    *,
    samples: int = 4096,
    max_rows: int = 20000,
    seed: int = 0,
) -> ThiNetResult:
    """Remove ``ratio`` of ``layer``'s output channels chosen by ThiNet, refit ``next_layer``, in place.

    ``batches``: inputs (or ``(x, y)`` pairs) used for activations. ``samples`` random (location,
    output channel) scalars drive the greedy selection; at most ``max_rows`` locations the refit.
    """
    first, nxt = model.get_submodule(layer), model.get_submodule(next_layer)
    pair_ok = (
        isinstance(first, nn.Conv2d) and isinstance(nxt, nn.Conv2d) and nxt.groups == 1 and first.groups == 1
    ) or (isinstance(first, nn.Linear) and isinstance(nxt, nn.Linear))
    if not pair_ok:
        raise ConfigError("layer", "thinet_prune supports Conv2d→Conv2d (groups=1) and Linear→Linear")
    c_in = nxt.weight.shape[1]
    if first.weight.shape[0] != c_in:
        raise ConfigError(
            "next_layer", f"{next_layer} has {c_in} inputs but {layer} has {first.weight.shape[0]} outputs"
        )
    if not 0.0 <= ratio < 1.0:
        raise ConfigError("ratio", f"must be in [0, 1), got {ratio}")
    n_remove = min(int(round(ratio * c_in)), c_in - 1)
    gen = torch.Generator().manual_seed(seed)

    rows = _rows(_inputs_of(model, nxt, batches).double(), nxt)  # (R, C, K)
    if rows.shape[0] > max_rows:
        rows = rows[torch.randperm(rows.shape[0], generator=gen)[:max_rows]]
    w = nxt.weight.detach().double().reshape(nxt.weight.shape[0], c_in, -1)  # (O, C, K)

    # Greedy selection on sampled scalars y = Σ_c x̂_c (ThiNet Alg. 1).
    m = min(samples, rows.shape[0] * w.shape[0])
    r_idx = torch.randint(rows.shape[0], (m,), generator=gen)
    o_idx = torch.randint(w.shape[0], (m,), generator=gen)
    z = (rows[r_idx] * w[o_idx]).sum(-1)  # (m, C) per-channel contributions
    removed: list[int] = []
    acc = torch.zeros(m, dtype=z.dtype)
    for _ in range(n_remove):
        cost = (acc[:, None] + z).pow(2).sum(0)
        cost[removed] = float("inf")
        c = int(cost.argmin())
        removed.append(c)
        acc += z[:, c]
    kept = [c for c in range(c_in) if c not in set(removed)]

    # Least-squares refit of the next layer's weight on the kept channels (bias unchanged).
    target = torch.einsum("rck,ock->ro", rows, w)
    a = rows[:, kept].reshape(rows.shape[0], -1)
    w_kept = w[:, kept].reshape(w.shape[0], -1)
    w_fit = torch.linalg.lstsq(a, target).solution.T  # (O, |S|·K)
    denom = float(target.pow(2).sum().clamp_min(1e-30))
    err0 = float((target - a @ w_kept.T).pow(2).sum()) / denom
    err1 = float((target - a @ w_fit.T).pow(2).sum()) / denom
    if err1 > err0:  # numerical safety: never return a worse refit
        w_fit, err1 = w_kept, err0

    if removed:
        _remove_channels(model, first, nxt, removed, batches)
    nxt.weight.data = w_fit.reshape(nxt.weight.shape).to(nxt.weight.dtype)
    return ThiNetResult(kept, sorted(removed), err0, err1)


def _remove_channels(model: nn.Module, first: nn.Module, nxt: nn.Module, idxs: list[int], batches) -> None:
    b = batches[0]
    x = (b[0] if isinstance(b, Sequence) else b)[:1]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():  # Torch-Pruning traces through autograd
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    finally:
        for m, t in modes:
            m.training = t
    fn = tp.prune_conv_out_channels if isinstance(first, nn.Conv2d) else tp.prune_linear_out_channels
    group = dg.get_pruning_group(first, fn, idxs)
    others = {dep.target.module for dep, _ in group if isinstance(dep.target.module, PRUNABLE)} - {first, nxt}
    if others:
        raise ConfigError(
            "layer",
            "thinet_prune: the layer's channels are coupled to other layers "
            "(residual sum?); only the next layer is reconstructed",
        )
    group.prune()
