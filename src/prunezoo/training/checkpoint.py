"""Checkpoints as safetensors (tensors) + JSON (everything else); no pickle, atomic writes."""

from __future__ import annotations

import json
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
) -> Path:
    """Write ``model.safetensors`` [+ ``optimizer.safetensors``] and ``checkpoint.json`` (last, so a
    checkpoint whose JSON exists is complete)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_state(directory / "model.safetensors", model.state_dict())
    meta: dict[str, Any] = {"step": step, "extra": extra or {}}
    if optimizer is not None:
        tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        save_state(directory / "optimizer.safetensors", tensors)
        meta["optimizer"] = opt_meta
    write_json(directory / "checkpoint.json", meta)
    return directory


def load_checkpoint(
    directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Restore model (and optimizer) in place; returns the checkpoint metadata (step, extra)."""
    directory = Path(directory)
    meta = json.loads((directory / "checkpoint.json").read_text())
    model.load_state_dict(load_state(directory / "model.safetensors"))
    if optimizer is not None and "optimizer" in meta:
        tensors = load_state(directory / "optimizer.safetensors")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    return meta
