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
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)

from prunezoo.errors import ConfigError
from prunezoo.methods import METHOD_KINDS, MethodConfig, StartConfig  # noqa: F401  (StartConfig: re-exported)
from prunezoo.methods.base import (  # noqa: F401
    MAX_NAME_LENGTH,
    STRICT,
    FiniteDict,
    SafeName,
    check_finite,
    check_safe_name,
    method_config_class,
)
from prunezoo.methods.imp import BranchConfig  # noqa: F401  (re-exported)
from prunezoo.schedules.iterative import ResetMode
from prunezoo.training.config import UNHASHED_TRAINING_FIELDS, TrainingConfig
from prunezoo.training.runtime import PLACEMENT_FIELDS, RuntimeFields

_STRICT = STRICT  # every float of a config is finite
MAX_JOBS = 10_000  # a plan beyond this is a typo (replicates: 1000000), not a study
MAX_YAML_CHARS = 2_000_000  # characters of a config YAML after expanding its aliases


class DataConfig(BaseModel):
    model_config = _STRICT
    name: str = "mnist5k"
    root: str | None = None
    download: bool = False
    val_fraction: float = Field(0.0, ge=0, lt=1)
    noise_rate: float = Field(0.0, ge=0, le=1)
    noise_kind: str = "uniform-resample"
    noise_seed: int = 0
    noisy_test: bool = Field(
        False,
        description="also evaluate on test labels corrupted like the training "
        "labels (same rate/kind, seed noise_seed + 1): rows get test_noisy_acc",
    )
    options: FiniteDict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _noisy_test(self) -> DataConfig:
        if self.noisy_test and self.noise_rate <= 0:
            raise ValueError("noisy_test needs noise_rate > 0 (it corrupts the test labels at that rate)")
        return self

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from prunezoo.data.registry import get_dataset_spec

        try:  # a plug-in (entry point, module:attr) is imported here: a bad one fails before anything runs
            get_dataset_spec(v)
        except ConfigError as err:
            raise ValueError(err.message) from None
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
    checkpoint: str | None = Field(
        None,
        description="start from these weights: a prunezoo job directory, a safetensors or state-dict file, or a "
        "directory with model.safetensors; shapes must match except the head's",
    )
    masks: str | None = Field(
        None, description="mask file kept fixed during training (default: the checkpoint's saved masks, if any)"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from prunezoo.models import get_model_spec

        try:  # a plug-in (prefix, entry point, module:attr) is imported here: a bad one fails before anything runs
            get_model_spec(v)
        except ConfigError as err:
            raise ValueError(err.message) from None
        return v


def check_runtime(cfg: RuntimeFields, executor: str = "local", prefix: str = "") -> None:
    """ConfigError naming ``device``/``precision`` unless this machine can run ``cfg``'s runtime; called
    before anything is written. Under Ray the jobs run elsewhere: the cluster decides (see
    :func:`prunezoo.experiments.executors.ray_device`), so only the spelling is checked here."""
    if executor != "ray":
        cfg.runtime_config().resolve(prefix)


# Derived from the registry (the kinds' classes own these facts); kept for callers of the old tables.
SPARSITY_KINDS = tuple(k for k, mk in METHOD_KINDS.items() if mk.has_target)
# Option names each built-in kind consumes: the fields of its Options model.
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {k: tuple(mk.Options.model_fields) for k, mk in METHOD_KINDS.items()}


def _method(value: Any, handler: Any) -> MethodConfig:
    # Dispatch on ``kind`` through the registry (kinds registered by user code included); errors keep
    # their field paths (methods.0.options...).
    if isinstance(value, MethodConfig):
        return value
    if isinstance(value, dict):
        if "kind" not in value:
            raise ConfigError("kind", f"Field required: one of {sorted(METHOD_KINDS)}")
        return method_config_class(value["kind"]).model_validate(value)
    return handler(value)  # not a mapping: pydantic's own type error


# One method of a study: validated as its kind's Config, serialised with that class's fields.
Method = SerializeAsAny[Annotated[MethodConfig, WrapValidator(_method)]]


def _default_methods() -> list[MethodConfig]:
    grid = [0.5, 0.8, 0.9, 0.95, 0.98]
    return [
        MethodConfig(name="global-magnitude", kind="oneshot", criterion="magnitude", sparsities=grid),
        MethodConfig(name="random", kind="oneshot", criterion="random", scheme="uniform", sparsities=grid),
        MethodConfig(name="random-erk", kind="oneshot", criterion="random", scheme="erk", sparsities=grid),
        MethodConfig(name="gmp", kind="gmp", criterion="magnitude", sparsities=[0.9, 0.98]),
        MethodConfig(name="imp", kind="imp", criterion="magnitude", levels=12, reset=ResetMode.REWIND_INIT),
    ]


class LoggingConfig(BaseModel):
    """Tracker sinks (:mod:`prunezoo.tracking`): where results go besides the run store. Never hashed: a
    study logged to TensorBoard is the same study, with the same jobs and rows."""

    model_config = _STRICT
    sinks: list[str] = Field(default_factory=list, description="tensorboard, mlflow, wandb (one run per job in each)")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="sink settings: mlflow_uri, mlflow_experiment, tensorboard_dir, wandb_mode, wandb_project, "
        "wandb_entity, wandb_dir",
    )

    @field_validator("sinks")
    @classmethod
    def _known_sinks(cls, v: list[str]) -> list[str]:
        from prunezoo.tracking import check_sink_names

        try:
            return check_sink_names(v)
        except ConfigError as err:
            raise ValueError(err.message) from None


class StudyConfig(RuntimeFields):
    """A pruning study: one dataset and model, a dense run, then every method on top of it; the runtime
    fields (device, precision, ...) come from :class:`RuntimeFields`."""

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
    methods: list[Method] = Field(default_factory=_default_methods)
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="tracker sinks; not hashed")

    @model_validator(mode="after")
    def _unique(self) -> StudyConfig:
        names = [m.name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"method names must be unique, repeated: {dup}")
        for axis, values in self.sweep.items():
            if axis.split(".")[0] in ("sweep", "replicates", "name", "methods", "logging", *PLACEMENT_FIELDS):
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
            factors = {
                "replicates": self.replicates,
                "sweep": math.prod(len(v) for v in self.sweep.values()),
                "methods": n // max(self.replicates * math.prod(len(v) for v in self.sweep.values()), 1),
            }
            raise ConfigError(
                max(factors, key=factors.get),
                f"the study would run {n:,} jobs ({self.replicates} replicates x "
                f"{factors['sweep']} sweep points x {factors['methods']} jobs per seed); "
                f"the limit is {MAX_JOBS:,}: split it into smaller studies",
            )
        return self

    def _users(self, section: str) -> str:
        """Which jobs train with ``section`` (the dense run always trains with ``training``)."""
        if section == "training":
            return "the dense run"
        names = [m.name for m in self.methods if m.method_kind.uses_finetune(m)]
        return f"methods {names}" if names else ""

    def job_count(self) -> int:
        """The number of jobs :func:`prunezoo.experiments.plan.plan_study` makes, without making them."""
        per_seed = 1  # the dense run
        per_seed += sum(m.method_kind.job_count(m) for m in self.methods)
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
                raise ConfigError(
                    f"sweep[{label}].{e.field}", e.message, [(f"sweep[{label}].{f}", m) for f, m in e.more]
                ) from None
        return out

    def canonical(self) -> dict[str, Any]:
        # device/gpus_per_job: where it runs, not what it computes (resumed elsewhere, it is the same study)
        # logging: where results are also sent (tracker sinks), not what they are
        # training/finetune UNHASHED_TRAINING_FIELDS (checkpoint_every): how a run is carried out, not what it computes
        return self.model_dump(
            mode="json",
            exclude_defaults=True,
            exclude={
                **dict.fromkeys(PLACEMENT_FIELDS, True),
                "logging": True,
                "training": set(UNHASHED_TRAINING_FIELDS),
                "finetune": set(UNHASHED_TRAINING_FIELDS),
            },
        )

    def check_runtime(self, executor: str = "local") -> None:
        """ConfigError (``device``, ``precision``) unless this machine can run every sweep point."""
        for point, pcfg in self.points():
            try:
                check_runtime(pcfg, executor)
            except ConfigError as err:  # the device cannot be swept; a precision can
                if not point or err.field != "precision":
                    raise
                raise ConfigError(f"sweep[{point}].precision", err.message) from None

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
        loc = [
            str(p)
            for p in e["loc"]
            if not (drop_tags and isinstance(p, str) and ("[" in p or p in {"str", "float", "int", "bool"}))
        ]
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
                raise ConfigError(
                    field,
                    f"{where}expands to more than {MAX_YAML_CHARS:,} characters (YAML aliases repeating large parts?)",
                )
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


def read_config_data(
    path: str | Path | None = None, overrides: list[str] | None = None, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The raw mapping of a config YAML (``None``: empty) with ``--set key=value`` overrides applied;
    ``defaults``: the dumped default config (default: a study's), where a missing section starts."""
    data = read_yaml_mapping(path) if path is not None else {}
    if overrides and defaults is None:
        defaults = StudyConfig().model_dump(mode="json")
    for assignment in overrides or []:
        set_override(data, assignment, defaults)
    return data


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, device: str | None = None
) -> StudyConfig:
    """The study config of ``path`` with ``--set`` overrides; ``device`` (``--device``) replaces its device."""
    data = read_config_data(path, overrides)
    if device is not None:
        data["device"] = device
    return parse_config(data)
