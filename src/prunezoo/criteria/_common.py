"""Shared plumbing of the data-dependent criteria: batch checks, gradients, per-sample gradients,
and a context manager that leaves the model exactly as it was found."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from prunezoo.criteria.base import ScoringContext
from prunezoo.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def require_batches(ctx: ScoringContext, criterion: str) -> list[Batch]:
    """The batches as a list (criteria may iterate more than once; a generator would run dry)."""
    if ctx.batches is None:
        raise ConfigError("batches", f"criterion {criterion!r} is data-dependent: pass batches=[(x, y), ...]")
    batches = [(x, y) for x, y in ctx.batches]
    if not batches:
        raise ConfigError("batches", f"criterion {criterion!r} got an empty batches iterable")
    return batches


def loss_function(ctx: ScoringContext) -> LossFn:
    return ctx.loss_fn if ctx.loss_fn is not None else F.cross_entropy


def model_device(ctx: ScoringContext) -> torch.device:
    first = next(iter(ctx.params.values()), None)
    return first.device if first is not None else torch.device("cpu")


def to_device(batch: Batch, device: torch.device) -> Batch:
    x, y = batch
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


MODES = ("train", "eval")


def check_mode(mode: str | None, field: str = "mode") -> str | None:
    if mode is not None and mode not in MODES:
        raise ConfigError(field, f"must be 'train' or 'eval' (the mode the model is scored in), got {mode!r}")
    return mode


@contextmanager
def preserved(ctx: ScoringContext, *, mode: str | None = None) -> Iterator[None]:
    """Score inside this block: afterwards the model is as it was found.

    ``mode`` ("train" or "eval") sets every module's train/eval flag for the scoring passes
    (BatchNorm batch vs running statistics, dropout on or off); None scores in the caller's mode.
    Each criterion passes its paper's mode, so a score does not depend on the mode the model
    happens to be in. Restored: every module's train/eval flag, every parameter's
    ``requires_grad`` and ``.grad``, every buffer (a forward pass in train mode updates BatchNorm
    running statistics), and the global RNG (dropout draws come from a generator seeded by
    ``ctx.generator``, so scores are reproducible given the pruning seed and the caller's random
    stream is untouched).
    """
    model = ctx.model
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [(p, p.requires_grad, p.grad) for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in params if p.is_cuda})
    seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        try:
            for p in ctx.params.values():
                p.requires_grad_(True)
            if check_mode(mode) is not None:
                model.train(mode == "train")
            yield
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            for p, req, grad in flags:
                p.requires_grad_(req)
                p.grad = grad
            for m, training in modes:
                m.training = training


def summed_gradients(ctx: ScoringContext, batches: list[Batch], loss_fn: LossFn) -> dict[str, torch.Tensor]:
    """Σ_b ∇L_b over the batches for the prunable parameters (``.grad`` is never touched)."""
    names = list(ctx.params)
    params = [ctx.params[n] for n in names]
    total = [torch.zeros_like(p) for p in params]
    device = model_device(ctx)
    for batch in batches:
        x, y = to_device(batch, device)
        loss = loss_fn(ctx.model(x), y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for t, g in zip(total, grads):
            if g is not None:
                t.add_(g.detach())
    return dict(zip(names, total))


def iter_sample_gradients(
    ctx: ScoringContext,
    batches: list[Batch],
    loss_fn: LossFn,
    *,
    per_sample: bool | None = None,
    num_samples: int | None = None,
    chunk_size: int = 64,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield chunks ``{name: (b, *shape)}`` of per-sample gradients of the prunable parameters.

    Per-sample gradients use ``torch.func`` (``vmap(grad(...))`` over ``functional_call``), one
    sample at a time as a batch of one. Models ``vmap`` cannot handle (BatchNorm in train mode,
    in-place buffer updates...) fall back, when ``per_sample`` is None, to one gradient per
    *batch* (of the mean batch loss), with a warning; ``per_sample=False`` asks for that directly,
    ``per_sample=True`` makes a vmap failure an error. ``num_samples`` caps how many per-sample
    gradients (or batches, in the fallback) are produced.
    """
    from torch.func import functional_call, grad, vmap

    model = ctx.model
    names = list(ctx.params)
    device = model_device(ctx)
    detached = {n: ctx.params[n].detach() for n in names}

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size, randomness="different")

    def batch_grad(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        g = torch.autograd.grad(loss_fn(model(x), y), [ctx.params[n] for n in names], allow_unused=True)
        return {
            n: (gi.detach() if gi is not None else torch.zeros_like(ctx.params[n])).unsqueeze(0)
            for n, gi in zip(names, g)
        }

    mode = per_sample
    produced = 0
    for batch in batches:
        if num_samples is not None and produced >= num_samples:
            return
        x, y = to_device(batch, device)
        if mode is not False:
            if num_samples is not None:
                x, y = x[: num_samples - produced], y[: num_samples - produced]
            try:
                out = per_sample_grad(detached, x, y)
            except Exception as err:
                if mode is True:
                    raise
                warnings.warn(
                    f"per-sample gradients via torch.func failed for this model ({type(err).__name__}: {err}); "
                    "falling back to per-batch gradients (per_sample=False)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                mode = False
            else:
                mode = True
                produced += len(x)
                yield {n: out[n].detach() for n in names}
                continue
        produced += 1
        yield batch_grad(x, y)
