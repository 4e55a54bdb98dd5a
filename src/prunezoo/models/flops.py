"""FLOP and parameter counts.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` (nothing is hand-counted), for one
forward pass with batch size 1, in evaluation mode. Its convention: a multiply-accumulate counts as
**2 FLOPs** (``Linear(784, 300)`` = 2*784*300 = 470,400), bias additions are not counted, and only
ops it has a formula for (matmuls, convolutions, attention) count at all — activations, pooling
and normalisation add 0. ``dense_flops`` is therefore dominated by, but not restricted to,
Conv/Linear layers (e.g. an explicit ``torch.matmul`` in a forward also counts).

``sparse_flops`` follows RigL's convention: each Conv/Linear layer's FLOPs scale with the density
of its weight; every other op stays dense.

All functions leave the model as they found it: train/eval flags are restored, no gradients are
recorded, BN running statistics are not updated (eval mode).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Layers whose FLOPs are attributed to (and scaled by) their weight.
FLOP_LAYER_TYPES: tuple[type[nn.Linear], type[nn.modules.conv._ConvNd]] = (nn.Linear, nn.modules.conv._ConvNd)
FlopLayer = nn.Linear | nn.modules.conv._ConvNd


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def _dummy_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    ref = next(model.parameters(), None)
    if getattr(model, "prunezoo_input_dtype", None) == torch.long:  # token models: ids, 1 = a non-padding token
        return torch.ones(1, *input_shape, dtype=torch.long, device=ref.device if ref is not None else None)
    if ref is None or not ref.is_floating_point():
        return torch.zeros(1, *input_shape)
    return torch.zeros(1, *input_shape, device=ref.device, dtype=ref.dtype)


def flop_layers(model: nn.Module) -> dict[str, FlopLayer]:
    """Conv/Linear modules keyed by the parameter name of their weight (``"conv1.weight"``)."""
    return {
        f"{name}.weight" if name else "weight": m
        for name, m in model.named_modules()
        if isinstance(m, FLOP_LAYER_TYPES) and isinstance(getattr(m, "weight", None), torch.Tensor)
    }


def layer_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """FLOPs of each Conv/Linear layer for one input of ``input_shape``, keyed by weight name.

    Counted as 2*MACs by ``FlopCounterMode`` (see module docstring); a layer used twice in a
    forward pass is counted twice, one never called counts 0.
    """
    layers = flop_layers(model)
    counts = dict.fromkeys(layers, 0)
    key_of = {id(m): k for k, m in layers.items()}

    def hook(module: nn.Module, args: tuple, kwargs: dict, _output) -> None:
        # Re-run just this layer under its own counter; .forward() bypasses hooks (no recursion).
        with FlopCounterMode(display=False) as counter:
            module.forward(*args, **kwargs)
        counts[key_of[id(module)]] += counter.get_total_flops()

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in layers.values()]
    try:
        with _inference(model):
            model(_dummy_input(model, input_shape))
    finally:
        for h in handles:
            h.remove()
    return counts


def dense_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Total FLOPs of one forward pass (batch size 1), every op FlopCounterMode counts."""
    with _inference(model), FlopCounterMode(display=False) as counter:
        model(_dummy_input(model, input_shape))
    return int(counter.get_total_flops())


def weight_densities(model: nn.Module) -> dict[str, float]:
    """Fraction of nonzero entries of each Conv/Linear weight, keyed by weight name."""
    with torch.no_grad():
        return {
            k: float(torch.count_nonzero(m.weight)) / max(m.weight.numel(), 1) for k, m in flop_layers(model).items()
        }


def sparse_flops(model: nn.Module, input_shape: Sequence[int], densities: Mapping[str, float] | None = None) -> int:
    """FLOPs with each Conv/Linear layer's count multiplied by its weight density (RigL convention).

    ``densities`` maps weight names to densities in [0, 1]; layers it omits (or all layers, when it
    is ``None``) use their measured density, the fraction of nonzero weight entries. Non-layer ops
    are counted dense. Returns ``round(dense - sum_l F_l * (1 - d_l))``.
    """
    per_layer = layer_flops(model, input_shape)
    measured = weight_densities(model)
    given = dict(densities or {})
    unknown = set(given) - set(per_layer)
    if unknown:
        raise ValueError(f"densities for unknown layers {sorted(unknown)}; known: {list(per_layer)}")
    for name, d in given.items():
        if not 0.0 <= float(d) <= 1.0:
            raise ValueError(f"density of {name!r} must be in [0, 1], got {d!r}")
    dens = measured | {k: float(v) for k, v in given.items()}
    saved = sum(f * (1.0 - dens[k]) for k, f in per_layer.items())
    return int(round(dense_flops(model, input_shape) - saved))


def count_parameters(model: nn.Module, *, prunable_only: bool = False) -> int:
    """Number of parameter entries (shared parameters once); ``prunable_only``: Conv/Linear weights."""
    if prunable_only:
        return sum(m.weight.numel() for m in flop_layers(model).values())
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module, *, prunable_only: bool = False) -> int:
    """Number of nonzero parameter entries; ``prunable_only``: only Conv/Linear weights."""
    with torch.no_grad():
        tensors = [m.weight for m in flop_layers(model).values()] if prunable_only else list(model.parameters())
        return int(sum(int(torch.count_nonzero(t)) for t in tensors))
