"""``prunezoo zoo import``: convert a zoo in the public ModelZooDataset layout into a prunezoo zoo.

Public layout (Schürholt et al.): one directory per model with ``params.json`` (flat keys such as
``model::type``, ``model::nlin``, ``model::init_type``, ``model::dropout``, ``optim::optimizer``,
``optim::lr``, ``optim::wd``, ``training::batchsize``, ``seed``), ``result.json`` (one JSON line
per epoch; ``training_iteration`` when there is no ``epoch``) and ``checkpoint_NNNNNN/checkpoints``
(a ``torch.save``'d state dict whose keys are ``module_list.<index>.weight/bias`` — the indices
shift with dropout). The importer:

- finds the architecture from the checkpoint's conv/linear shapes (``cnn-s``: 8-6-4 convs with 5-5-2
  kernels; ``cnn-l``: 16-32-15 convs with 3x3 kernels) unless ``model=`` is given;
- maps the public tensors onto prunezoo's named layers in module order, checking every shape;
- loads checkpoints with ``torch.load(weights_only=True)`` (no arbitrary unpickling) and writes
  safetensors, copies the result lines (``epoch`` added), keeps the original params under
  ``"public"`` and writes ``done.json``. Models that cannot be read or mapped (including checkpoints
  holding anything but tensors: refused, never unpickled) are skipped with a reason; the others are
  imported.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from prunezoo.errors import ConfigError
from prunezoo.models import get_model_spec
from prunezoo.models.layers import ACTIVATIONS
from prunezoo.zoo import layout

# Conv weight shapes (out, kernel) identifying the public architectures; input sizes per model.
_SIGNATURES = {"cnn-s": [(8, 5), (6, 5), (4, 2)], "cnn-l": [(16, 3), (32, 3), (15, 3)]}
_IMAGE_SIZE = {"cnn-s": 28, "cnn-l": 32}
_PUBLIC_KEYS = {
    "activation": "model::nlin",
    "init": "model::init_type",
    "dropout": "model::dropout",
    "optimizer": "optim::optimizer",
    "lr": "optim::lr",
    "weight_decay": "optim::wd",
    "momentum": "optim::momentum",
    "batch_size": "training::batchsize",
    "epochs": "training::epochs_train",
    "seed": "seed",
}


def _ordered(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    # Module order: "module_list.10.weight" after "module_list.9.bias", a layer's weight before its bias.
    def key(name: str):
        prefix, _, leaf = name.rpartition(".")
        natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", prefix)]
        return natural, {"weight": 0, "bias": 1}.get(leaf, 2), leaf

    return sorted(state.items(), key=lambda kv: key(kv[0]))


def detect_model(state: dict[str, torch.Tensor]) -> str | None:
    convs = [(v.shape[0], v.shape[-1]) for _, v in _ordered(state) if v.ndim == 4]
    for name, sig in _SIGNATURES.items():
        if convs == sig:
            return name
    return None


def map_state(public: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Public tensors onto the target's names, in module order; shapes must agree one to one."""
    src, dst = _ordered(public), list(target.items())
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} tensors in the checkpoint, {len(dst)} in the model")
    out = {}
    for (s_name, s_val), (d_name, d_val) in zip(src, dst):
        if tuple(s_val.shape) != tuple(d_val.shape):
            raise ValueError(f"{s_name} {tuple(s_val.shape)} does not fit {d_name} {tuple(d_val.shape)}")
        out[d_name] = s_val.detach().clone().to(d_val.dtype)
    return out


def _public_params(raw: dict[str, Any]) -> dict[str, Any]:
    out = {k: raw[v] for k, v in _PUBLIC_KEYS.items() if v in raw}
    if isinstance(out.get("optimizer"), str):
        out["optimizer"] = out["optimizer"].lower()
    if isinstance(out.get("activation"), str):
        out["activation"] = out["activation"].lower()
    return out


def _load(source: Path, epoch: int) -> dict[str, torch.Tensor]:
    try:
        return layout.load_state(source, epoch)
    except pickle.UnpicklingError as err:  # weights_only refused a global: not a plain state dict
        path = layout.checkpoint_dir(source, epoch) / layout.PUBLIC_STATE_FILE
        raise ValueError(
            f"refused {path.relative_to(source)}: it holds objects other than tensors, so it was "
            f"not unpickled ({_unpickling_detail(err)})"
        ) from None


def _unpickling_detail(err: Exception) -> str:
    # torch's message wraps the one useful line in advice to retry with weights_only=False: drop that.
    boiler = ("Weights only load failed", "Check the documentation", "Please file an issue", "In PyTorch")
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith(boiler)]
    return (lines[0].removeprefix("WeightsUnpickler error:").strip() if lines else "") or "unsafe pickle"


def import_model(source: Path, dest: Path, *, model: str | None = None, dataset: dict | None = None) -> None:
    """Import one public model directory into ``dest`` (a model directory)."""
    raw = json.loads((source / layout.PARAMS_FILE).read_text())
    epochs = layout.list_epochs(source)
    if not epochs:
        raise ValueError("no checkpoint_NNNNNN/checkpoints")
    first = _load(source, epochs[0])
    name = model or detect_model(first)
    if name is None:
        raise ValueError("unknown architecture (pass --model)")
    hyper = _public_params(raw)
    options: dict[str, Any] = {}
    if hyper.get("activation") in ACTIVATIONS:
        options["activation"] = hyper["activation"]
    if isinstance(hyper.get("dropout"), int | float):
        options["dropout"] = float(hyper["dropout"])
    convs = [v for _, v in _ordered(first) if v.ndim == 4]
    linears = [v for _, v in _ordered(first) if v.ndim == 2]
    channels = int(convs[0].shape[1]) if convs else None
    params = {
        "model": name,
        "model_options": options,
        "num_classes": int(linears[-1].shape[0]),
        "input_shape": [channels, _IMAGE_SIZE.get(name, 28), _IMAGE_SIZE.get(name, 28)]
        if channels
        else [int(linears[0].shape[1])],
        "dataset": dataset,
        "imported_from": str(source),
        "public": raw,
        **{k: hyper.get(k) for k in ("seed", "optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs")},
        "init": hyper.get("init"),
        "activation": options.get("activation"),
        "dropout": options.get("dropout"),
    }
    target = layout.build_member_model(params).state_dict()
    layout.clear_model_dir(dest)
    layout.write_params(dest, params)
    for epoch in epochs:
        layout.save_state(dest, epoch, map_state(_load(source, epoch), target))
    rows = layout.read_results(source)
    layout.write_results(dest, rows)
    layout.mark_done(dest, rows or [{"epoch": epochs[-1]}], imported=True)


def import_zoo(
    source: str | Path, dest: str | Path, *, model: str | None = None, dataset: str | None = None
) -> dict[str, Any]:
    """Import every model directory of a public zoo at ``source`` into a prunezoo zoo at ``dest``."""
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise ConfigError("source", f"no directory at {source}")
    if model is not None:
        get_model_spec(model)
    ds = {"name": dataset} if dataset else None
    if dataset is not None:
        from prunezoo.data.registry import get_dataset_spec

        try:
            get_dataset_spec(dataset)
        except ConfigError as err:
            raise ConfigError("--dataset", err.message) from None
    candidates = [p for p in sorted(source.iterdir()) if p.is_dir() and layout.is_model_dir(p)]
    if not candidates:
        raise ConfigError("source", f"{source} holds no model directories (with {layout.PARAMS_FILE})")
    imported, skipped = [], []
    for src in candidates:
        if layout.is_done(dest / src.name):
            imported.append(src.name)
            continue
        try:
            import_model(src, dest / src.name, model=model, dataset=ds)
            imported.append(src.name)
        except Exception as err:
            layout.clear_model_dir(dest / src.name)
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            skipped.append(f"{src.name}: {reason}")
    layout.write_zoo_config(
        dest,
        {
            "kind": "zoo",
            "name": source.name,
            "dataset": ds,
            "imported_from": str(source),
            "model": {"name": model} if model else None,
            "members": imported,
        },
        f"# Imported zoo {source.name}\n\nImported from {source} by `prunezoo zoo import`.\n",
    )
    return {"imported": len(imported), "skipped": len(skipped), "skipped_reasons": skipped}
