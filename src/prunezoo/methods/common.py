"""Helpers the method kinds share: prune() options of a method, its scoring criterion, masks saved once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunezoo.methods.base import MethodConfig, prune_options  # noqa: F401  (prune_options: re-exported)

if TYPE_CHECKING:  # torch: imported when a job runs, not when a config is read or kinds are listed
    from prunezoo.sparsity import MaskSet

REINIT_SEED_OFFSET = 1_000_003  # random-reinit control: a different, still reproducible, init


def selection(method: MethodConfig) -> dict:
    """``include``/``exclude`` of the method, for constructors that take only those."""
    return {k: v for k, v in (("include", method.include), ("exclude", method.exclude)) if v is not None}


def scoring_criterion(method: MethodConfig):
    """The method's criterion, scoring in ``options.score_mode`` when given (else its paper's mode)."""
    from prunezoo.criteria import SCORING_MODES, criterion_with_mode, make_obs

    mode = method.options.get("score_mode")
    fisher = {k: v for k, v in method.options.items() if k in ("block_size", "damp", "num_samples", "per_sample")}
    if method.criterion == "obs" and fisher:  # update: false masks by saliency alone; its Fisher options still apply
        return make_obs(**fisher, mode=mode or SCORING_MODES["obs"])
    return criterion_with_mode(method.criterion, mode)


def masks_once(path: Path, make: Callable[[], MaskSet]) -> MaskSet:
    """Masks computed once and saved before training, so a resumed job never re-derives them."""
    if path.exists():
        return load_masks(path)
    masks = make()
    masks.save(path)
    return masks


def load_masks(path: Path) -> MaskSet:
    """A saved MaskSet, checked against its recorded checksum; damage raises CorruptFileError."""
    from prunezoo.sparsity import MaskSet
    from prunezoo.utils.io import CorruptFileError, verify_file

    verify_file(path)
    try:
        return MaskSet.load(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors' own error type for torn files
        raise CorruptFileError(path, f"unreadable masks ({err})") from None


def one_result(row: dict, history: list[dict], masks: MaskSet, suffix: str = "", **extra: Any) -> dict:
    """A job result holding one row (its history and layer densities under the same run-id suffix)."""
    return {
        "rows": [{"suffix": suffix, **row}],
        "histories": {suffix: history},
        "layers": {suffix: masks.layer_densities()},
        **extra,
    }


def options_error(method: MethodConfig, err: Exception):
    """A constructor's TypeError/ValueError about ``options`` as a ConfigError naming the method."""
    from prunezoo.errors import ConfigError

    return ConfigError(f"methods[{method.name}].options", str(err))
