"""Checkpoints as safetensors (tensors) + JSON (everything else); no pickle, atomic writes.

A checkpoint directory holds the sha256 of each of its files in ``checkpoint.json``; the previous
checkpoint is kept as ``<name>.previous`` so a damaged latest one falls back to it (then to none).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prunezoo.utils.io import (
    STAGING_SUFFIX,
    CorruptFileError,
    atomic_path,
    check_sha256,
    quarantine,
    read_json,
    remove_tree,
    sha256_file,
    verify_file,
    write_json,
)

META_FILE = "checkpoint.json"


def save_state(path: str | Path, state: dict[str, torch.Tensor], *, checksum: bool = True) -> None:
    with atomic_path(path, checksum=checksum) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, checked against its recorded checksum; damage raises
    :class:`CorruptFileError` naming the file."""
    verify_file(path)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors' own error type for torn headers/data
        raise CorruptFileError(path, f"unreadable safetensors ({err})") from None


def rng_states() -> dict[str, torch.Tensor]:
    """The CPU torch RNG state, plus each CUDA device's once CUDA is in use (dropout on a GPU draws there)."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.update({f"cuda:{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def set_rng_states(states: dict[str, torch.Tensor]) -> None:
    """Restore :func:`rng_states`; CUDA states of devices this machine lacks are ignored."""
    torch.set_rng_state(states["torch"])
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for key, state in states.items():
        if key.startswith("cuda:") and int(key[5:]) < count:
            torch.cuda.set_rng_state(state, int(key[5:]))


def _flatten_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, st in opt_state["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{pid}.{key}"] = val
            else:
                scalars[f"{pid}.{key}"] = val
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for flat, val in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = flat.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    step: int,
    extra: dict | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model.safetensors``, ``rng.safetensors`` [+ ``optimizer.safetensors``,
    ``extra.safetensors``] and ``checkpoint.json`` (with their sha256) into a fresh staging
    directory, then swap it in, keeping the one it replaces as ``<name>.previous``: a reader (or a
    run killed mid-write) sees complete checkpoints only. Callers must not write one checkpoint
    directory from two processes at once (the study runner holds a lock per job)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=STAGING_SUFFIX, dir=directory.parent))
    files = {
        "model.safetensors": model.state_dict(),
        # The global RNG drives dropout/augmentation: restoring it makes a resumed run bit-identical.
        "rng.safetensors": rng_states(),
    }
    meta: dict[str, Any] = {"step": step, "extra": extra or {}}
    if tensors:  # e.g. callback state such as the current masks of a pruning schedule
        files["extra.safetensors"] = tensors
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        files["optimizer.safetensors"] = opt_tensors
    for name, state in files.items():
        save_state(staging / name, state, checksum=False)
    meta["files"] = {name: sha256_file(staging / name) for name in files}
    write_json(staging / META_FILE, meta, checksum=False)
    previous = _previous(directory)
    if directory.exists():
        remove_tree(previous)  # rename-then-delete: never a half-deleted .previous
        os.replace(directory, previous)
    os.replace(staging, directory)
    return directory


def _previous(directory: Path) -> Path:
    return directory.with_name(directory.name + ".previous")


def remove_checkpoint(directory: str | Path) -> None:
    """Delete a checkpoint and the previous one kept next to it."""
    directory = Path(directory)
    remove_tree(directory)
    remove_tree(_previous(directory))


def verify_checkpoint(directory: str | Path) -> dict:
    """The metadata of a complete, undamaged checkpoint; raises :class:`CorruptFileError` naming the
    first bad file (FileNotFoundError if there is no checkpoint.json)."""
    directory = Path(directory)
    meta = read_json(directory / META_FILE)
    if not isinstance(meta, dict) or "step" not in meta:
        raise CorruptFileError(directory / META_FILE, "no step recorded")
    files = meta.get("files")
    if files is None:  # written before checksums were recorded: check that everything parses
        names = [p.name for p in directory.glob("*.safetensors")]
        for name in names:
            load_state(directory / name)
        if "model.safetensors" not in names:
            raise CorruptFileError(directory / "model.safetensors", "missing")
        return meta
    for name, expected in files.items():
        path = directory / name
        if not path.exists():
            raise CorruptFileError(path, "missing from the checkpoint")
        check_sha256(path, expected)
    return meta


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest undamaged checkpoint: ``directory``, else the ``.previous`` one it replaced (also
    what a swap cut short leaves). Damaged ones are moved to ``quarantine/`` next to them (logged)."""
    directory = Path(directory)
    for candidate in (directory, _previous(directory)):
        if not (candidate / META_FILE).exists():
            continue
        try:
            verify_checkpoint(candidate)
        except CorruptFileError as err:
            quarantine(candidate, str(err))
            continue
        return candidate
    return None


def load_checkpoint(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore model (and optimizer) in place from the newest undamaged checkpoint at ``directory``;
    returns the metadata (step, extra, tensors)."""
    found = latest_checkpoint(directory)
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint at {directory}")
    directory = found
    meta = read_json(directory / META_FILE)
    model.load_state_dict(load_state(directory / "model.safetensors"))
    if (directory / "rng.safetensors").exists():
        set_rng_states(load_state(directory / "rng.safetensors"))
    if optimizer is not None and "optimizer" in meta:
        tensors = load_state(directory / "optimizer.safetensors")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    extra_file = directory / "extra.safetensors"
    meta["tensors"] = load_state(extra_file) if extra_file.exists() else {}
    return meta
