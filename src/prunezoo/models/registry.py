"""Model registry and :func:`build_model`, the one entry point to every architecture.

A *builder* is a callable ``builder(*, num_classes, input_shape, **options) -> nn.Module`` whose
options are keyword-only parameters with defaults; the registry reads them from its signature, so
unknown options are rejected before anything is built. An *alias* (``lenet-300-100``,
``resnet20``) reuses another model's builder with some options *fixed* (passing a different value
is an error, so ``resnet20`` can never silently become a ResNet-56) and others merely *defaulted*.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from prunezoo.errors import ConfigError

Builder = Callable[..., nn.Module]

# Passed by build_model itself, never listed as user options.
_RESERVED = ("num_classes", "input_shape")


def option_error(option: str, message: str) -> ConfigError:
    """A :class:`ConfigError` for one model option (field ``model.options.<option>``)."""
    return ConfigError(f"model.options.{option}", message)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model (or alias): its builder plus alias-fixed and alias-default options."""

    name: str
    builder: Builder
    description: str = ""
    alias_of: str | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> dict[str, Any]:
        """Every option the user may pass and its effective default (fixed ones included)."""
        params = inspect.signature(self.builder).parameters.values()
        base = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in _RESERVED}
        return base | dict(self.defaults) | dict(self.fixed)

    def build(self, num_classes: int, input_shape: tuple[int, ...], options: Mapping[str, Any]) -> nn.Module:
        known = self.options
        for key, value in options.items():
            if key not in known:
                raise option_error(key, f"unknown option {key!r} for model {self.name!r}; known: {sorted(known)}")
            if key in self.fixed and _normalise(value) != _normalise(self.fixed[key]):
                raise option_error(
                    key, f"model {self.name!r} fixes {key}={self.fixed[key]!r} (use {self.alias_of!r} to choose it)"
                )
        kwargs = dict(self.defaults) | dict(options) | dict(self.fixed)
        return self.builder(num_classes=num_classes, input_shape=input_shape, **kwargs)


def _normalise(value: Any) -> Any:
    # Lists from YAML and tuples from Python code mean the same option value.
    return list(value) if isinstance(value, tuple | list) else value


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, builder: Builder | None = None, *, description: str = "", overwrite: bool = False):
    """Register ``builder`` under ``name``; usable directly or as a decorator.

    The builder is called as ``builder(num_classes=..., input_shape=..., **options)``; every option
    must be keyword-only with a default, and invalid values should raise :func:`option_error`.
    """

    def deco(fn: Builder) -> Builder:
        _check_builder(name, fn)
        if name in MODELS and not overwrite:
            raise ValueError(f"model {name!r} is already registered (pass overwrite=True to replace it)")
        MODELS[name] = ModelSpec(name, fn, description or (inspect.getdoc(fn) or "").split("\n")[0])
        return fn

    return deco(builder) if builder is not None else deco


def register_alias(
    name: str,
    target: str,
    *,
    fixed: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> ModelSpec:
    """Register ``name`` as ``target`` with some options ``fixed`` and others ``defaults``."""
    if target not in MODELS:
        raise ValueError(f"alias {name!r}: unknown target model {target!r}")
    if name in MODELS and not overwrite:
        raise ValueError(f"model {name!r} is already registered (pass overwrite=True to replace it)")
    base = MODELS[target]
    fixed, defaults = dict(base.fixed) | dict(fixed or {}), dict(base.defaults) | dict(defaults or {})
    unknown = (set(fixed) | set(defaults)) - set(base.options)
    if unknown:
        raise ValueError(f"alias {name!r}: {sorted(unknown)} are not options of {target!r}")
    shown = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
    spec = ModelSpec(
        name,
        base.builder,
        description or f"{target} with {shown or 'its defaults'}",
        alias_of=base.alias_of or target,
        fixed=fixed,
        defaults=defaults,
    )
    MODELS[name] = spec
    return spec


def _check_builder(name: str, fn: Builder) -> None:
    params = inspect.signature(fn).parameters
    missing = [r for r in _RESERVED if r not in params]
    if missing:
        raise TypeError(f"model builder {name!r} must accept keyword arguments {missing}")
    for p in params.values():
        if p.name not in _RESERVED and (p.kind is not p.KEYWORD_ONLY or p.default is p.empty):
            raise TypeError(f"model builder {name!r}: option {p.name!r} must be keyword-only with a default")


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError("model", f"unknown model {name!r}; known: {sorted(MODELS)}") from None


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    input_shape: Sequence[int] = (1, 28, 28),
    **options: Any,
) -> nn.Module:
    """Build the registered model ``name`` for inputs of shape ``(N, *input_shape)``.

    ``input_shape`` excludes the batch dimension: ``(1, 28, 28)`` for MNIST, ``(3, 32, 32)`` for
    CIFAR, ``(1, 8, 8)`` for sklearn digits, ``(1, 40)`` for MNIST-1D, ``(100,)`` for GMM data.
    Raises :class:`~prunezoo.errors.ConfigError` (a ``ValueError``) naming the unknown model,
    the unknown or invalid option, or an input shape the architecture cannot take.
    """
    spec = get_model_spec(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError("num_classes", f"must be a positive integer, got {num_classes!r}")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ConfigError("input_shape", f"must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or min(shape) < 1 or math.prod(shape) < 1:
        raise ConfigError("input_shape", f"must be a non-empty sequence of positive integers, got {input_shape!r}")
    return spec.build(num_classes, shape, options)
