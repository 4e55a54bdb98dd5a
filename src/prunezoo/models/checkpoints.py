"""Start a model from a pretrained checkpoint, with strict shape checks and its masks kept.

A source is one of:

* a prunezoo job directory (``final.safetensors``, plus ``masks.safetensors`` when it pruned);
* a directory holding ``model.safetensors`` or ``pytorch_model.bin`` (a Hugging Face ``save_pretrained``
  folder: its names are found under the module that holds them, e.g. ``hf.`` of an ``hf:`` model, or
  ``hf.bert.`` for a bare ``BertModel``'s; see :func:`align_names`);
* a ``.safetensors`` file, or a torch state-dict file (``.pt``/``.pth``/``.bin``, loaded with
  ``weights_only=True``; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped).

Every tensor must match the model's name and shape, except under the head (a new task may have
another number of classes): a mismatched or missing head is left at its initialisation. Errors are
:class:`ConfigError` naming the field and the offending parameter (CLI exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.sparsity import MaskSet
from prunezoo.utils.io import CorruptFileError, verify_file

WEIGHT_FILES = ("final.safetensors", "model.safetensors", "pytorch_model.bin")
MASK_FILE = "masks.safetensors"


def head_prefix(model: nn.Module, head: str | None = None, field: str = "head") -> str:
    """The module name of the model's output head: ``head`` when given (must exist), ``"head"`` when
    the model has one, else the last module that owns parameters (an MLP's ``fc3``)."""
    modules = dict(model.named_modules())
    if head is not None:
        if not head or head not in modules:
            raise ConfigError(field, f"no module {head!r} in model {type(model).__name__}")
        return head
    if isinstance(getattr(model, "head", None), nn.Module):
        return "head"
    owners = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    if not owners:
        raise ConfigError(field, f"model {type(model).__name__} has no module with parameters")
    return owners[-1]


def _in(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def weights_file(source: str | Path, field: str = "checkpoint") -> Path:
    """The weights file of ``source`` (a file, or a directory holding one of :data:`WEIGHT_FILES`)."""
    path = Path(source).expanduser()
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name
        raise ConfigError(field, f"{path} holds no weights file (looked for {', '.join(WEIGHT_FILES)})")
    if not path.is_file():
        raise ConfigError(field, f"no checkpoint at {path}")
    return path


def mask_file(source: str | Path) -> Path | None:
    """The masks saved beside a checkpoint (a prunezoo job directory's ``masks.safetensors``), if any."""
    path = Path(source).expanduser()
    if not path.is_dir() and path.name != WEIGHT_FILES[0]:  # a plain file: its masks are the zeros in it
        return None
    folder = path if path.is_dir() else path.parent
    return folder / MASK_FILE if (folder / MASK_FILE).is_file() else None


def read_state(source: str | Path, field: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict stored at ``source`` (checksum-verified when prunezoo recorded one)."""
    path = weights_file(source, field)
    try:
        verify_file(path)
    except CorruptFileError as err:
        raise ConfigError(field, f"{path}: {err.reason}") from None
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors' and pickle's own error types
        raise ConfigError(field, f"{path} is not a readable state dict ({type(err).__name__}: {err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(field, f"{path} does not hold a mapping of parameter names to tensors")
    return state


def align_names(own: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with its names moved under the module prefix of the model (``own``: its state dict) that
    matches the most of them, when one matches more than the names as they are: a Hugging Face save of
    the wrapped model (``bert.…`` -> ``hf.bert.…``) or of its encoder alone (``embeddings.…`` ->
    ``hf.bert.embeddings.…``). A state that already fits is returned unchanged."""
    as_is = sum(n in own for n in state)
    if as_is == len(state):
        return state
    prefixes = {name[: i + 1] for name in own for i, c in enumerate(name) if c == "."}
    best, hits = "", as_is
    for prefix in sorted(prefixes, key=len):  # ties: the shortest prefix
        n = sum(prefix + k in own for k in state)
        if n > hits:
            best, hits = prefix, n
    return {best + k: v for k, v in state.items()} if best else state


def load_start(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    head: str,
    new_head: bool = False,
    field: str = "checkpoint",
) -> list[str]:
    """Copy ``state`` into ``model`` in place; returns the names left at init (the head's, if any).

    Outside the head every model tensor must be in ``state`` with the same shape and every tensor of
    ``state`` must be in the model. Under ``head`` tensors are copied when the shapes agree, unless
    ``new_head`` (transfer: the head is always trained anew)."""
    own = model.state_dict()
    state = align_names(own, state)
    body_missing = [n for n in own if n not in state and not _in(n, head)]
    if body_missing:
        raise ConfigError(
            field, f"checkpoint lacks parameter {body_missing[0]!r} of the model ({len(body_missing)} missing)"
        )
    extra = [n for n in state if n not in own and not _in(n, head)]
    if extra:
        raise ConfigError(field, f"checkpoint parameter {extra[0]!r} is not in the model ({len(extra)} unknown)")
    for n, t in state.items():
        if n in own and not _in(n, head) and tuple(t.shape) != tuple(own[n].shape):
            raise ConfigError(
                field,
                f"parameter {n!r} has shape {tuple(t.shape)} in the checkpoint, {tuple(own[n].shape)} in the model",
            )
    kept = []
    with torch.no_grad():
        for n, target in own.items():
            src = state.get(n)
            if src is None or (_in(n, head) and (new_head or src.shape != target.shape)):
                kept.append(n)  # only a head gets here without src: the body was checked above
                continue
            target.copy_(src.to(device=target.device, dtype=target.dtype))
    return kept


def read_masks(
    model: nn.Module, path: str | Path, *, head: str | None = None, new_head: bool = True, field: str = "masks"
) -> MaskSet:
    """A mask file checked against ``model`` (every mask names one of its parameters, same shape).
    Masks under ``head`` are dropped when ``new_head`` (a new head is dense) or when their shape differs."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(field, f"no mask file at {path}")
    try:
        verify_file(path)
        masks = MaskSet.load(path)
    except CorruptFileError as err:
        raise ConfigError(field, f"{path}: {err.reason}") from None
    except Exception as err:  # safetensors' own error type
        raise ConfigError(field, f"{path} is not a readable mask file ({type(err).__name__}: {err})") from None
    params = dict(model.named_parameters())
    kept = {}
    for n, m in masks.items():
        if head is not None and _in(n, head) and (new_head or n not in params or m.shape != params[n].shape):
            continue
        if n not in params:
            raise ConfigError(
                field, f"{path} is a mask file for another model: it masks {n!r}, which {type(model).__name__} lacks"
            )
        if tuple(m.shape) != tuple(params[n].shape):
            raise ConfigError(
                field,
                f"{path} is a mask file for another model: mask {n!r} has shape {tuple(m.shape)}, "
                f"the parameter {tuple(params[n].shape)}",
            )
        kept[n] = m
    if not kept:
        raise ConfigError(field, f"{path} holds no mask for any parameter of the model outside its head")
    return MaskSet(kept)


def start_from(
    model: nn.Module,
    checkpoint: str | Path | None,
    masks: str | Path | None = None,
    *,
    head: str | None = None,
    new_head: bool = False,
    field: str = "model",
) -> MaskSet | None:
    """Load ``checkpoint`` into ``model`` and return the masks to keep fixed: ``masks`` when given, else
    the checkpoint's saved masks (a prunezoo job), else None. The masks are applied to the weights."""
    head = head_prefix(model, head, f"{field}.head")
    if checkpoint is not None:
        load_start(
            model,
            read_state(checkpoint, f"{field}.checkpoint"),
            head=head,
            new_head=new_head,
            field=f"{field}.checkpoint",
        )
    found = masks if masks is not None else (mask_file(checkpoint) if checkpoint is not None else None)
    if found is None:
        return None
    where = f"{field}.masks" if masks is not None else f"{field}.checkpoint"
    ms = read_masks(model, found, head=head, new_head=new_head, field=where)
    ms.apply(model)
    return ms
