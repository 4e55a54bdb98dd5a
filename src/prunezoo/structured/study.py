"""Structured methods as study ``criterion`` names: one entry point from a method config to a pruned model.

``criterion`` of a ``kind: structured`` method is either a channel importance (``l1``, ``l2``,
``fpgm``, ``apoz``, ``taylor``, ``bn-scale``, ``random``, pruned through Torch-Pruning) or a
procedure: ``slimming`` (BN-γ L1 fine-tune — done by the job — then a global |γ| cut), ``thinet``
(greedy reconstruction + least-squares refit of each layer pair whose channels feed only the next
layer), ``merge`` (cosine cluster-and-merge of the hidden neurons of consecutive Linear layers).
The literature's names are accepted as aliases (``l1-filter`` = ``l1``, ...; see ``ALIASES``).

``options`` (besides the criterion's own): ``scope: layer|global``; ``allocation: sensitivity``
with ``budget: channels|flops|latency`` and ``scan_ratios`` (prune each layer alone, then pick
per-layer ratios: ``channels`` removes the method's ratio of the channels, ``flops`` /
``latency`` keep ``1 - ratio`` of the dense FLOPs / measured CPU latency).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.flops import count_parameters, dense_flops
from prunezoo.structured.importance import CHANNEL_CRITERIA, PRUNABLE
from prunezoo.structured.merge import merge_neurons
from prunezoo.structured.prune import (
    StructuredResult,
    allocate_from_sensitivity,
    out_channels,
    prune_channels,
    sensitivity_scan,
)
from prunezoo.structured.thinet import thinet_prune

PROCEDURES = ("slimming", "thinet", "merge")
ALIASES = {
    "l1-filter": "l1",
    "l1-norm": "l1",
    "l2-filter": "l2",
    "l2-norm": "l2",
    "geometric-median": "fpgm",
    "taylor-fo": "taylor",
    "bn-gamma": "bn-scale",
    "network-slimming": "slimming",
    "random-channel": "random",
    "neuron-merge": "merge",
    "cluster-merge": "merge",
}
BUDGETS = ("channels", "flops", "latency")


def structured_criterion_names() -> list[str]:
    """Every name a ``kind: structured`` method accepts as ``criterion``."""
    return sorted({*CHANNEL_CRITERIA, *PROCEDURES, *ALIASES})


def canonical_structured_criterion(name: str) -> str:
    canon = ALIASES.get(name, name)
    if canon not in CHANNEL_CRITERIA and canon not in PROCEDURES:
        raise ConfigError("criterion", f"unknown structured criterion {name!r}; known: {structured_criterion_names()}")
    return canon


def _layer_pairs(model: nn.Module, types: tuple[type, ...]) -> list[tuple[str, str]]:
    """Consecutive (in module order) layers of ``types`` whose sizes chain: candidate producer→consumer."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
    return [
        (a, b) for (a, ma), (b, mb) in zip(layers, layers[1:], strict=False) if ma.weight.shape[0] == mb.weight.shape[1]
    ]


def _thinet_all(model: nn.Module, ratio: float, batches: Sequence, seed: int) -> list[str]:
    import torch_pruning as tp

    # One dependency graph up front: a pair qualifies when removing the layer's output channels
    # touches no prunable layer but the next (no residual coupling). Pruning keeps that structure.
    x = batches[0][0] if isinstance(batches[0], Sequence) else batches[0]
    was = model.training
    model.eval()
    with torch.enable_grad():
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=x[:1])
    model.train(was)
    pairs = []
    for layer, nxt in _layer_pairs(model, (nn.Conv2d, nn.Linear)):
        first = model.get_submodule(layer)
        fn = tp.prune_conv_out_channels if isinstance(first, nn.Conv2d) else tp.prune_linear_out_channels
        touched = {
            d.target.module for d, _ in dg.get_pruning_group(first, fn, [0]) if isinstance(d.target.module, PRUNABLE)
        }
        if touched == {first, model.get_submodule(nxt)}:
            pairs.append((layer, nxt))
    done = []
    for layer, nxt in pairs:
        try:
            thinet_prune(model, layer, nxt, batches, ratio, seed=seed)
        except ConfigError:  # coupled to a residual sum / unsupported pair: those channels stay
            continue
        done.append(layer)
    return done


def _merge_all(model: nn.Module, ratio: float) -> list[str]:
    done = []
    for layer, nxt in _layer_pairs(model, (nn.Linear,)):
        n = model.get_submodule(layer).out_features
        merge_neurons(model, layer, nxt, max(1, n - int(round(ratio * n))))
        done.append(layer)
    return done


def apply_structured(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float,
    criterion: str,
    *,
    batches: Sequence | None = None,
    evaluate_fn: Callable[[nn.Module], float] | None = None,
    seed: int = 0,
    options: dict | None = None,
) -> StructuredResult:
    """Prune ``model`` in place by the study method ``criterion`` at channel ratio ``ratio``."""
    opts = dict(options or {})
    crit = canonical_structured_criterion(criterion)
    allocation = opts.pop("allocation", None)
    budget = opts.pop("budget", "channels")
    scan_ratios = tuple(opts.pop("scan_ratios", (0.25, 0.5, 0.75)))
    if allocation not in (None, "sensitivity"):
        raise ConfigError("options.allocation", f"must be 'sensitivity' or absent, got {allocation!r}")
    if budget not in BUDGETS:
        raise ConfigError("options.budget", f"must be one of {list(BUDGETS)}, got {budget!r}")
    if crit in ("thinet", "merge"):
        if allocation or opts:
            raise ConfigError("options", f"criterion {crit!r} takes no options, got {sorted(opts) or allocation}")
        shape = tuple(example_input.shape[1:])
        before = (count_parameters(model), dense_flops(model, shape), out_channels(model))
        if crit == "thinet":
            if not batches:
                raise ConfigError("batches", "criterion 'thinet' needs training batches")
            done = _thinet_all(model, ratio, batches, seed)
        else:
            done = _merge_all(model, ratio)
        if not done:
            needs = "Conv2d/Linear chains" if crit == "thinet" else "consecutive Linear layers"
            raise ConfigError("criterion", f"{crit!r} found no layer pair it can prune in this model ({needs})")
        return StructuredResult(
            crit,
            "layer",
            before[0],
            count_parameters(model),
            before[1],
            dense_flops(model, shape),
            before[2],
            out_channels(model),
        )
    if crit == "slimming":
        crit = "bn-scale"
        opts.setdefault("scope", "global")
    try:
        if allocation == "sensitivity":
            if evaluate_fn is None:
                raise ConfigError("options.allocation", "sensitivity allocation needs an evaluation function")
            scan = sensitivity_scan(
                model, example_input, evaluate_fn, scan_ratios, criterion=crit, batches=batches, seed=seed
            )
            target = {
                "channels": {"target_ratio": ratio},
                "flops": {"flops_budget": 1 - ratio},
                "latency": {"latency_budget": 1 - ratio},
            }[budget]
            ratio = allocate_from_sensitivity(scan, model=model, example_input=example_input, **target)
        return prune_channels(model, example_input, ratio, criterion=crit, batches=batches, seed=seed, **opts)
    except TypeError as err:
        raise ConfigError("options", str(err)) from None


__all__ = ["ALIASES", "PROCEDURES", "apply_structured", "canonical_structured_criterion", "structured_criterion_names"]
