"""Compacted-model artifacts without pickle: ``<dir>/model.safetensors`` + ``<dir>/architecture.json``.

The JSON holds the build spec of the *original* model (registry name, num_classes, input_shape,
options) and the shapes of every Conv/Linear/BatchNorm layer of the pruned one. Loading rebuilds the
original by name, replaces each layer whose shape changed by a fresh module of the recorded shape
(same kernel/stride/padding/... hyper-parameters), then loads the tensors strictly — so this works
for any registry model that Torch-Pruning shrank, and fails loudly if anything else changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models import build_model
from prunezoo.utils.io import atomic_path, write_json

FORMAT = "prunezoo-compact/1"
WEIGHTS, ARCH = "model.safetensors", "architecture.json"
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_CONV = (nn.Conv1d, nn.Conv2d)


def layer_shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The shape-defining attributes of every Conv/Linear/BatchNorm layer, by module name."""
    out: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, _CONV):
            out[name] = {"type": type(m).__name__, "in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            out[name] = {"type": "Linear", "in": m.in_features, "out": m.out_features}
        elif isinstance(m, _BN):
            out[name] = {"type": type(m).__name__, "out": m.num_features}
    return out


def save_compact(model: nn.Module, path: str | Path, spec: Mapping[str, Any]) -> Path:
    """Write ``model`` (e.g. pruned by :func:`prune_channels`) to the directory ``path``.

    ``spec``: ``{"model": name, "num_classes": int, "input_shape": [...], "options": {...}}`` — the
    arguments that built the original, unpruned model.
    """
    if "model" not in spec:
        raise ConfigError("spec.model", "the registry name of the original model is required")
    path = Path(path)
    arch = {
        "format": FORMAT,
        "spec": {
            "model": spec["model"],
            "num_classes": int(spec.get("num_classes", 10)),
            "input_shape": list(spec.get("input_shape", (3, 32, 32))),
            "options": dict(spec.get("options", {})),
        },
        "layers": layer_shapes(model),
    }
    # safetensors refuses aliased tensors; contiguous clones also detach from autograd.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    write_json(path / ARCH, arch)
    return path


def _resized(old: nn.Module, rec: Mapping[str, Any]) -> nn.Module:
    if type(old).__name__ != rec["type"]:
        raise ConfigError("architecture", f"layer type {type(old).__name__} != recorded {rec['type']}")
    kw = {"device": next(old.parameters(), torch.empty(0)).device}
    if isinstance(old, _CONV):
        return type(old)(
            rec["in"],
            rec["out"],
            old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=rec["groups"],
            bias=old.bias is not None,
            padding_mode=old.padding_mode,
            **kw,
        )
    if isinstance(old, nn.Linear):
        return nn.Linear(rec["in"], rec["out"], bias=old.bias is not None, **kw)
    return type(old)(
        rec["out"],
        eps=old.eps,
        momentum=old.momentum,
        affine=old.affine,
        track_running_stats=old.track_running_stats,
        **kw,
    )


def load_compact(path: str | Path) -> nn.Module:
    """Rebuild the compacted model saved by :func:`save_compact` (eval mode)."""
    path = Path(path)
    arch = json.loads((path / ARCH).read_text())
    if arch.get("format") != FORMAT:
        raise ConfigError("architecture.format", f"expected {FORMAT!r}, got {arch.get('format')!r}")
    spec = arch["spec"]
    model = build_model(
        spec["model"], num_classes=spec["num_classes"], input_shape=spec["input_shape"], **spec["options"]
    )
    current = layer_shapes(model)
    for name, rec in arch["layers"].items():
        if name not in current:
            raise ConfigError("architecture.layers", f"{spec['model']} has no layer {name!r}")
        if current[name] != rec:
            parent, _, child = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, child, _resized(getattr(owner, child), rec))
    model.load_state_dict(load_file(str(path / WEIGHTS)), strict=True)
    return model.eval()
