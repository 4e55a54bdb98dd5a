"""Training diagnostics: sharpness (top Hessian eigenvalue) and loss along weight interpolations.

Sharpness uses power iteration on Hessian-vector products computed with ``torch.func``
(reverse-over-reverse: vjp of grad; H is symmetric so vᵀH = Hv), so the Hessian is never formed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vjp


def _loss_fn(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable,
    names: list[str],
    buffers: dict,
) -> Callable:
    def loss(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        state = {**buffers, **dict(zip(names, params))}
        total = sum(loss_fn(functional_call(model, state, (x,)), y) * len(y) for x, y in batches)
        return total / sum(len(y) for _, y in batches)

    return loss


def hessian_top_eigenvalue(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss_fn: Callable = F.cross_entropy,
    params: Sequence[str] | None = None,
    iterations: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> float:
    """Largest-magnitude eigenvalue of the loss Hessian w.r.t. ``params`` (default: all trainable),
    by power iteration on HVPs; the model is evaluated in eval mode (BN uses running stats).
    With ``masks`` the Hessian is restricted to the unpruned weights (the sparse model's own
    parameter space): directions along pruned weights are projected out."""
    batches = list(batches)
    was_training = model.training
    model.eval()
    try:
        named = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        names = list(params) if params is not None else list(named)
        buffers = {n: b for n, b in model.named_buffers()} | {
            n: p.detach() for n, p in model.named_parameters() if n not in names
        }
        primal = tuple(named[n] for n in names)
        hvp = vjp(grad(_loss_fn(model, batches, loss_fn, names, buffers)), primal)[1]  # (output, vjp_fn)
        gen = torch.Generator().manual_seed(seed)
        keep = [masks[n].to(p.dtype) if masks is not None and n in masks else None for n, p in zip(names, primal)]
        project = lambda vs: [t if k is None else t * k for t, k in zip(vs, keep)]
        v = project([torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in primal])
        eig = 0.0
        for _ in range(iterations):
            norm = torch.sqrt(sum((t * t).sum() for t in v))
            v = [t / norm for t in v]
            (hv,) = hvp(tuple(v))
            new = float(sum((a * b).sum() for a, b in zip(v, hv)))  # Rayleigh quotient
            v = project(list(hv))
            if abs(new - eig) <= tol * max(1.0, abs(new)):
                return new
            eig = new
        return eig
    finally:
        model.train(was_training)


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Reset BN running statistics and re-estimate them (cumulative average) on ``batches``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    was_training = model.training
    model.train()
    for x, _ in batches:
        model(x)
    model.train(was_training)
    for m, mom in zip(bns, saved):
        m.momentum = mom


@torch.no_grad()
def interpolation_curve(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    points: int = 11,
    loss_fn: Callable = F.cross_entropy,
    bn_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> list[dict]:
    """Loss and accuracy along the piecewise-linear path through ``states`` (two states = linear
    interpolation), ``points`` per segment. With ``bn_batches`` BN statistics are recomputed at every
    point (interpolated running stats are meaningless). The model ends in its original state."""
    if len(states) < 2:
        raise ValueError("need at least two states to interpolate")
    batches = list(batches)
    bn_batches = list(bn_batches) if bn_batches is not None else None
    original = {k: v.clone() for k, v in model.state_dict().items()}
    out = []
    try:
        for seg, (a, b) in enumerate(zip(states[:-1], states[1:])):
            for i in range(points):
                if seg > 0 and i == 0:
                    continue  # shared endpoint
                t = i / (points - 1)
                model.load_state_dict({k: (1 - t) * a[k] + t * b[k] if a[k].is_floating_point() else b[k] for k in a})
                if bn_batches is not None:
                    recompute_batchnorm(model, bn_batches)
                model.eval()
                n = sum(len(y) for _, y in batches)
                logits = [(model(x), y) for x, y in batches]
                loss = sum(float(loss_fn(z, y)) * len(y) for z, y in logits) / n
                acc = sum(int((z.argmax(1) == y).sum()) for z, y in logits) / n
                out.append({"position": seg + t, "loss": loss, "acc": acc})
    finally:
        model.load_state_dict(original)
    return out
