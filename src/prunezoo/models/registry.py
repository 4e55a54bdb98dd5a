"""Model registry and :func:`build_model`, the one entry point to every architecture.

A *builder* is a callable ``builder(*, num_classes, input_shape, **options) -> nn.Module`` whose
options are keyword-only parameters with defaults; the registry reads them from its signature, so
unknown options are rejected before anything is built. An *alias* (``lenet-300-100``,
``resnet20``) reuses another model's builder with some options *fixed* (passing a different value
is an error, so ``resnet20`` can never silently become a ResNet-56) and others merely *defaulted*.

Outside the registry, a model name resolves (:func:`get_model_spec`), in this order, as a registered
*prefix* (``timm:resnet18``: :func:`register_model_prefix`), an entry point of the group
``prunezoo.models`` (an installed package's plug-in), or an import path ``module:attr`` whose
attribute is an ``nn.Module`` subclass or a callable returning one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.utils.plugins import entry_point, is_import_path, load_import_path, track_registry

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
        open_ended = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.builder).parameters.values())
        for key, value in options.items():
            if key not in known and not open_ended:
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


# ``prefix`` -> resolver: "timm:resnet18" is ``MODEL_PREFIXES["timm"]("resnet18")``.
MODEL_PREFIXES: dict[str, Callable[[str], ModelSpec]] = {}
ENTRY_POINT_GROUP = "prunezoo.models"


def register_model_prefix(prefix: str, resolver: Callable[[str], ModelSpec]) -> None:
    """Resolve every model name ``"<prefix>:<rest>"`` with ``resolver(rest)``.

    The resolver returns a :class:`ModelSpec` whose builder takes ``(num_classes=, input_shape=,
    **options)`` (keyword-only options, or ``**options`` to accept any) and raises
    :class:`~prunezoo.errors.ConfigError` for names or options it cannot build.
    """
    if not prefix.isidentifier():
        raise ValueError(f"model prefix {prefix!r} must be an identifier")
    MODEL_PREFIXES[prefix] = resolver


def spec_from_callable(name: str, obj: Any, field: str = "model.name") -> ModelSpec:
    """A :class:`ModelSpec` for a plug-in ``obj``: an ``nn.Module`` subclass or a callable returning one.

    ``obj`` receives those of ``num_classes`` (int) and ``input_shape`` (a tuple) it accepts, plus
    the model options; its other parameters are the options (with their defaults); ``**kwargs``
    accepts any option. A result that is not an ``nn.Module`` raises :class:`ConfigError` (``field``).
    """
    if isinstance(obj, ModelSpec):
        return obj
    if not callable(obj):
        raise ConfigError(field, f"{name!r} is a {type(obj).__name__}, not a model class or a callable")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        raise ConfigError(field, f"{name!r}: cannot read the signature of {obj!r}") from None
    kw = inspect.Parameter.KEYWORD_ONLY
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if required := [p.name for p in params.values() if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]:
        raise ConfigError(field, f"{name!r} has positional-only parameters {required}: they cannot be passed")
    takes = [r for r in _RESERVED if r in params or open_ended]
    options = [
        p.replace(kind=kw, annotation=p.empty)
        for p in params.values()
        if p.name not in _RESERVED and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]

    def builder(*, num_classes: int, input_shape: tuple[int, ...], **options: Any) -> nn.Module:
        given = {"num_classes": num_classes, "input_shape": tuple(input_shape)}
        model = obj(**{k: given[k] for k in takes}, **options)
        if not isinstance(model, nn.Module):
            raise ConfigError(field, f"{name!r} returned a {type(model).__name__}, not a torch.nn.Module")
        return model

    extra = [inspect.Parameter("options", inspect.Parameter.VAR_KEYWORD)] if open_ended else []
    reserved = [inspect.Parameter(r, kw) for r in _RESERVED]
    builder.__signature__ = inspect.Signature([*reserved, *options, *extra])  # type: ignore[attr-defined]
    description = (inspect.getdoc(obj) or "").split("\n")[0]
    return ModelSpec(name, builder, description)


def get_model_spec(name: str) -> ModelSpec:
    """The model ``name``: registered, else a prefix (``timm:resnet18``), an entry point of the group
    ``prunezoo.models``, or an import path ``module:attr``; :class:`ConfigError` (field ``model``) if
    none resolves, (field ``model.name``) with the import error of a plug-in that does not load."""
    if name in MODELS:
        return MODELS[name]
    prefix, sep, rest = name.partition(":")
    if sep and prefix in MODEL_PREFIXES:
        return MODEL_PREFIXES[prefix](rest)
    if not sep and (obj := entry_point(ENTRY_POINT_GROUP, name, "model.name")) is not None:
        return spec_from_callable(name, obj)
    if is_import_path(name):
        return spec_from_callable(name, load_import_path(name, "model.name"))
    raise ConfigError(
        "model",
        f"unknown model {name!r}; known: {sorted(MODELS)}, a prefix {sorted(f'{p}:' for p in MODEL_PREFIXES)} "
        "or an import path 'module:attr'",
    )


def _user_models() -> dict[str, Any]:
    # What a worker process would not know by importing prunezoo: registered by user code at run time.
    from prunezoo import names

    user: dict[str, Any] = {n: s for n, s in MODELS.items() if n not in names.MODELS}
    user |= {f"{p}:": r for p, r in MODEL_PREFIXES.items() if not getattr(r, "__module__", "").startswith("prunezoo.")}
    return user


def _restore_model(name: str, value: Any) -> None:
    if name.endswith(":"):
        MODEL_PREFIXES.setdefault(name[:-1], value)
    else:
        MODELS.setdefault(name, value)


track_registry("models", _user_models, _restore_model)


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
