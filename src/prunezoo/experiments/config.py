"""Declarative study configuration (YAML → pydantic). Errors name the field path.

The canonical hash of a config (OpenLTH-style) hashes only non-default values, so adding a new
option with a no-op default leaves existing run directories' names unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from prunezoo.errors import ConfigError
from prunezoo.schedules.iterative import ResetMode
from prunezoo.training.config import TrainingConfig

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)  # every float of a config is finite
MAX_NAME_LENGTH = 100
MAX_JOBS = 10_000  # a plan beyond this is a typo (replicates: 1000000), not a study
MAX_YAML_CHARS = 2_000_000  # characters of a config YAML after expanding its aliases


def check_safe_name(value: str) -> str:
    """``value`` if it is safe as one path component (study, zoo, suite, method names), else ValueError."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters, got {len(value)}")
    if not value.isprintable():
        raise ValueError("must be printable (no NUL or control characters)")
    if "/" in value or "\\" in value:
        raise ValueError("must be a single path component (no '/' or '\\')")
    if value.startswith("."):
        raise ValueError("must not start with '.' (no '.', '..' or hidden names)")
    return value


# A name that becomes (part of) a file or directory name: rejected, never rewritten.
SafeName = Annotated[str, AfterValidator(check_safe_name)]


def check_finite(value: Any, path: str = "") -> Any:
    """``value`` if every float inside it (nested dicts/lists) is finite, else ValueError naming where."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path + ': ' if path else ''}must be a finite number, got {value}")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_finite(v, f"{path}[{i}]")
    return value


FiniteDict = Annotated[dict[str, Any], AfterValidator(check_finite)]


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
    options: FiniteDict = Field(default_factory=dict)

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
    options: FiniteDict = Field(default_factory=dict)

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
    name: str = Field(min_length=1)  # a label only: jobs re-validate it as "<method>/<branch>"
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
    name: SafeName
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
    scheme_options: FiniteDict = Field(
        default_factory=dict, description="allocator options, e.g. redistribute: true, erk_variant: clamp"
    )
    gmp_frequency: int = Field(10, ge=1)
    batches: int = Field(1, ge=1, description="training batches given to data-dependent criteria (SNIP, OBD...)")
    rounds: int = Field(1, ge=1, description="at-init: iterative pruning rounds (SynFlow uses 100)")
    start: StartConfig | None = Field(None, description="sparse-to-sparse: start from a random ER mask")
    options: FiniteDict = Field(default_factory=dict, description="method-specific constructor options")
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
        if unknown := sorted(set(self.options) - set(known := known_method_options(self))):
            what = f"kind {self.kind!r}" + (f" with criterion {self.criterion!r}" if self.criterion == "obs" else "")
            raise ValueError(f"unknown options {unknown} for {what}; known: {list(known) or 'none'}")
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


# Option names each method kind consumes (where: experiments/jobs.py passes ``options`` to the kind's
# constructor). Add a name here when a constructor learns a new keyword; tests check the signatures.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    # score_mode: jobs.scoring_criterion (train/eval mode of data-dependent criteria, criteria.SCORING_MODES)
    "oneshot": ("score_mode",),  # criterion obs: OBS_STUDY_OPTIONS (see known_method_options)
    "at-init": ("schedule", "score_mode"),  # prunezoo.pruning.rounds.prune_iteratively (rounds > 1)
    "imp": (),
    "gmp": ("from_dense",),
    "dst": ("grow", "delta_t", "alpha", "end_fraction", "t_end", "decay",  # schedules.DynamicSparseTraining
            "regrow_dropped", "drop_count"),
    "acdc": ("warmup_epochs", "compressed_epochs", "decompressed_epochs", "final_sparse_epochs",  # schedules.ACDC
             "scale_with_epochs", "base_epochs", "ramp", "ramp_start", "min_decompressed_sparsity", "reset_momentum"),
    "str": ("s_init",),  # reparam.apply_str
    "edge-popup": ("freeze_bias", "weight_init"),  # reparam.apply_edge_popup
    "vd": ("log_sigma2_init", "threshold", "schedule", "ramp_to", "ramp_length", "ramp_unit", "ramp_cap"),
    # structured.apply_structured, then prune_channels; thinet/merge take none, slimming also l1
    "structured": ("allocation", "budget", "scan_ratios", "scope", "ignored_layers", "max_layer_ratio", "round_to"),
    "sr-ste": ("decay",),  # reparam.srste.apply_srste
}


def known_method_options(method: MethodConfig) -> tuple[str, ...]:
    """The ``options`` names ``method`` can use (its kind's, adjusted for criteria that take their own)."""
    if method.kind == "oneshot" and method.criterion == "obs":
        from prunezoo.criteria.obs import OBS_STUDY_OPTIONS

        return tuple(OBS_STUDY_OPTIONS)
    if method.kind == "structured":
        from prunezoo.structured.study import canonical_structured_criterion

        crit = canonical_structured_criterion(method.criterion)
        if crit in ("thinet", "merge"):
            return ()
        return (*METHOD_OPTIONS["structured"], "l1") if crit == "slimming" else METHOD_OPTIONS["structured"]
    return METHOD_OPTIONS.get(method.kind, ())


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
    name: SafeName = "default"
    seed: int = Field(0, ge=0, description="first replicate's seed (init, data order, masks)")
    replicates: int = Field(1, ge=1, description="seeds seed, seed+1, ..., seed+replicates-1")
    sweep: Annotated[dict[str, list[Any]], AfterValidator(check_finite)] = Field(
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
        for section in ("training", "finetune"):
            cfg = getattr(self, section)
            if (cfg.steps if cfg.steps is not None else cfg.epochs) == 0 and (users := self._users(section)):
                field = "steps" if cfg.steps is not None else "epochs"
                raise ConfigError(f"{section}.{field}", f"must be >= 1: {section!r} trains {users}")
        if (n := self.job_count()) > MAX_JOBS:
            # name the setting that multiplies the plan most
            factors = {"replicates": self.replicates, "sweep": math.prod(len(v) for v in self.sweep.values()),
                       "methods": n // max(self.replicates * math.prod(len(v) for v in self.sweep.values()), 1)}
            raise ConfigError(max(factors, key=factors.get),
                              f"the study would run {n:,} jobs ({self.replicates} replicates x "
                              f"{factors['sweep']} sweep points x {factors['methods']} jobs per seed); "
                              f"the limit is {MAX_JOBS:,}: split it into smaller studies")
        return self

    def _users(self, section: str) -> str:
        """Which jobs train with ``section`` (the dense run always trains with ``training``)."""
        if section == "training":
            return "the dense run"
        names = [m.name for m in self.methods if m.kind in ("oneshot", "structured", "vd")
                 or (m.kind == "gmp" and m.options.get("from_dense"))
                 or (m.kind == "imp" and (m.reset is ResetMode.FINETUNE or any(b.kind == "finetune"
                                                                              for b in m.branches)))]
        return f"methods {names}" if names else ""

    def job_count(self) -> int:
        """The number of jobs :func:`prunezoo.experiments.plan.plan_study` makes, without making them."""
        per_seed = 1  # the dense run
        for m in self.methods:
            if m.kind in ("vd", "str"):
                per_seed += 1
            elif m.kind == "imp":
                per_seed += 1 + sum(len(b.levels) or m.levels for b in m.branches)
            else:
                per_seed += len(m.sparsities)
        return math.prod(len(v) for v in self.sweep.values()) * self.replicates * per_seed

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
                e = format_validation_error(err)
                raise ConfigError(f"sweep[{label}].{e.field}", e.message,
                                  [(f"sweep[{label}].{f}", m) for f, m in e.more]) from None
        return out

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def hash(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


MAX_REPORTED_ERRORS = 10


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ""
    text = repr(value)
    return f" (got {text if len(text) <= 80 else text[:77] + '...'})"


def format_validation_error(err: ValidationError, root: str = "", drop_tags: bool = False) -> ConfigError:
    """One :class:`ConfigError` for every problem pydantic found (the first is ``field``; all are in the text).

    ``drop_tags``: leave pydantic's union-branch tags (``list[int]``, ``function-after[...]``) out of paths.
    """
    problems: list[tuple[str, str]] = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]
               if not (drop_tags and isinstance(p, str) and ("[" in p or p in {"str", "float", "int", "bool"}))]
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):  # raised by a validator that knows the exact field
            problems.append((".".join([*loc, cause.field]), cause.message))
            continue
        path = ".".join(loc) or root or "config"
        problems.append((path, e["msg"].removeprefix("Value error, ") + _shown(e.get("input"))))
    if len(problems) > MAX_REPORTED_ERRORS:
        problems = [*problems[:MAX_REPORTED_ERRORS], ("...", f"and {len(problems) - MAX_REPORTED_ERRORS} more")]
    (field, message), *more = problems
    return ConfigError(field, message, more)


def parse_config(data: dict[str, Any] | None) -> StudyConfig:
    try:
        return StudyConfig.model_validate(data or {})
    except ValidationError as err:
        raise format_validation_error(err) from None


def _index(node: list, part: str, where: str) -> int:
    try:
        i = int(part)
        node[i]
    except (ValueError, IndexError):
        raise ConfigError(where, f"no item {part!r} in a list of {len(node)}") from None
    return i


def _assign(data: dict[str, Any], key: str, value: Any, defaults: dict[str, Any] | None = None) -> None:
    """Set ``data[a][b][c] = value`` for ``key`` ``a.b.c`` (list items by index: ``methods.0.levels``).

    A section missing from ``data`` starts as its value in ``defaults`` (the config's defaults, dumped),
    so setting one field of it keeps the section's other default values.
    """
    parts = key.strip().split(".")
    if not all(p.strip() for p in parts):
        raise ConfigError(key.strip() or "--set", "expected a dotted field name like training.epochs")
    node: Any = data
    dnode: Any = defaults
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            j = _index(node, part, where)
            if last:
                node[j] = value
                return
            node, dnode = node[j], None  # the config's own item: its own defaults apply
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            if node.get(part) is None:
                seed = dnode.get(part) if isinstance(dnode, dict) else None
                node[part] = copy.deepcopy(seed) if isinstance(seed, dict | list) else {}
                dnode = seed
            else:
                dnode = None
            node = node[part]
        else:
            raise ConfigError(where, f"{parts[i - 1]!r} is not a section (it holds {node!r})")


def set_override(data: dict[str, Any], assignment: str, defaults: dict[str, Any] | None = None) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML) to a nested dict in place; it changes
    exactly that field (a section the config leaves out starts from ``defaults``)."""
    if "=" not in assignment:
        raise ConfigError("--set", f"expected key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    _assign(data, key, load_yaml(raw, f"--set {key.strip()}"), defaults)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_yaml_size(root: yaml.Node, field: str, where: str) -> None:
    """Reject alias bombs (and recursive aliases) before constructing: the size each node would have
    once every alias is expanded, computed once per node (iteratively: no recursion limit)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()  # the current path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _yaml_children(node)
            size = 1 + (sum(sizes[id(c)] for c in children) if children else len(str(node.value)))
            if size > MAX_YAML_CHARS:
                raise ConfigError(field, f"{where}expands to more than {MAX_YAML_CHARS:,} characters "
                                         "(YAML aliases repeating large parts?)")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in active:
            raise ConfigError(field, f"{where}has a recursive YAML alias (a node that contains itself)")
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _yaml_children(node) if id(c) not in sizes)


def load_yaml(text: str, field: str, source: str = "") -> Any:
    """Parse one YAML document safely (plain data only, aliases bounded); errors name ``field``."""
    where = f"{source} " if source else ""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node, field, where)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(field, f"{where}is not valid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(field, f"{where}is nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml_mapping(path: str | Path, field: str = "config") -> dict[str, Any]:
    """A YAML file whose top level is a mapping; errors name ``field`` and the path."""
    try:
        path = Path(path)
        if not path.exists():
            raise ConfigError(field, f"file not found: {path}")
        if not path.is_file():
            raise ConfigError(field, f"{path} is not a file")
        if path.stat().st_size > MAX_YAML_CHARS:
            raise ConfigError(field, f"{path} is larger than {MAX_YAML_CHARS:,} bytes; not a config")
        raw = path.read_bytes()
    except (OSError, ValueError) as err:  # ValueError: NUL in the path
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(field, f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(field, f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    data = load_yaml(text, field, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(field, f"{path} must contain a mapping at top level")
    return data


def check_output_dir(path: str | Path, field: str = "--out") -> Path:
    """``path`` if it is, or can be created as, a writable directory; checked before anything is written."""
    path = Path(path)
    try:
        probe = path.absolute()
        while not probe.exists() and probe.parent != probe:  # the nearest existing ancestor decides
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(field, f"{path} cannot be a directory: {probe} is a file")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(field, f"{path}: {probe} is not writable")
    except (OSError, ValueError) as err:  # ENAMETOOLONG, NUL in the path...
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(field, f"{path} is not a usable directory: {getattr(err, 'strerror', None) or err}") from None
    return path


def read_config_data(path: str | Path | None = None, overrides: list[str] | None = None,
                     defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw mapping of a config YAML (``None``: empty) with ``--set key=value`` overrides applied;
    ``defaults``: the dumped default config (default: a study's), where a missing section starts."""
    data = read_yaml_mapping(path) if path is not None else {}
    if overrides and defaults is None:
        defaults = StudyConfig().model_dump(mode="json")
    for assignment in overrides or []:
        set_override(data, assignment, defaults)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> StudyConfig:
    return parse_config(read_config_data(path, overrides))
