"""Physical channel pruning through Torch-Pruning, sensitivity scans and sensitivity-based allocation.

``prune_channels`` removes output channels of Conv/Linear layers *in place*: Torch-Pruning's
DependencyGraph (Fang et al. 2023, "DepGraph") propagates each removal to the coupled layers
(following BN, next layer's input, every layer on a residual sum, flatten → linear).
Per-layer rates from sensitivity scans follow Li et al. 2017 ("Pruning Filters for Efficient
ConvNets", §4.2: prune each layer alone, keep sensitive layers dense).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.flops import count_parameters, dense_flops
from prunezoo.structured.deploy import deploy
from prunezoo.structured.importance import PRUNABLE, ChannelImportance, get_channel_criterion
from prunezoo.structured.latency import compare_latency

SCOPES = ("layer", "global")


@dataclass
class StructuredResult:
    """Outcome of one :func:`prune_channels` call. ``removed``: root layer -> removed channel indices
    (Torch-Pruning's history; coupled layers lost the same indices)."""

    criterion: str
    scope: str
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    channels_before: dict[str, int]
    channels_after: dict[str, int]
    removed: dict[str, list[int]] = field(default_factory=dict)

    @property
    def compression(self) -> float:
        return self.params_before / max(self.params_after, 1)

    @property
    def speedup(self) -> float:
        """Theoretical speed-up, dense FLOPs before / after."""
        return self.flops_before / max(self.flops_after, 1)

    def to_dict(self) -> dict:
        return asdict(self) | {"compression": self.compression, "speedup": self.speedup}


def out_channels(model: nn.Module) -> dict[str, int]:
    """Output channels / features of every Conv/Linear layer, by module name."""
    return {n: int(m.weight.shape[0]) for n, m in model.named_modules() if isinstance(m, PRUNABLE)}


def default_ignored(model: nn.Module) -> list[str]:
    """The final classifier: the last Linear (else the last Conv) in module order."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = [n for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    return linears[-1:] or convs[-1:]


def _module(model: nn.Module, name: str, field_: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ConfigError(field_, f"model has no layer {name!r}") from None


def _check_ratio(r: float, field_: str) -> float:
    if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 <= float(r) < 1.0:
        raise ConfigError(field_, f"pruning ratio must be in [0, 1), got {r!r}")
    return float(r)


def prune_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float | Mapping[str, float],
    *,
    criterion: str = "l1",
    scope: str = "layer",
    batches: Iterable | None = None,
    ignored_layers: Sequence[str | nn.Module] | None = None,
    seed: int = 0,
    loss_fn: Callable | None = None,
    max_layer_ratio: float = 0.95,
    round_to: int | None = None,
) -> StructuredResult:
    """Remove the least important output channels of every Conv/Linear layer, in place.

    ``ratio``: fraction of channels removed in every group (float) or per named layer (dict; the
    others are kept). ``scope="layer"`` ranks within each coupled group (Li et al. 2017);
    ``"global"`` ranks all groups together (network slimming; the criterion's global normaliser
    applies) with at most ``max_layer_ratio`` of any group removed so no layer vanishes.
    ``ignored_layers`` (names or modules; default the final classifier) keep their output channels.
    ``batches`` feed data criteria (apoz, taylor): ``(x, y)`` pairs. ``round_to``: keep channel
    counts multiples of it (e.g. 8: CPU SIMD blocks; 6 of 8 channels cost as much as 8).
    """
    info = get_channel_criterion(criterion)
    if scope not in SCOPES:
        raise ConfigError("scope", f"must be one of {list(SCOPES)}, got {scope!r}")
    if isinstance(ratio, Mapping):
        ratio_dict = {_module(model, k, "ratio"): _check_ratio(v, f"ratio.{k}") for k, v in ratio.items()}
        base = 0.0
    else:
        ratio_dict, base = {}, _check_ratio(ratio, "ratio")
    ignored = [
        _module(model, x, "ignored_layers") if isinstance(x, str) else x
        for x in (default_ignored(model) if ignored_layers is None else ignored_layers)
    ]
    input_shape = tuple(example_input.shape[1:])
    before = (count_parameters(model), dense_flops(model, input_shape), out_channels(model))

    imp = ChannelImportance(criterion, seed=seed, normalizer=info.global_normalizer if scope == "global" else None)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # tracing runs a forward: keep BN running statistics untouched
    try:
        pruner = tp.pruner.BasePruner(
            model,
            example_input,
            importance=imp,
            global_pruning=scope == "global",
            pruning_ratio=base,
            pruning_ratio_dict=ratio_dict or None,
            ignored_layers=ignored,
            max_pruning_ratio=max_layer_ratio,
            round_to=round_to,
        )
        imp.prepare(model, pruner.DG, batches, loss_fn)
        pruner.step()
    finally:
        for m, t in modes:
            m.training = t
    removed = {name: [int(i) for i in idxs] for name, is_out, idxs in pruner.pruning_history() if is_out}
    return StructuredResult(
        criterion,
        scope,
        before[0],
        count_parameters(model),
        before[1],
        dense_flops(model, input_shape),
        before[2],
        out_channels(model),
        removed,
    )


class SensitivityScan(dict):
    """``{layer: {ratio: metric}}`` plus ``flops[layer][ratio]`` (FLOPs after pruning that layer
    alone) and ``dense_flops``/``dense_metric``, which :func:`allocate_from_sensitivity` uses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.flops: dict[str, dict[float, int]] = {}
        self.channels: dict[str, int] = {}
        self.dense_flops = 0
        self.dense_metric = float("nan")


def sensitivity_scan(
    model: nn.Module,
    example_input: torch.Tensor,
    evaluate_fn: Callable[[nn.Module], float],
    ratios: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    *,
    criterion: str = "l1",
    layers: Sequence[str] | None = None,
    batches: Iterable | None = None,
    ignored_layers: Sequence[str] | None = None,
    seed: int = 0,
) -> SensitivityScan:
    """Prune each layer alone at each ratio on a deep copy and record ``evaluate_fn(pruned)``.

    ``layers`` defaults to every Conv/Linear except the ignored ones. Layers coupled by a residual
    sum are one group in Torch-Pruning, so scanning any of them prunes them all.
    """
    ignored = list(default_ignored(model) if ignored_layers is None else ignored_layers)
    names = list(layers) if layers is not None else [n for n in out_channels(model) if n not in ignored]
    shape = tuple(example_input.shape[1:])
    scan = SensitivityScan()
    scan.dense_flops = dense_flops(model, shape)
    scan.dense_metric = float(evaluate_fn(model))
    scan.channels = {n: c for n, c in out_channels(model).items() if n in names}
    batch_list = list(batches) if batches is not None else None
    for name in names:
        scan[name], scan.flops[name] = {}, {}
        for r in ratios:
            pruned = copy.deepcopy(model)
            res = prune_channels(
                pruned,
                example_input,
                {name: r},
                criterion=criterion,
                batches=batch_list,
                ignored_layers=ignored,
                seed=seed,
            )
            scan[name][float(r)] = float(evaluate_fn(pruned))
            scan.flops[name][float(r)] = res.flops_after
    return scan


def allocate_from_sensitivity(
    scan: SensitivityScan,
    *,
    flops_budget: float | None = None,
    target_ratio: float | None = None,
    latency_budget: float | None = None,
    model: nn.Module | None = None,
    example_input: torch.Tensor | None = None,
    higher_is_better: bool = True,
    latency_input: torch.Tensor | None = None,
    latency_repeats: int = 10,
    latency_fraction_fn: Callable[[nn.Module], float] | None = None,
) -> dict[str, float]:
    """Greedy per-layer ratios: repeatedly raise the ratio of the layer whose next scanned ratio
    hurts the metric least, until the target is met.

    ``flops_budget``: FLOPs to keep, a fraction of dense (≤ 1) or an absolute count (> 1).
    ``target_ratio``: fraction of the scanned layers' channels to remove (channel-weighted).
    FLOPs are first estimated additively from the scan's single-layer FLOPs (an optimistic
    estimate: pruning a layer's input and output saves less than the sum); once the estimate meets
    the budget, the real FLOPs are measured on a pruned copy of ``model`` (needed then) until met.
    ``latency_budget``: fraction of the dense model's measured CPU latency to keep. FLOPs serve as
    the optimistic proxy until they meet it, then the deployed (BN-folded, channels-last) pruned copy
    is timed against the dense one on ``latency_input`` (default ``example_input``), one thread,
    paired thread-CPU-time ratio, until met. ``latency_fraction_fn(pruned) -> pruned/dense latency``
    replaces that timing (e.g. a device-specific latency model or table).
    """
    if sum(b is not None for b in (flops_budget, target_ratio, latency_budget)) != 1:
        raise ConfigError("allocation", "give exactly one of flops_budget, target_ratio and latency_budget")
    if latency_budget is not None:
        if not 0 < latency_budget <= 1:
            raise ConfigError("allocation.latency_budget", f"must be in (0, 1], got {latency_budget}")
        if model is None or example_input is None:
            raise ConfigError("allocation", "a latency budget needs model and example_input to time it")
        timing_input = example_input if latency_input is None else latency_input
        dense_deployed = deploy(model)
    grid = {n: sorted(r) for n, r in scan.items()}
    alloc = dict.fromkeys(grid, 0.0)
    sign = 1.0 if higher_is_better else -1.0
    if flops_budget is not None or latency_budget is not None:
        budget = (
            latency_budget * scan.dense_flops
            if latency_budget is not None
            else flops_budget * scan.dense_flops
            if flops_budget <= 1
            else flops_budget
        )
        if model is None or example_input is None:
            raise ConfigError("allocation", "a FLOPs budget needs model and example_input to verify it")

        def estimate() -> float:
            return scan.dense_flops - sum(scan.dense_flops - scan.flops[n][r] for n, r in alloc.items() if r > 0)

        def measured() -> int:
            pruned = copy.deepcopy(model)
            return prune_channels(pruned, example_input, {n: r for n, r in alloc.items() if r > 0}).flops_after

        def latency_fraction() -> float:
            pruned = copy.deepcopy(model)
            prune_channels(pruned, example_input, {n: r for n, r in alloc.items() if r > 0})
            if latency_fraction_fn is not None:
                return float(latency_fraction_fn(pruned))
            t = compare_latency(dense_deployed, deploy(pruned), timing_input, repeats=latency_repeats)
            return 1.0 / t["cpu_speedup"]

        def met() -> bool:
            if estimate() > budget or measured() > budget:
                return False
            return latency_budget is None or latency_fraction() <= latency_budget
    else:
        total = sum(scan.channels.values())

        def met() -> bool:
            return sum(alloc[n] * scan.channels[n] for n in alloc) >= target_ratio * total

    while not met():
        steps = [(sign * scan[n][nxt[0]], n, nxt[0]) for n in grid if (nxt := [r for r in grid[n] if r > alloc[n]])]
        if not steps:
            raise ConfigError("allocation", "target not reachable with the scanned ratios")
        _, name, r = max(steps)
        alloc[name] = r
    return {n: r for n, r in alloc.items() if r > 0}


def _zero_outputs(module: nn.Module, handler, idxs: Sequence[int]) -> torch.Tensor | None:
    """Which of ``idxs`` output channels of ``module`` are identically zero (None: not an output layer)."""
    idx = torch.as_tensor(list(idxs), dtype=torch.long)
    if handler in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
        w = module.weight.detach()[idx].flatten(1)
        zero = (w == 0).all(1)
        return zero & (module.bias.detach()[idx] == 0) if module.bias is not None else zero
    if handler is tp.prune_batchnorm_out_channels:
        if not module.affine:
            return torch.zeros(len(idx), dtype=torch.bool)  # normalises a zero input to -μ/σ, not zero
        return (module.weight.detach()[idx] == 0) & (module.bias.detach()[idx] == 0)
    return None


@torch.no_grad()
def compact_zero_channels(
    model: nn.Module, example_input: torch.Tensor, *, ignored_layers: Sequence[str | nn.Module] | None = None
) -> StructuredResult:
    """Physically remove every output channel a *structured-zero* masked model has zeroed, in place.

    A channel goes when it is zero in every layer Torch-Pruning couples to it: the Conv/Linear row
    (and bias) and, where one follows, the BatchNorm's γ and β — then it outputs exactly 0 and the
    compact model computes what the masked one did. Channels zero in only some coupled layers (one
    side of a residual sum) stay. The result's ``removed`` maps each group's root layer to the indices.
    """
    ignored = [
        _module(model, x, "ignored_layers") if isinstance(x, str) else x
        for x in (default_ignored(model) if ignored_layers is None else ignored_layers)
    ]
    input_shape = tuple(example_input.shape[1:])
    before = (count_parameters(model), dense_flops(model, input_shape), out_channels(model))
    names = {m: n for n, m in model.named_modules()}
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():  # Torch-Pruning traces through autograd
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input[:1])
        plan = []
        for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=PRUNABLE):
            n = len(group[0][1])
            zero = torch.ones(n, dtype=torch.bool)
            for i, (dep, idxs) in enumerate(group):
                z = _zero_outputs(dep.target.module, dep.handler, idxs)
                root = group[i].root_idxs
                if z is None or any(r is None for r in root):
                    continue
                keep = torch.zeros(n, dtype=torch.bool)
                keep[torch.as_tensor(root, dtype=torch.long)[~z]] = True
                zero &= ~keep
            idx = zero.nonzero().flatten().tolist()
            idx = idx[1:] if len(idx) == n else idx  # an all-zero layer keeps one (zero) channel
            if idx:
                plan.append((group[0][0].target.module, group[0][0].handler, idx))
        for module, handler, idx in plan:
            dg.get_pruning_group(module, handler, idx).prune()
    finally:
        for m, t in modes:
            m.training = t
    removed = {names[m]: idx for m, _, idx in plan}
    return StructuredResult(
        "zero",
        "layer",
        before[0],
        count_parameters(model),
        before[1],
        dense_flops(model, input_shape),
        before[2],
        out_channels(model),
        removed,
    )
