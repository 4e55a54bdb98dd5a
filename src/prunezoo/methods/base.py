"""What a method kind is: its config (shared fields + its own), its options, how it plans and runs.

A method kind is a :class:`MethodKind` subclass registered with
:func:`prunezoo.methods.registry.register_method_kind`. The study machinery (config, plan, jobs,
preflight, bench, report) asks the kind's class instead of branching on its name, so a kind defined
outside the package works like a built-in one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prunezoo.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

# The job context (prunezoo.experiments.jobs.JobContext: data, model builder, trainers, result rows) is
# passed in; methods never import experiments (layering), so it is typed loosely here.
JobContext = Any

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)  # every float of a config is finite
MAX_NAME_LENGTH = 100


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


class NoOptions(BaseModel):
    """This kind takes no ``options``."""

    model_config = STRICT


class ScoreModeOptions(BaseModel):
    model_config = STRICT
    score_mode: str | None = Field(
        None, description="train/eval mode of data-dependent criteria (criteria.SCORING_MODES); default: the paper's"
    )


class StartConfig(BaseModel):
    """Sparse-to-sparse start: a random ER mask every later mask must stay inside."""

    model_config = STRICT
    density: float = Field(gt=0, le=1)
    scheme: str = "balanced"
    flow_preservation: bool = False


class MethodConfig(BaseModel):
    """One pruning method of a study: the fields every kind shares. Each kind's ``Config`` subclasses it
    (adding its own fields, ``kind: Literal[...]``); ``MethodConfig(...)`` and ``MethodConfig.model_validate``
    build the subclass of the registered kind named by ``kind``. ``options`` go to the method's constructor
    and are checked against the kind's ``Options`` model (the raw mapping is kept: it is what the hash sees).
    """

    model_config = STRICT
    name: SafeName
    kind: str
    criterion: str = "magnitude"
    scheme: str = "global"
    sparsities: list[float] = Field(default_factory=list, description="target sparsities (one job each)")
    include: list[str] | None = None
    exclude: list[str] | None = None
    keep_dense: list[str] = Field(default_factory=list)
    overrides: dict[str, float] = Field(default_factory=dict)
    scheme_options: FiniteDict = Field(
        default_factory=dict, description="allocator options, e.g. redistribute: true, erk_variant: clamp"
    )
    batches: int = Field(1, ge=1, description="training batches given to data-dependent criteria (SNIP, OBD...)")
    start: StartConfig | None = Field(None, description="sparse-to-sparse: start from a random ER mask")
    options: FiniteDict = Field(default_factory=dict, description="method-specific constructor options")
    sparse_export: bool = Field(
        False,
        description="also export each result to sparse kernels (prunezoo.deploy) "
        "and record its measured latency_ms vs dense",
    )
    pattern: str | None = Field(
        None,
        description="N:M sparsity ('2:4', '1:4', '4:8'): exactly n nonzeros in "
        "every m consecutive weights (kinds with takes_pattern)",
    )

    def __new__(cls, *args: Any, **data: Any) -> MethodConfig:
        if cls is MethodConfig and "kind" in data:  # MethodConfig(kind="imp", ...) builds the imp kind's Config
            return super().__new__(method_config_class(data["kind"]))
        return super().__new__(cls)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> MethodConfig:  # type: ignore[override]
        if cls is MethodConfig and isinstance(obj, dict) and "kind" in obj:
            return method_config_class(obj["kind"]).model_validate(obj, *args, **kwargs)
        return super().model_validate(obj, *args, **kwargs)

    @property
    def method_kind(self) -> MethodKind:
        return method_kind_of(self.kind)

    @model_validator(mode="before")
    @classmethod
    def _other_kinds_fields(cls, data: Any) -> Any:
        # A field of another kind (branches on a oneshot method): say whose it is, not just "extra input".
        if isinstance(data, dict):
            for key in data:
                owners = [k for k, mk in METHOD_KINDS.items() if key in mk.Config.model_fields]
                if key not in cls.model_fields and owners:
                    raise ValueError(f"{key!r} is only defined for method kind {' or '.join(map(repr, owners))}")
        return data

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
        kind = info.data.get("kind")
        return method_kind_of(kind).check_criterion(v, kind)

    @model_validator(mode="after")
    def _kind(self) -> MethodConfig:
        mk = self.method_kind
        if mk.has_target and not self.sparsities:
            raise ValueError(f"method kind {self.kind!r} needs at least one value in 'sparsities'")
        model = mk.options_model(self)
        if unknown := sorted(set(self.options) - set(known := tuple(model.model_fields))):
            what = f"kind {self.kind!r}" + (f" with criterion {self.criterion!r}" if self.criterion == "obs" else "")
            raise ValueError(f"unknown options {unknown} for {what}; known: {list(known) or 'none'}")
        try:  # typed values; the raw mapping stays in ``options`` (the hash of existing configs is unchanged)
            model.model_validate(self.options)
        except ValidationError as err:
            # reported on the method (as every options error is), the option's path leading the message
            e = err.errors()[0]
            raise ValueError(
                f"options.{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')} "
                f"(got {e.get('input')!r})"
            ) from None
        if "score_mode" in self.options:  # a bad mode, or a criterion without one, fails here and not in a job
            from prunezoo.criteria import criterion_with_mode

            try:
                criterion_with_mode(self.criterion, self.options["score_mode"])
            except ConfigError as err:
                raise ValueError(str(err)) from None
        if self.start is not None and not mk.takes_start:  # would be silently ignored
            raise ValueError(f"method kind {self.kind!r} does not take a sparse-to-sparse 'start' mask")
        if self.sparse_export and not mk.sparse_export:
            raise ValueError(f"sparse_export: {mk.sparse_export_note or 'not supported for kind ' + repr(self.kind)}")
        self._check_pattern(mk)
        mk.validate(self)
        return self

    def _check_pattern(self, mk: MethodKind) -> None:
        if self.pattern is None:
            if mk.needs_pattern:
                raise ValueError(f"method kind {self.kind!r} needs a 'pattern' such as '2:4'")
            return
        if not mk.takes_pattern:  # their masks come from thresholds, grow/drop or channels
            raise ValueError(
                f"pattern: N:M is not supported for method kind {self.kind!r}; "
                f"kinds that take it: {', '.join(pattern_kinds())}"
            )
        if self.start is not None:
            raise ValueError("pattern: a random sparse-to-sparse 'start' mask cannot hold an N:M pattern")
        mk.check_pattern(self)


def method_kind_of(kind: Any) -> MethodKind:
    """The registered kind ``kind``; a generic :class:`MethodKind` for an unknown one (old result rows)."""
    return METHOD_KINDS.get(kind) or MethodKind() if isinstance(kind, str) else MethodKind()


def method_config_class(kind: Any) -> type[MethodConfig]:
    """The ``Config`` class of the registered kind ``kind`` (ConfigError naming ``kind`` otherwise)."""
    if not isinstance(kind, str) or kind not in METHOD_KINDS:
        raise ConfigError("kind", f"unknown method kind {kind!r}; known: {sorted(METHOD_KINDS)}")
    return METHOD_KINDS[kind].Config


def pattern_kinds() -> tuple[str, ...]:
    return tuple(k for k, mk in METHOD_KINDS.items() if mk.takes_pattern)


def prune_options(method: MethodConfig) -> dict:
    """Keyword options of ``prune()``/allocators from the method's selection, allocation and pattern fields."""
    opts: dict = dict(method.scheme_options)
    for key in ("include", "exclude"):
        if getattr(method, key) is not None:
            opts[key] = getattr(method, key)
    if method.keep_dense:
        opts["keep_dense"] = method.keep_dense
    if method.overrides:
        opts["overrides"] = method.overrides
    if method.pattern is not None:  # N:M: every prune() of the method keeps the pattern
        opts["pattern"] = method.pattern
    return opts


@dataclass
class Planner:
    """What :meth:`MethodKind.plan` gets: ``add(job_kind, method, label, spec, deps)`` appends a job
    (its spec gets seed, dataset, model and training), the dense job's id, the fine-tuning spec and the
    method's spec (its config without name and defaults: what its result depends on)."""

    add: Callable[..., Any]
    dense: str
    finetune: dict[str, Any]
    spec: dict[str, Any]


class MethodKind:
    """Base class of a method kind; subclass it, set the class attributes, override what differs.

    The default plans one job per target sparsity (trained from init, or from the dense model when
    ``from_dense``) and preflights the allocation of each target density.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    Options: ClassVar[type[BaseModel]] = NoOptions
    from_dense: ClassVar[bool] = False  # every job starts from the trained dense model
    has_target: ClassVar[bool] = True  # needs 'sparsities' (False: sparsity emerges from training)
    target_unit: ClassVar[str] = "weights"  # what a target sparsity counts: "weights" or "channels"
    levelled: ClassVar[bool] = False  # rows are identified by a pruning level (IMP), not a target
    takes_pattern: ClassVar[bool] = False  # N:M 'pattern' supported
    needs_pattern: ClassVar[bool] = False
    takes_start: ClassVar[bool] = True  # sparse-to-sparse 'start' mask supported
    sparse_export: ClassVar[bool] = True  # 'sparse_export' supported
    sparse_export_note: ClassVar[str] = ""
    job_kinds: ClassVar[tuple[str, ...]] = ()  # job kinds it runs besides its own name (IMP: branch)

    @property
    def summary(self) -> str:
        """The first paragraph of the kind's docstring (``prunezoo list kinds``)."""
        doc = (type(self).__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].replace("``", "").split())

    # -- config ----------------------------------------------------------------------------------
    def options_model(self, method: MethodConfig) -> type[BaseModel]:
        """The model ``method.options`` is checked against (some kinds: depends on the criterion)."""
        return self.Options

    def check_criterion(self, criterion: str, kind: str | None = None) -> str:
        from prunezoo.criteria import CRITERIA, TRAINING_CRITERIA

        if criterion in TRAINING_CRITERIA:  # scores come from the training trajectory (movement)
            if kind not in TRAINING_CRITERIA[criterion]:
                raise ValueError(
                    f"criterion {criterion!r} needs training-time scores: use it with kind "
                    f"{' or '.join(map(repr, TRAINING_CRITERIA[criterion]))}"
                )
            return criterion
        if criterion not in CRITERIA:  # a plug-in (entry point, module:attr) must load now, before any run
            from prunezoo.criteria import get_criterion

            try:
                get_criterion(criterion)
            except ConfigError as err:
                raise ValueError(f"{err.message} (kind {kind!r})") from None
        return criterion

    def validate(self, method: MethodConfig) -> None:
        """Kind-specific checks after the shared ones (raise ValueError / ConfigError)."""

    def check_pattern(self, method: MethodConfig) -> None:
        n, m = (int(v) for v in method.pattern.split(":"))
        target = 1.0 - n / m
        if bad := [s for s in method.sparsities if abs(s - target) > 1e-9]:
            raise ValueError(
                f"pattern {method.pattern} fixes the sparsity at {target:g}; sparsities {bad} "
                "cannot hold it (leave 'sparsities' out to use the pattern's)"
            )

    # -- planning --------------------------------------------------------------------------------
    def starts_from_dense(self, method: MethodConfig) -> bool:
        return self.from_dense

    def plan(self, method: MethodConfig, p: Planner) -> None:
        """Add this method's jobs for one seed and sweep point."""
        dense = self.starts_from_dense(method)
        for s in method.sparsities if self.has_target else [None]:
            spec: dict[str, Any] = {"method": p.spec}
            if s is not None:
                spec["sparsity"] = s
            if dense:
                spec.update(finetune=p.finetune, parent=p.dense)
            p.add(
                self.name,
                method.name,
                method.name if s is None else f"{method.name}@{s:g}",
                spec,
                (p.dense,) if dense else (),
            )

    def operating_points(self, method: dict[str, Any], compressions: list[float]) -> dict[str, Any]:
        """A bench suite's raw ``method`` with its targets set for the compression ratios ``compressions``:
        unstructured sparsity 1 - 1/c; a channel fraction 1 - 1/sqrt(c) (weights scale with in x out
        channels); unchanged when the sparsity emerges from training."""
        if not self.has_target:
            return method
        if self.target_unit == "channels":
            return {**method, "sparsities": [round(1 - 1 / math.sqrt(c), 6) for c in compressions]}
        return {**method, "sparsities": [round(1 - 1 / c, 6) for c in compressions]}

    def job_count(self, method: MethodConfig) -> int:
        """Jobs :meth:`plan` adds per seed and sweep point."""
        return len(method.sparsities) if self.has_target else 1

    def uses_finetune(self, method: MethodConfig) -> bool:
        """Whether this method trains with the study's ``finetune`` config."""
        return self.starts_from_dense(method)

    # -- preflight -------------------------------------------------------------------------------
    def densities(self, method: MethodConfig) -> list[float]:
        """Densities whose allocation the preflight checks."""
        return [1 - s for s in method.sparsities] or [1.0]

    def preflight(self, method: MethodConfig, model: nn.Module) -> None:
        """Fail before any training on what would only fail inside a job (default: each allocation)."""
        from prunezoo.allocation import allocate

        for density in self.densities(method):
            alloc = {k: v for k, v in prune_options(method).items() if k != "pattern"}  # N:M: prune() only
            allocate(model, density, method.scheme, **alloc)

    # -- running ---------------------------------------------------------------------------------
    def run(self, ctx: JobContext, job: dict) -> dict:
        """Run one job of this kind (``ctx``: prunezoo.experiments.jobs.JobContext; resumable)."""
        raise NotImplementedError(f"method kind {self.name!r} has no run()")

    def runners(self) -> dict[str, Callable[[JobContext, dict], dict]]:
        """Job kind -> function running it (its own name; IMP adds its branches)."""
        return {self.name: self.run}


# -- the registry ------------------------------------------------------------------------------------
METHOD_KINDS: dict[str, MethodKind] = {}
K = TypeVar("K", bound=type[MethodKind])


def register_method_kind(kind: K) -> K:
    """Register a :class:`MethodKind` subclass under its ``name`` (usable as a class decorator).

    Its ``Config`` must subclass :class:`MethodConfig` with ``kind: Literal[name]``. Re-registering a
    name replaces the kind (a test or a notebook redefining it); the job kinds it runs must not be taken
    by another kind.
    """
    if not (isinstance(kind, type) and issubclass(kind, MethodKind)):
        raise TypeError(f"register_method_kind expects a MethodKind subclass, got {kind!r}")
    name = kind.name
    if not name or not isinstance(name, str):
        raise ValueError(f"{kind.__name__}.name must be a non-empty string")
    if not (isinstance(kind.Config, type) and issubclass(kind.Config, MethodConfig)) or kind.Config is MethodConfig:
        raise TypeError(f"{kind.__name__}.Config must be a subclass of MethodConfig with kind: Literal[{name!r}]")
    literal = kind.Config.model_fields["kind"].annotation
    if getattr(literal, "__args__", None) != (name,):
        raise TypeError(f"{kind.__name__}.Config.kind must be Literal[{name!r}], got {literal}")
    instance = kind()
    for other in METHOD_KINDS.values():
        clash = set(instance.runners()) & set(other.runners())
        if other.name != name and clash:
            raise ValueError(f"method kind {name!r}: job kinds {sorted(clash)} are taken by kind {other.name!r}")
    METHOD_KINDS[name] = instance
    return kind


def get_method_kind(name: str) -> MethodKind:
    """The registered kind ``name``; ConfigError naming ``kind`` and the known kinds otherwise."""
    try:
        return METHOD_KINDS[name]
    except (KeyError, TypeError):
        raise ConfigError("kind", f"unknown method kind {name!r}; known: {sorted(METHOD_KINDS)}") from None
