"""Channel (filter / neuron) importance criteria for structured pruning, and their Torch-Pruning adapter.

A criterion scores the **output channels** of one Conv/Linear layer; higher = more important.
Unlike the unstructured criteria of :mod:`prunezoo.criteria` (one score per weight), these return
one score per channel. Registered criteria:

- ``l1`` / ``l2``: filter norms Σ|W_j| / ||W_j||_2 (Li et al. 2017, "Pruning Filters for Efficient ConvNets").
- ``random``: seeded uniform scores, the control every comparison must include (Blalock et al. 2020).
- ``fpgm``: Σ_k ||W_j − W_k||_2, the distance to the other filters (He et al. 2019, "Filter Pruning via
  Geometric Median"): a filter close to the geometric median is replaceable by the others.
- ``apoz``: 1 − APoZ, the average percentage of zeros of the post-ReLU output (Hu et al. 2016); needs batches.
- ``taylor``: |mean_{batch,space}(∂L/∂Y ⊙ Y)| on the layer output (after its BatchNorm where one
  follows), L2-normalised per layer (Molchanov et al. 2017, "Pruning CNNs for Resource Efficient
  Inference"); needs labelled batches.
- ``bn-scale``: |γ| of the following BatchNorm (Liu et al. 2017, "Network Slimming").

:class:`ChannelImportance` turns any of them into a ``tp.importance.Importance`` so Torch-Pruning's
DependencyGraph does the coupled removal (conv → BN → next input, residual adds, flatten → linear):
a group's score is the mean of the scores of the coupled layers whose output channels it removes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from prunezoo.errors import ConfigError

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass
class ChannelContext:
    """What a criterion sees for one layer. ``activations``/``gradients`` are the per-batch outputs of
    the layer's *tap* (its following BatchNorm if any, else the layer) and dL/d(those outputs)."""

    name: str
    module: nn.Module
    weight: torch.Tensor
    bn: nn.modules.batchnorm._BatchNorm | None = None
    activations: list[torch.Tensor] | None = None
    gradients: list[torch.Tensor] | None = None
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))


ChannelCriterion = Callable[[ChannelContext], torch.Tensor | None]


@dataclass(frozen=True)
class CriterionInfo:
    fn: ChannelCriterion
    needs: str = "none"  # "none" | "activations" | "gradients"
    # Normaliser applied before *global* ranking so layers of different fan-in compete fairly.
    global_normalizer: str | None = None


CHANNEL_CRITERIA: dict[str, CriterionInfo] = {}


def register_channel_criterion(name: str, *, needs: str = "none", global_normalizer: str | None = None):
    """Register ``fn(ctx) -> Tensor[out_channels]`` (or ``None`` = cannot score this layer)."""
    if needs not in ("none", "activations", "gradients"):
        raise ValueError(f"needs must be none/activations/gradients, got {needs!r}")

    def deco(fn: ChannelCriterion) -> ChannelCriterion:
        if name in CHANNEL_CRITERIA:
            raise ValueError(f"channel criterion {name!r} registered twice")
        CHANNEL_CRITERIA[name] = CriterionInfo(fn, needs, global_normalizer)
        return fn

    return deco


def get_channel_criterion(name: str) -> CriterionInfo:
    try:
        return CHANNEL_CRITERIA[name]
    except KeyError:
        raise ConfigError(
            "criterion", f"unknown channel criterion {name!r}; known: {sorted(CHANNEL_CRITERIA)}"
        ) from None


def _filters(w: torch.Tensor) -> torch.Tensor:
    return w.detach().flatten(1).float()


@register_channel_criterion("l1", global_normalizer="mean")
def l1(ctx: ChannelContext) -> torch.Tensor:
    return _filters(ctx.weight).abs().sum(1)


@register_channel_criterion("l2", global_normalizer="mean")
def l2(ctx: ChannelContext) -> torch.Tensor:
    return _filters(ctx.weight).norm(dim=1)


@register_channel_criterion("random")
def random(ctx: ChannelContext) -> torch.Tensor:
    return torch.rand(ctx.weight.shape[0], generator=ctx.generator)


@register_channel_criterion("fpgm", global_normalizer="mean")
def fpgm(ctx: ChannelContext) -> torch.Tensor:
    # Σ_k ||W_j − W_k|| is the objective the geometric median minimises; the smallest sums mark the
    # filters nearest to it (He et al. 2019 use exactly this surrogate).
    w = _filters(ctx.weight)
    return torch.cdist(w, w).sum(1)


def _channel_view(t: torch.Tensor) -> torch.Tensor:
    """(N, C, *spatial) -> (C, N*spatial)."""
    return t.detach().float().transpose(0, 1).reshape(t.shape[1], -1)


@register_channel_criterion("apoz", needs="activations")
def apoz(ctx: ChannelContext) -> torch.Tensor:
    # relu(y) == 0  <=>  y <= 0: the tap is the pre-ReLU output (BN'd), so this is the post-ReLU APoZ.
    if not ctx.activations:
        raise ConfigError("batches", "criterion 'apoz' needs batches to collect activations")
    zero = torch.cat([_channel_view(a) <= 0 for a in ctx.activations], dim=1).float().mean(1)
    return 1.0 - zero  # low APoZ = important


@register_channel_criterion("taylor", needs="gradients")
def taylor(ctx: ChannelContext) -> torch.Tensor:
    if not ctx.activations or not ctx.gradients:
        raise ConfigError("batches", "criterion 'taylor' needs labelled batches to collect gradients")
    per_batch = [
        (_channel_view(g) * _channel_view(a)).mean(1).abs() for a, g in zip(ctx.activations, ctx.gradients, strict=True)
    ]
    s = torch.stack(per_batch).mean(0)
    return s / s.norm().clamp_min(1e-12)  # per-layer L2 normalisation (Molchanov et al. 2017)


@register_channel_criterion("bn-scale")
def bn_scale(ctx: ChannelContext) -> torch.Tensor | None:
    if ctx.bn is None or ctx.bn.weight is None:
        return None  # no γ to read: the adapter falls back to the other layers of the group
    return ctx.bn.weight.detach().abs().float()


# --------------------------------------------------------------------------------------------------
# Context collection


def following_batchnorm(dg: tp.DependencyGraph, module: nn.Module) -> nn.modules.batchnorm._BatchNorm | None:
    """The BatchNorm fed directly and only by ``module`` in the traced graph, if any."""
    node = dg.module2node.get(module)
    if node is None or len(node.outputs) != 1:
        return None
    nxt = node.outputs[0].module
    return nxt if isinstance(nxt, nn.modules.batchnorm._BatchNorm) else None


def collect_outputs(
    model: nn.Module, taps: dict[str, nn.Module], batches: Iterable, *, gradients: bool, loss_fn: Callable | None = None
) -> tuple[dict[str, list], dict[str, list]]:
    """Run ``batches`` through ``model`` and record each tap module's output (and dL/d output).

    Batches are ``(x, y)`` pairs or bare inputs (no gradients then). Runs in eval mode so BN uses
    its running statistics, the same as the deployed network; parameters' ``.grad`` are left untouched.
    """
    acts: dict[str, list] = {k: [] for k in taps}
    grads: dict[str, list] = {k: [] for k in taps}
    loss_fn = loss_fn or F.cross_entropy

    def hook(name: str):
        def fn(_m, _i, out):
            acts[name].append(out.detach())
            if gradients and out.requires_grad:
                out.register_hook(lambda g: grads[name].append(g.detach()))

        return fn

    handles = [m.register_forward_hook(hook(k)) for k, m in taps.items()]
    modes = [(m, m.training) for m in model.modules()]
    saved_grads = {p: p.grad for p in model.parameters()}
    model.eval()
    try:
        for batch in batches:
            x, y = (batch[0], batch[1]) if isinstance(batch, Sequence) and len(batch) == 2 else (batch, None)
            if gradients:
                if y is None:
                    raise ConfigError("batches", "gradient criteria need (input, target) batches")
                with torch.enable_grad():
                    loss = loss_fn(model(x), y)
                    torch.autograd.backward(loss, inputs=[p for p in model.parameters() if p.requires_grad] or None)
            else:
                with torch.no_grad():
                    model(x)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes:
            m.training = t
        for p, g in saved_grads.items():
            p.grad = g
    return acts, grads


class ChannelImportance(tp.importance.Importance):
    """Adapter: a registered channel criterion as a Torch-Pruning group importance.

    Call :meth:`prepare` with the pruner's DependencyGraph before pruning (finds following BNs and,
    for data criteria, collects activations/gradients on ``batches``). A group's score for channel
    i is the mean over its coupled Conv/Linear layers (those whose *output* channels it removes) of
    their criterion scores; ``normalizer`` ("mean", "max", "sum" or None) rescales it afterwards.
    """

    def __init__(self, criterion: str, *, seed: int = 0, normalizer: str | None = None):
        self.name = criterion
        self.info = get_channel_criterion(criterion)
        self.normalizer = normalizer
        self.generator = torch.Generator().manual_seed(seed)
        self.contexts: dict[nn.Module, ChannelContext] = {}
        self._cache: dict[nn.Module, torch.Tensor | None] = {}

    def prepare(
        self, model: nn.Module, dg: tp.DependencyGraph, batches: Iterable | None = None, loss_fn: Callable | None = None
    ) -> ChannelImportance:
        layers = {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}
        bns = {n: following_batchnorm(dg, m) for n, m in layers.items()}
        acts: dict[str, list] = {}
        grads: dict[str, list] = {}
        if self.info.needs != "none":
            if batches is None:
                raise ConfigError("batches", f"criterion {self.name!r} needs batches")
            taps = {n: bns[n] or m for n, m in layers.items()}
            acts, grads = collect_outputs(
                model, taps, batches, gradients=self.info.needs == "gradients", loss_fn=loss_fn
            )
        self.contexts = {
            m: ChannelContext(n, m, m.weight, bns[n], acts.get(n), grads.get(n), self.generator)
            for n, m in layers.items()
        }
        self._cache.clear()
        return self

    def layer_scores(self, module: nn.Module) -> torch.Tensor | None:
        if module not in self._cache:
            ctx = self.contexts.get(module)
            self._cache[module] = None if ctx is None else self.info.fn(ctx)
        return self._cache[module]

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor | None:
        total: torch.Tensor | None = None
        count: torch.Tensor | None = None
        for i, (dep, idxs) in enumerate(group):
            if dep.handler not in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                continue
            scores = self.layer_scores(dep.target.module)
            root_idxs = group[i].root_idxs
            if scores is None or any(r is None for r in root_idxs):
                continue
            n = len(group[0][1])
            if total is None:
                total, count = torch.zeros(n), torch.zeros(n)
            ri = torch.as_tensor(root_idxs, dtype=torch.long)
            total.scatter_add_(0, ri, scores[list(idxs)].float())
            count.scatter_add_(0, ri, torch.ones(len(ri)))
        if total is None:
            return None
        imp = total / count.clamp_min(1)
        nan = torch.isnan(imp)
        if bool(nan.any()):
            # NaN = lowest score, as in prunezoo.sparsity.topk (Torch-Pruning's argsort would keep NaN
            # channels, and one NaN would turn a global normaliser into NaN for the whole group)
            return _normalize(imp.masked_fill(nan, 0.0), self.normalizer).masked_fill(nan, float("-inf"))
        return _normalize(imp, self.normalizer)


def _normalize(imp: torch.Tensor, how: str | None) -> torch.Tensor:
    if how is None:
        return imp
    denom = {"mean": imp.mean(), "max": imp.max(), "sum": imp.sum()}.get(how)
    if denom is None:
        raise ConfigError("normalizer", f"unknown normalizer {how!r}; known: mean, max, sum, None")
    return imp / denom.clamp_min(1e-12)
