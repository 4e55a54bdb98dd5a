"""Sparse variational dropout (Molchanov, Ashukha & Vetrov, ICML 2017, arXiv:1701.05369), with the
constants of the model-zoo "VD twins" (Schürholt et al. 2022).

Each weight is w ~ N(θ, α θ²) with θ the layer's ``weight`` (same name, so state dicts map) and a
learned ``log_sigma2`` (σ² = α θ², init -10)::

    log α = clamp(log σ² - 2 log(|θ| + 1e-15), -10, 10)   (Linear;  [-8, 8] for Conv2d)

Training forward, local reparameterisation (sample the pre-activations, not the weights)::

    Linear:  μ = x θᵀ + b,        out = μ + sqrt((x²)(α θ²)ᵀ + 1e-15) ⊙ ε,   ε ~ N(0, 1)
    Conv2d:  μ = conv(x, θ) + b,  out = μ + sqrt(conv(x², α θ²) + 1e-15) ⊙ ε

(the reference states the 1e-15 for Linear; conv gets the same so sqrt stays differentiable where
the variance is 0, e.g. on zero inputs after a ReLU). Eval forward is deterministic with the
weights whose log α ≥ ``threshold`` (3) set to 0. KL to the log-uniform prior, per weight::

    -KL ≈ k1 σ(k2 + k3 log α) - ½ log1p(exp(-log α)) - k1,   k1=0.63576, k2=1.87320, k3=1.48695

Loss = CE_mean + λ · Σ KL (:class:`VariationalDropoutLoss`); sparsity ratio = #(log α ≥ 3)/#weights.

Caveat of the "converted model reproduces the original" sanity check: with log σ² = -10 a weight is
already dropped when |θ| < exp((-10 - 3)/2) ≈ 1.5e-3 (log α ≥ 3), so the eval outputs of a fresh
conversion equal the original's exactly only when no weight is that small; otherwise they equal the
original with those (tiny) weights zeroed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import nn

from prunezoo.reparam._common import layers_of, select_layers
from prunezoo.sparsity.masks import MaskSet
from prunezoo.training.callbacks import Callback

K1, K2, K3 = 0.63576, 1.87320, 1.48695
EPS_LOG = 1e-15  # inside log(|θ| + eps)
EPS_VAR = 1e-15  # inside sqrt(var + eps)
LOG_SIGMA2_INIT = -10.0
THRESHOLD = 3.0
LINEAR_CLAMP = (-10.0, 10.0)
CONV_CLAMP = (-8.0, 8.0)


def neg_kl(log_alpha: torch.Tensor) -> torch.Tensor:
    """Molchanov et al.'s approximation of -KL(q(w|θ,α) || log-uniform prior), elementwise."""
    return K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * torch.log1p(torch.exp(-log_alpha)) - K1


class SVDOLayer:
    """Mixin: ``weight`` (θ), ``log_sigma2``, ``threshold`` and the class's ``clamp`` range for log α."""

    weight: nn.Parameter
    log_sigma2: nn.Parameter
    threshold: float
    clamp: tuple[float, float]

    @property
    def log_alpha(self) -> torch.Tensor:
        la = self.log_sigma2 - 2.0 * torch.log(self.weight.abs() + EPS_LOG)
        return torch.clamp(la, *self.clamp)

    def keep_mask(self) -> torch.Tensor:
        """Weights kept at evaluation: log α < threshold."""
        return self.log_alpha < self.threshold

    def kl(self) -> torch.Tensor:
        return -neg_kl(self.log_alpha).sum()

    def _init_vd(self, log_sigma2_init: float, threshold: float) -> None:
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, float(log_sigma2_init)))
        self.threshold = float(threshold)

    def _vd_forward(self, x: torch.Tensor, op) -> torch.Tensor:
        # op(x, weight, bias) is the layer's deterministic computation.
        if not self.training:
            return op(x, self.weight * self.keep_mask(), self.bias)
        mu = op(x, self.weight, self.bias)
        var = op(x * x, self.log_alpha.exp() * self.weight * self.weight, None)
        return mu + torch.sqrt(var + EPS_VAR) * torch.randn_like(mu)


class LinearSVDO(SVDOLayer, nn.Linear):
    """Sparse-VD ``nn.Linear`` (log α clamped to [-10, 10])."""

    clamp = LINEAR_CLAMP

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        log_sigma2_init: float = LOG_SIGMA2_INIT,
        threshold: float = THRESHOLD,
        device=None,
        dtype=None,
    ):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_vd(log_sigma2_init, threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._vd_forward(x, nn.functional.linear)

    @classmethod
    def from_module(
        cls, m: nn.Linear, *, log_sigma2_init: float = LOG_SIGMA2_INIT, threshold: float = THRESHOLD
    ) -> LinearSVDO:
        new = cls(m.in_features, m.out_features, m.bias is not None, device="meta")  # no wasted init
        return _take_params(new, m, log_sigma2_init, threshold)


class Conv2dSVDO(SVDOLayer, nn.Conv2d):
    """Sparse-VD ``nn.Conv2d`` (log α clamped to [-8, 8])."""

    clamp = CONV_CLAMP

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        log_sigma2_init: float = LOG_SIGMA2_INIT,
        threshold: float = THRESHOLD,
        device=None,
        dtype=None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        self._init_vd(log_sigma2_init, threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._vd_forward(x, self._conv_forward)

    @classmethod
    def from_module(
        cls, m: nn.Conv2d, *, log_sigma2_init: float = LOG_SIGMA2_INIT, threshold: float = THRESHOLD
    ) -> Conv2dSVDO:
        new = cls(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
            m.bias is not None,
            m.padding_mode,
            device="meta",
        )
        return _take_params(new, m, log_sigma2_init, threshold)


def _take_params(new: nn.Module, old: nn.Module, log_sigma2_init: float, threshold: float) -> nn.Module:
    new.weight = nn.Parameter(old.weight.detach().clone(), requires_grad=old.weight.requires_grad)
    if old.bias is not None:
        new.bias = nn.Parameter(old.bias.detach().clone(), requires_grad=old.bias.requires_grad)
    new._init_vd(log_sigma2_init, threshold)
    new.train(old.training)
    return new


_TO_VD = {nn.Linear: LinearSVDO, nn.Conv2d: Conv2dSVDO}


def _replace(model: nn.Module, mod_name: str, new: nn.Module) -> nn.Module:
    if not mod_name:  # the model itself is the layer
        return new
    parent, _, child = mod_name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)
    return model


def to_variational(
    model: nn.Module,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    log_sigma2_init: float = LOG_SIGMA2_INIT,
    threshold: float = THRESHOLD,
    inplace: bool = False,
) -> nn.Module:
    """Replace every selected ``nn.Linear``/``nn.Conv2d`` by its SVDO twin, copying weight/bias.

    Works on a deep copy by default (the original stays the reference of the twin comparison);
    ``inplace=True`` swaps the modules inside ``model``. Returns the converted model.
    Other layer types (Conv1d/3d) are not converted; ``include`` naming one is an error.
    """
    out = model if inplace else copy.deepcopy(model)
    for _, (mod_name, module) in select_layers(out, include, exclude, types=(nn.Linear, nn.Conv2d)).items():
        new = _TO_VD[type(module)].from_module(module, log_sigma2_init=log_sigma2_init, threshold=threshold)
        out = _replace(out, mod_name, new)
    return out


def vd_layers(model: nn.Module) -> dict[str, SVDOLayer]:
    """``{weight name: SVDO layer}``."""
    return layers_of(model, SVDOLayer)


@torch.no_grad()
def vd_masks(model: nn.Module, threshold: float | None = None) -> MaskSet:
    """Keep masks log α < threshold (each layer's own threshold by default)."""
    return MaskSet(
        {n: m.log_alpha < (m.threshold if threshold is None else threshold) for n, m in vd_layers(model).items()}
    )


def from_variational(model: nn.Module, *, threshold: float | None = None) -> tuple[nn.Module, MaskSet]:
    """A plain copy of ``model`` (SVDO layers back to ``nn.Linear``/``nn.Conv2d``) with the weights
    whose log α ≥ threshold zeroed, and the keep mask (log α < threshold). ``model`` is untouched."""
    masks = vd_masks(model, threshold)
    out = copy.deepcopy(model)
    for name, module in vd_layers(out).items():
        mod_name = name.rpartition(".")[0]
        base = type(module).__bases__[1]
        if base is nn.Linear:
            plain = nn.Linear(module.in_features, module.out_features, module.bias is not None, device="meta")
        else:
            plain = nn.Conv2d(
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.groups,
                module.bias is not None,
                module.padding_mode,
                device="meta",
            )
        with torch.no_grad():
            plain.weight = nn.Parameter(
                module.weight.detach() * masks[name].to(module.weight.device), requires_grad=module.weight.requires_grad
            )
        if module.bias is not None:
            plain.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=module.bias.requires_grad)
        plain.train(module.training)
        out = _replace(out, mod_name, plain)
    return out, masks


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """Σ over SVDO layers and weights of the approximate KL (a differentiable scalar; 0 if none)."""
    terms = [m.kl() for m in vd_layers(model).values()]
    return torch.stack(terms).sum() if terms else torch.zeros(())


@torch.no_grad()
def sparsity_ratio(model: nn.Module) -> float:
    """#(log α ≥ threshold) / #weights over the SVDO layers (the zoo's ``sparsity_ratio``)."""
    layers = vd_layers(model).values()
    total = sum(m.weight.numel() for m in layers)
    dropped = sum(int((~m.keep_mask()).sum()) for m in layers)
    return dropped / total if total else 0.0


class VariationalDropoutLoss(Callback):
    """Adds λ · Σ KL to the trainer's loss through ``extra_loss``; logs ``sparsity_ratio``/``kl_weight``.

    ``schedule="elbo"``: λ = 1/N (N = ``num_train_samples``), i.e. the per-sample negative ELBO
    CE_mean + KL/N. ``schedule="ramp"``: the model-zoo code's λ(t) = min(ramp_cap, ramp_to · t /
    ramp_length), t = the 0-based epoch (``ramp_unit="epoch"``, constant within an epoch) or optimizer
    step (``"step"``); with the defaults 0 → 0.01 over 25 epochs and on towards 1 after that, as
    min(1, 0.01·epoch/25) does (``ramp_cap=0.01`` holds it at 0.01). At epoch 25 it is ~500× the
    ELBO weight on MNIST (N = 60k): much stronger sparsification than the Bayesian objective.
    λ depends on the step alone, so resuming from a checkpoint needs no callback state.
    """

    def __init__(
        self,
        num_train_samples: int,
        schedule: Literal["elbo", "ramp"] = "elbo",
        *,
        ramp_to: float = 0.01,
        ramp_length: int = 25,
        ramp_unit: Literal["epoch", "step"] = "epoch",
        ramp_cap: float = 1.0,
    ):
        if num_train_samples < 1:
            raise ValueError(f"num_train_samples must be >= 1, got {num_train_samples}")
        if schedule not in ("elbo", "ramp"):
            raise ValueError(f"schedule must be 'elbo' or 'ramp', got {schedule!r}")
        if ramp_unit not in ("epoch", "step"):
            raise ValueError(f"ramp_unit must be 'epoch' or 'step', got {ramp_unit!r}")
        if ramp_length < 1 or ramp_to < 0 or ramp_cap < 0:
            raise ValueError("ramp_length must be >= 1 and ramp_to, ramp_cap >= 0")
        self.num_train_samples = num_train_samples
        self.schedule = schedule
        self.ramp_to, self.ramp_length, self.ramp_unit, self.ramp_cap = ramp_to, ramp_length, ramp_unit, ramp_cap

    def kl_weight(self, step: int, steps_per_epoch: int) -> float:
        """λ at optimizer step ``step`` (0-based)."""
        if self.schedule == "elbo":
            return 1.0 / self.num_train_samples
        t = step // steps_per_epoch if self.ramp_unit == "epoch" else step
        return min(self.ramp_cap, self.ramp_to * t / self.ramp_length)

    def on_train_begin(self, trainer) -> None:
        if not vd_layers(trainer.model):
            raise ValueError("VariationalDropoutLoss: the model has no SVDO layers (call to_variational first)")

    def extra_loss(self, trainer, step: int) -> torch.Tensor | None:
        lam = self.kl_weight(step, trainer.steps_per_epoch)
        return None if lam == 0 else lam * kl_divergence(trainer.model)

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        metrics["sparsity_ratio"] = sparsity_ratio(trainer.model)
        metrics["kl_weight"] = self.kl_weight(max(trainer.step - 1, 0), trainer.steps_per_epoch)


# ``options`` of a study's ``vd`` method: the first go to to_variational, the rest to the loss.
VD_LAYER_OPTIONS = ("log_sigma2_init", "threshold")
VD_LOSS_OPTIONS = ("schedule", "ramp_to", "ramp_length", "ramp_unit", "ramp_cap")


def check_vd_options(options: dict) -> None:
    """Raise ValueError naming the option a study's ``vd`` method could not use (before training)."""
    if unknown := sorted(set(options) - set(VD_LAYER_OPTIONS) - set(VD_LOSS_OPTIONS)):
        raise ValueError(f"unknown vd options {unknown}; known: {[*VD_LAYER_OPTIONS, *VD_LOSS_OPTIONS]}")
    for key in VD_LAYER_OPTIONS:
        if key in options and (isinstance(options[key], bool) or not isinstance(options[key], (int, float))):
            raise ValueError(f"vd option {key!r} must be a number, got {options[key]!r}")
    try:
        VariationalDropoutLoss(1, **{k: v for k, v in options.items() if k in VD_LOSS_OPTIONS})
    except TypeError as err:  # e.g. a string where a number belongs
        raise ValueError(f"bad vd options {options}: {err}") from None


def finetune_variational(
    model: nn.Module,
    num_train_samples: int,
    fit: Callable[[nn.Module, list[Callback]], Any],
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    inplace: bool = False,
    on_bad_options: Callable[[Exception], Exception] | None = None,
    **options: Any,
) -> tuple[nn.Module, MaskSet, Any]:
    """Sparse VD fine-tuning of a trained model: the one recipe of a study's ``vd`` kind and the zoo's VD twins.

    Converts ``model`` (:func:`to_variational` with the layer options of ``options``), calls
    ``fit(vd_model, [kl_callback])`` (the caller's trainer, which may add its own callbacks), and returns
    ``(plain model with dropped weights zeroed, keep masks, fit's return value)``. ``options``:
    VD_LAYER_OPTIONS and VD_LOSS_OPTIONS. A TypeError/ValueError from those options is passed
    through ``on_bad_options`` (to name the config field) before it is raised.
    """
    try:
        vd = to_variational(
            model,
            include=include,
            exclude=exclude,
            inplace=inplace,
            **{k: v for k, v in options.items() if k in VD_LAYER_OPTIONS},
        )
        kl = VariationalDropoutLoss(
            num_train_samples, **{k: v for k, v in options.items() if k not in VD_LAYER_OPTIONS}
        )
    except (TypeError, ValueError) as err:
        if on_bad_options is None:
            raise
        raise on_bad_options(err) from None
    result = fit(vd, [kl])
    plain, masks = from_variational(vd)
    return plain, masks, result
