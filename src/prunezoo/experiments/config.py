"""Declarative study configuration (YAML → pydantic). Errors name the field path.

The canonical hash of a config (OpenLTH-style) hashes only non-default values, so adding a new
option with a no-op default leaves existing run directories' names unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from prunezoo.errors import ConfigError
from prunezoo.schedules.iterative import ResetMode
from prunezoo.training.config import TrainingConfig

_STRICT = ConfigDict(extra="forbid")


class DataConfig(BaseModel):
    model_config = _STRICT
    name: str = "mnist5k"
    root: str | None = None
    download: bool = False
    val_fraction: float = Field(0.0, ge=0, lt=1)
    noise_rate: float = Field(0.0, ge=0, le=1)
    noise_kind: str = "uniform-resample"
    noise_seed: int = 0
    noisy_test: bool = Field(False, description="also evaluate on test labels corrupted like the training "
                                                "labels (same rate/kind, seed noise_seed + 1): rows get test_noisy_acc")
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _noisy_test(self) -> DataConfig:
        if self.noisy_test and self.noise_rate <= 0:
            raise ValueError("noisy_test needs noise_rate > 0 (it corrupts the test labels at that rate)")
        return self

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from prunezoo.data import DATASETS

        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; known: {sorted(DATASETS)}")
        return v

    @field_validator("noise_kind")
    @classmethod
    def _noise(cls, v: str) -> str:
        from prunezoo.data import NOISE_KINDS

        if v not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {v!r}; known: {sorted(NOISE_KINDS)}")
        return v


class ModelConfig(BaseModel):
    model_config = _STRICT
    name: str = "lenet-300-100"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from prunezoo.models import MODELS

        if v not in MODELS:
            raise ValueError(f"unknown model {v!r}; known: {sorted(MODELS)}")
        return v


class BranchConfig(BaseModel):
    """An ablation branch of an IMP method, run as its own job from the pruned levels.

    kinds: ``random-reinit`` (same mask, fresh random init), ``random-mask`` (random mask with the
    same per-layer densities, rewound to init), ``rewind`` (same mask, weights from step
    ``rewind_step`` of the dense trajectory), ``finetune`` (same mask, fine-tune the previous
    level's trained weights instead of rewinding).
    """

    model_config = _STRICT
    name: str
    kind: Literal["random-reinit", "random-mask", "rewind", "finetune"]
    levels: list[int] = Field(default_factory=list, description="IMP levels to branch from; empty = all")
    rewind_step: int = Field(0, ge=0)


SPARSITY_KINDS = ("oneshot", "at-init", "gmp", "dst", "acdc", "edge-popup", "structured", "sr-ste")
METHOD_KINDS = (*SPARSITY_KINDS, "imp", "str", "vd")


# Method kinds whose masks come from prune() (N:M-constrained selection) or SR-STE.
PATTERN_KINDS = ("oneshot", "at-init", "gmp", "imp", "sr-ste")


class StartConfig(BaseModel):
    """Sparse-to-sparse start: a random ER mask every later mask must stay inside."""

    model_config = _STRICT
    density: float = Field(gt=0, le=1)
    scheme: str = "balanced"
    flow_preservation: bool = False


class MethodConfig(BaseModel):
    """One pruning method of a study. ``kind`` picks how it trains; criterion/scheme are pluggable.

    kinds: ``oneshot`` (prune the trained dense model, fine-tune), ``at-init`` (prune at
    initialisation, optionally in ``rounds``, then train), ``gmp``, ``imp``, ``dst`` (RigL/SET:
    ``options.grow``), ``acdc``, ``str``, ``edge-popup``, ``vd`` (sparse variational dropout on the
    trained dense model), ``structured`` (remove a fraction ``sparsities`` of the channels of the
    trained dense model with a channel ``criterion`` — l1, l2, fpgm, apoz, taylor, bn-scale, random,
    slimming, thinet, merge, or an alias such as l1-filter — then fine-tune the physically smaller
    model). ``options`` go to the method's constructor.
    """

    model_config = _STRICT
    name: str
    kind: Literal["oneshot", "at-init", "imp", "gmp", "dst", "acdc", "str", "edge-popup", "vd", "structured",
                  "sr-ste"]
    criterion: str = "magnitude"
    scheme: str = "global"
    sparsities: list[float] = Field(default_factory=list, description="oneshot/gmp target sparsities")
    levels: int = Field(0, ge=0, description="imp: number of pruning levels")
    fraction: float = Field(0.2, gt=0, lt=1, description="imp: fraction of remaining weights pruned per level")
    reset: ResetMode = ResetMode.REWIND_INIT
    rewind_step: int = Field(0, ge=0)
    include: list[str] | None = None
    exclude: list[str] | None = None
    keep_dense: list[str] = Field(default_factory=list)
    overrides: dict[str, float] = Field(default_factory=dict)
    scheme_options: dict[str, Any] = Field(
        default_factory=dict, description="allocator options, e.g. redistribute: true, erk_variant: clamp"
    )
    gmp_frequency: int = Field(10, ge=1)
    batches: int = Field(1, ge=1, description="training batches given to data-dependent criteria (SNIP, OBD...)")
    rounds: int = Field(1, ge=1, description="at-init: iterative pruning rounds (SynFlow uses 100)")
    start: StartConfig | None = Field(None, description="sparse-to-sparse: start from a random ER mask")
    options: dict[str, Any] = Field(default_factory=dict, description="method-specific constructor options")
    branches: list[BranchConfig] = Field(default_factory=list, description="imp: ablation branches")
    sparse_export: bool = Field(False, description="also export each result to sparse kernels (prunezoo.deploy) "
                                                   "and record its measured latency_ms vs dense")
    pattern: str | None = Field(None, description="N:M sparsity ('2:4', '1:4', '4:8'): exactly n nonzeros in "
                                                  "every m consecutive weights; kinds " + ", ".join(PATTERN_KINDS))

    @model_validator(mode="before")
    @classmethod
    def _pattern_sparsity(cls, data: Any) -> Any:
        # A pattern fixes the sparsity (1 - n/m): fill 'sparsities' in when it is left out.
        if isinstance(data, dict) and isinstance(data.get("pattern"), str) and not data.get("sparsities"):
            from prunezoo.sparsity.nm import pattern_density

            try:
                data = {**data, "sparsities": [1.0 - pattern_density(data["pattern"])]}
            except ConfigError:
                pass  # reported by the field validator below
        return data

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from prunezoo.sparsity.nm import parse_pattern

        try:
            n, m = parse_pattern(v)
        except ConfigError as err:
            raise ValueError(str(err).removeprefix("pattern: ")) from None
        return f"{n}:{m}"

    @field_validator("sparsities")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        bad = [s for s in v if not 0 <= s < 1]
        if bad:
            raise ValueError(f"sparsities must be in [0, 1) (density in (0, 1]), got {bad}")
        return v


    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v: str) -> str:
        from prunezoo.allocation import SCHEME_NAMES

        if v not in SCHEME_NAMES:
            raise ValueError(f"unknown scheme {v!r}; known: {sorted(SCHEME_NAMES)}")
        return v

    @field_validator("criterion")
    @classmethod
    def _criterion(cls, v: str, info: ValidationInfo) -> str:
        # kind is declared before criterion, so it is validated and visible here
        if info.data.get("kind") == "structured":
            from prunezoo.structured import structured_criterion_names

            known = structured_criterion_names()  # channel criteria, slimming/thinet/merge, aliases
        else:
            from prunezoo.criteria import CRITERIA as known
            from prunezoo.criteria import TRAINING_CRITERIA

            if v in TRAINING_CRITERIA:  # scores come from the training trajectory (movement)
                if info.data.get("kind") not in TRAINING_CRITERIA[v]:
                    raise ValueError(f"criterion {v!r} needs training-time scores: use it with kind "
                                     f"{' or '.join(map(repr, TRAINING_CRITERIA[v]))}")
                return v
        if v not in known:
            raise ValueError(f"unknown criterion {v!r} for kind {info.data.get('kind')!r}; known: {sorted(known)}")
        return v

    @model_validator(mode="after")
    def _kind(self) -> MethodConfig:
        if self.kind in SPARSITY_KINDS and not self.sparsities:
            raise ValueError(f"method kind {self.kind!r} needs at least one value in 'sparsities'")
        if self.kind == "imp" and self.levels < 1:
            raise ValueError("method kind 'imp' needs levels >= 1")
        if self.kind == "oneshot" and self.criterion == "obs":
            from prunezoo.criteria.obs import OBS_STUDY_OPTIONS

            if unknown := sorted(set(self.options) - set(OBS_STUDY_OPTIONS)):
                raise ValueError(f"unknown options {unknown} for oneshot 'obs'; known: {list(OBS_STUDY_OPTIONS)}")
        if self.kind == "gmp" and (unknown := sorted(set(self.options) - {"from_dense"})):
            raise ValueError(f"unknown options {unknown} for kind 'gmp'; known: ['from_dense']")
        if "score_mode" in self.options:  # a bad mode, or a criterion without one, fails here and not in a job
            from prunezoo.criteria import criterion_with_mode

            try:
                criterion_with_mode(self.criterion, self.options["score_mode"])
            except ConfigError as err:
                raise ValueError(str(err)) from None
        if self.start is not None and self.kind in ("vd", "structured"):  # would be silently ignored
            raise ValueError(f"method kind {self.kind!r} does not take a sparse-to-sparse 'start' mask")
        if self.kind == "vd":
            from prunezoo.reparam.variational_dropout import check_vd_options

            check_vd_options(self.options)
        if self.branches and self.kind != "imp":
            raise ValueError("branches are only defined for method kind 'imp'")
        self._check_pattern()
        if self.sparse_export and self.kind == "structured":
            raise ValueError("sparse_export: structured runs are compacted and timed already (latency_ms)")
        for b in self.branches:
            bad = [lv for lv in b.levels if not 1 <= lv <= self.levels]
            if bad:
                raise ValueError(f"branch {b.name!r}: levels {bad} outside 1..{self.levels}")
        return self

    def _check_pattern(self) -> None:
        if self.pattern is None:
            if self.kind == "sr-ste":
                raise ValueError("method kind 'sr-ste' needs a 'pattern' such as '2:4'")
            return
        if self.kind not in PATTERN_KINDS:  # their masks come from thresholds, grow/drop or channels
            raise ValueError(f"pattern: N:M is not supported for method kind {self.kind!r}; "
                             f"kinds that take it: {', '.join(PATTERN_KINDS)}")
        if self.start is not None:
            raise ValueError("pattern: a random sparse-to-sparse 'start' mask cannot hold an N:M pattern")
        n, m = (int(v) for v in self.pattern.split(":"))
        target = 1.0 - n / m
        if self.kind == "imp":
            need = math.ceil(math.log(n / m) / math.log(1.0 - self.fraction) - 1e-9)
            if self.levels != need:
                raise ValueError(f"pattern {self.pattern}: imp with fraction {self.fraction} reaches exactly "
                                 f"{self.pattern} at level {need}; set levels: {need}")
            if any(b.kind == "random-mask" for b in self.branches):
                raise ValueError(f"pattern {self.pattern}: a 'random-mask' branch would break the pattern")
        elif bad := [s for s in self.sparsities if abs(s - target) > 1e-9]:
            raise ValueError(f"pattern {self.pattern} fixes the sparsity at {target:g}; sparsities {bad} "
                             "cannot hold it (leave 'sparsities' out to use the pattern's)")


def _default_methods() -> list[MethodConfig]:
    grid = [0.5, 0.8, 0.9, 0.95, 0.98]
    return [
        MethodConfig(name="global-magnitude", kind="oneshot", criterion="magnitude", sparsities=grid),
        MethodConfig(name="random", kind="oneshot", criterion="random", scheme="uniform", sparsities=grid),
        MethodConfig(name="random-erk", kind="oneshot", criterion="random", scheme="erk", sparsities=grid),
        MethodConfig(name="gmp", kind="gmp", criterion="magnitude", sparsities=[0.9, 0.98]),
        MethodConfig(name="imp", kind="imp", criterion="magnitude", levels=12, reset=ResetMode.REWIND_INIT),
    ]


class StudyConfig(BaseModel):
    """A pruning study: one dataset and model, a dense run, then every method on top of it."""

    model_config = _STRICT
    name: str = "default"
    seed: int = Field(0, ge=0, description="first replicate's seed (init, data order, masks)")
    replicates: int = Field(1, ge=1, description="seeds seed, seed+1, ..., seed+replicates-1")
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict, description="axes: dotted field path -> values; runs their cartesian product"
    )
    dataset: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=8, batch_size=64, lr=0.05, lr_schedule="cosine")
    )
    finetune: TrainingConfig = Field(
        default_factory=lambda: TrainingConfig(epochs=3, batch_size=64, lr=0.01, lr_schedule="cosine")
    )
    methods: list[MethodConfig] = Field(default_factory=_default_methods)

    @model_validator(mode="after")
    def _unique(self) -> StudyConfig:
        names = [m.name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"method names must be unique, repeated: {dup}")
        for axis, values in self.sweep.items():
            if axis.split(".")[0] in ("sweep", "replicates", "name", "methods"):
                raise ValueError(f"sweep axis {axis!r} cannot be swept")
            if not values:
                raise ValueError(f"sweep axis {axis!r} has no values")
        return self

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.replicates)]

    def points(self) -> list[tuple[str, StudyConfig]]:
        """(label, config) per sweep point: the cartesian product of the sweep axes, validated."""
        if not self.sweep:
            return [("", self)]
        axes = list(self.sweep)
        out = []
        for combo in itertools.product(*(self.sweep[a] for a in axes)):
            data = self.model_dump(mode="json", exclude={"sweep"})
            for axis, value in zip(axes, combo):
                _assign(data, axis, value)
            label = ",".join(f"{a}={json.dumps(v, separators=(',', ':'))}" for a, v in zip(axes, combo))
            try:
                out.append((label, StudyConfig.model_validate(data)))
            except ValidationError as err:
                e = _format_validation_error(err)
                raise ConfigError(f"sweep[{label}].{e.field}", str(e).split(": ", 1)[-1]) from None
        return out

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format_validation_error(err: ValidationError, root: str = "") -> ConfigError:
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"]) or root or "config"
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    msg = first["msg"].removeprefix("Value error, ")
    return ConfigError(path, f"{msg}{shown}")


def parse_config(data: dict[str, Any] | None) -> StudyConfig:
    try:
        return StudyConfig.model_validate(data or {})
    except ValidationError as err:
        raise _format_validation_error(err) from None


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(key, f"{part!r} is not a section")
    node[parts[-1]] = value


def set_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a nested dict in place."""
    if "=" not in assignment:
        raise ConfigError("--set", f"expected key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    _assign(data, key, yaml.safe_load(raw))


def read_yaml_mapping(path: str | Path, field: str = "config") -> dict[str, Any]:
    """A YAML file whose top level is a mapping; errors name ``field`` and the path."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(field, f"file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(field, f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(field, f"{path} must contain a mapping at top level")
    return data


def read_config_data(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw mapping of a config YAML (``None``: empty) with ``--set key=value`` overrides applied."""
    data = read_yaml_mapping(path) if path is not None else {}
    for assignment in overrides or []:
        set_override(data, assignment)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> StudyConfig:
    return parse_config(read_config_data(path, overrides))
