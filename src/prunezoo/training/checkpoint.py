"""Checkpoints as safetensors (tensors) + JSON (everything else); no pickle, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prunezoo.utils.io import atomic_path, write_json


def save_state(path: str | Path, state: dict[str, torch.Tensor]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


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
    """Write ``model.safetensors``, ``rng.safetensors`` [+ ``optimizer.safetensors``] and
    ``checkpoint.json`` into a fresh sibling directory, then swap it in: a reader (or a run
    killed mid-write) sees either the previous complete checkpoint or the new one."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    save_state(staging / "model.safetensors", model.state_dict())
    # The global RNG drives dropout/augmentation: restoring it makes a resumed run bit-identical.
    save_state(staging / "rng.safetensors", {"torch": torch.get_rng_state()})
    meta: dict[str, Any] = {"step": step, "extra": extra or {}}
    if tensors:  # e.g. callback state such as the current masks of a pruning schedule
        save_state(staging / "extra.safetensors", tensors)
    if optimizer is not None:
        tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        save_state(staging / "optimizer.safetensors", tensors)
        meta["optimizer"] = opt_meta
    write_json(staging / "checkpoint.json", meta)
    previous = directory.with_name(directory.name + ".previous")
    if directory.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(directory, previous)
    os.replace(staging, directory)
    shutil.rmtree(previous, ignore_errors=True)
    return directory


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint at ``directory`` (or the one being replaced, if a swap was cut short)."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".previous")):
        if (candidate / "checkpoint.json").exists():
            return candidate
    return None


def load_checkpoint(
    directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Restore model (and optimizer) in place; returns the metadata (step, extra, tensors)."""
    found = latest_checkpoint(directory)
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint at {directory}")
    directory = found
    meta = json.loads((directory / "checkpoint.json").read_text())
    model.load_state_dict(load_state(directory / "model.safetensors"))
    if (directory / "rng.safetensors").exists():
        torch.set_rng_state(load_state(directory / "rng.safetensors")["torch"])
    if optimizer is not None and "optimizer" in meta:
        tensors = load_state(directory / "optimizer.safetensors")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    extra_file = directory / "extra.safetensors"
    meta["tensors"] = load_state(extra_file) if extra_file.exists() else {}
    return meta
