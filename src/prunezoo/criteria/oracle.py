"""Oracle ranking: the true loss change of removing each weight or unit, and how well a criterion
tracks it (the "oracle" of Molchanov et al. 2016/2019, used to measure criterion quality by
Spearman rank correlation; cf. Blalock et al. 2020, "What is the State of Neural Network Pruning?").

ΔL(item) = L(θ with the item zeroed) - L(θ), the mean loss over ``batches``, evaluated on a
float64 copy of the model in eval mode (BatchNorm running statistics, no dropout), so the
caller's model is untouched and tiny ΔL are not lost in float32 rounding. An item is one weight
(``units="weight"``) or one output unit (``units="neuron"``: a row of a Linear weight, an output
channel of a conv weight, i.e. the slice ``weight[i]``; the unit's bias and any following
normalisation are left in place, so this is "cut its incoming weights", not physical removal).
Each item costs one pass over the batches: use ``max_items`` on anything but tiny models.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.criteria.base import Criterion, ScoringContext, get_criterion
from prunezoo.errors import ConfigError
from prunezoo.sparsity.selection import prunable_parameters

UNITS = ("weight", "neuron")


def _select(model: nn.Module, params: Mapping[str, torch.Tensor] | Sequence[str] | None) -> list[str]:
    if params is None:
        return list(prunable_parameters(model))
    names = list(params)
    known = dict(model.named_parameters())
    missing = [n for n in names if n not in known]
    if missing:
        raise ConfigError("params", f"model has no parameter(s) {missing}")
    return names


def _check_units(units: str) -> None:
    if units not in UNITS:
        raise ConfigError("units", f"must be one of {', '.join(UNITS)}, got {units!r}")


@torch.no_grad()
def oracle_scores(
    model: nn.Module,
    batches: Iterable,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    params: Mapping[str, torch.Tensor] | Sequence[str] | None = None,
    units: str = "weight",
    max_items: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``{name: ΔL}`` float64, shaped like the weight (``"weight"``) or ``(out_units,)`` (``"neuron"``).

    With ``max_items`` only a random subset (drawn from ``generator``) of that many items per
    layer is evaluated; the others are NaN. Higher ΔL = more important, like a criterion score.
    """
    _check_units(units)
    if batches is None:
        raise ConfigError("batches", "the oracle needs batches to measure the loss on")
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
        raise ConfigError("max_items", f"must be a positive integer or None, got {max_items!r}")
    names = _select(model, params)
    loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
    generator = generator if generator is not None else torch.Generator().manual_seed(0)

    work = copy.deepcopy(model).double().eval()
    device = next(work.parameters()).device
    data = [(x.to(device).double() if x.is_floating_point() else x.to(device), y.to(device)) for x, y in batches]
    if not data:
        raise ConfigError("batches", "the oracle got an empty batches iterable")
    total = sum(len(y) for _, y in data)

    def loss() -> float:
        # sample-weighted mean, so unequal batch sizes give the loss of the whole set
        return sum(float(loss_fn(work(x), y)) * len(y) for x, y in data) / total

    base = loss()
    wparams = dict(work.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for name in names:
        w = wparams[name]
        view = w.view(-1) if units == "weight" else w.view(w.shape[0], -1)
        n_items = view.shape[0]
        result = torch.full((n_items,), math.nan, dtype=torch.float64)
        if max_items is None or max_items >= n_items:
            items = torch.arange(n_items)
        else:
            items = torch.randperm(n_items, generator=generator)[:max_items].sort().values
        for i in items.tolist():
            saved = view[i].clone()
            view[i] = 0
            result[i] = loss() - base
            view[i] = saved
        out[name] = result.reshape(w.shape) if units == "weight" else result
    return out


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    if a.numel() < 2 or bool((a == a[0]).all()) or bool((b == b[0]).all()):
        return math.nan  # undefined for constant input
    return float(spearmanr(a.numpy(), b.numpy()).statistic)


def criterion_quality(
    model: nn.Module,
    criterion: str | Criterion,
    batches: Iterable,
    *,
    units: str = "weight",
    max_items: int | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    params: Mapping[str, torch.Tensor] | Sequence[str] | None = None,
    seed: int = 0,
    oracle: Mapping[str, torch.Tensor] | None = None,
) -> dict:
    """Spearman correlation between ``criterion`` scores and the oracle ΔL on the sampled items.

    For ``units="neuron"`` a unit's criterion score is the sum of its weights' scores. Returns
    ``{"spearman": pooled over all layers, "layers": {name: ρ}, "items": {name: n}}``; ρ is NaN
    where undefined (fewer than two items, or constant scores). Pass a precomputed ``oracle``
    (from :func:`oracle_scores` with the same ``units``) to score several criteria cheaply.
    """
    _check_units(units)
    batches = list(batches) if batches is not None else None
    names = _select(model, params)
    if oracle is None:
        oracle = oracle_scores(
            model,
            batches,
            loss_fn=loss_fn,
            params=names,
            units=units,
            max_items=max_items,
            generator=torch.Generator().manual_seed(seed),
        )
    all_params = dict(model.named_parameters())
    ctx = ScoringContext(
        model=model,
        params={n: all_params[n] for n in names},
        batches=batches,
        loss_fn=loss_fn,
        generator=torch.Generator().manual_seed(seed),
    )
    scores = get_criterion(criterion)(ctx)
    layers, items, pooled_s, pooled_o = {}, {}, [], []
    for name in names:
        s = scores[name].detach().double().cpu()
        s = s.reshape(-1) if units == "weight" else s.reshape(s.shape[0], -1).sum(1)
        o = oracle[name].reshape(-1).double().cpu()
        ok = ~torch.isnan(o)
        layers[name] = _spearman(s[ok], o[ok])
        items[name] = int(ok.sum())
        pooled_s.append(s[ok])
        pooled_o.append(o[ok])
    overall = _spearman(torch.cat(pooled_s), torch.cat(pooled_o))
    return {"spearman": overall, "layers": layers, "items": items}
