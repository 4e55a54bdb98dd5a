"""On-disk layout of a model zoo and its sparsified twins: paths, readers and writers.

Every zoo tool (``prunezoo zoo generate / twin / import / analyze``) reads and writes through this
module; its API is stable. A zoo is a directory::

    <zoo>/
      config.json               {"format": "prunezoo-zoo/1", "kind": "zoo", "dataset": {...},
                                 "model": {...}, ...}  the validated zoo config (see read_zoo_config)
      README.md                 human-readable description
      <model id>/               one directory per model (public ModelZooDataset layout):
        params.json             how the model was built and trained (see below)
        result.json             one JSON object per line, one line per stored epoch, in epoch order:
                                {"epoch": 0, "train_loss", "train_acc", "test_loss", "test_acc",
                                 ["val_loss", "val_acc"], ["sparsity_ratio"]}
                                epoch 0 is the state before training (twins: before fine-tuning)
        checkpoint_000000/      state dict at epoch 0 (init) ... checkpoint_0000NN/ at epoch NN
          state.safetensors     prunezoo's format (plain state dict, no pickle);
          checkpoints           or the public format's torch.save'd state dict (read with
                                weights_only=True, never unpickling arbitrary objects)
        done.json               written atomically LAST: {"epochs": N, "final": {last result line}}.
                                A model directory without it is unfinished (it is redone on resume).
      twins/
        <twin set>/             one set per method and level, e.g. "mp-0.5", "vd", "<study method>-0.9";
          config.json           {"format": ..., "kind": "twins", "method": ..., "level": ..., ...}
          <model id>/           same per-model layout as above; params.json adds
                                "original": "<model id>" (the dense model in <zoo>/), "method",
                                "level" (target sparsity, null for VD) and "source_epoch".

``params.json`` keys (all models written by prunezoo): ``model`` (registry name),
``model_options`` (activation, init, dropout, ...), ``num_classes``, ``input_shape``, ``seed``,
``optimizer``, ``lr``, ``momentum``, ``weight_decay``, ``epochs``, ``batch_size``, ``dataset``
(the zoo's dataset spec). Imported public zoos keep their original keys under ``"public"``.

A zoo's twin set directory is itself laid out like a zoo, so ``list_models(twin_set_dir)`` works.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunezoo.models import build_model
from prunezoo.training import checkpoint
from prunezoo.utils.io import CorruptFileError, file_lock, quarantine, read_json, verify_file, write_json, write_text

FORMAT = "prunezoo-zoo/1"
CONFIG_FILE = "config.json"
README_FILE = "README.md"
PARAMS_FILE = "params.json"
RESULTS_FILE = "result.json"
DONE_FILE = "done.json"
STATE_FILE = "state.safetensors"
PUBLIC_STATE_FILE = "checkpoints"
TWINS_DIR = "twins"
_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d{6})$")


# ----------------------------------------------------------------------------------- paths


def checkpoint_dir(model_dir: str | Path, epoch: int) -> Path:
    """``<model_dir>/checkpoint_{epoch:06d}``."""
    return Path(model_dir) / f"checkpoint_{int(epoch):06d}"


def twins_root(zoo: str | Path) -> Path:
    return Path(zoo) / TWINS_DIR


def twin_set_dir(zoo: str | Path, name: str) -> Path:
    """Directory of twin set ``name`` (e.g. ``"mp-0.5"``, ``"vd"``) of ``zoo``."""
    return twins_root(zoo) / name


def twin_set_name(method: str, level: float | None = None) -> str:
    """``"mp-0.5"`` for a method at a sparsity level, ``"vd"`` for a level-free method."""
    return method if level is None else f"{method}-{float(level):g}"


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / PARAMS_FILE).is_file()


def is_done(model_dir: str | Path) -> bool:
    """True once the model's final marker (``done.json``) has been written."""
    return (Path(model_dir) / DONE_FILE).is_file()


def list_models(zoo: str | Path, *, done_only: bool = True) -> list[Path]:
    """Model directories of a zoo (or of a twin set), sorted by name; unfinished ones skipped
    unless ``done_only=False``. Imported public zoos have no ``done.json``: pass ``done_only=False``
    or import them first (``prunezoo zoo import``)."""
    zoo = Path(zoo)
    if not zoo.is_dir():
        raise FileNotFoundError(f"no zoo directory at {zoo}")
    out = [
        p
        for p in sorted(zoo.iterdir())
        if p.is_dir() and p.name != TWINS_DIR and not p.name.startswith(".") and is_model_dir(p)
    ]
    return [p for p in out if is_done(p)] if done_only else out


def list_twin_sets(zoo: str | Path) -> dict[str, Path]:
    """``{twin set name: directory}`` for every twin set of ``zoo`` (empty if none)."""
    root = twins_root(zoo)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and (p / CONFIG_FILE).is_file()}


def list_epochs(model_dir: str | Path) -> list[int]:
    """Epochs with a stored checkpoint, ascending."""
    out = []
    for p in Path(model_dir).iterdir():
        m = _CHECKPOINT_RE.match(p.name)
        if m and p.is_dir() and ((p / STATE_FILE).is_file() or (p / PUBLIC_STATE_FILE).is_file()):
            out.append(int(m.group(1)))
    return sorted(out)


def original_dir(twin_dir: str | Path) -> Path:
    """The dense model a twin was made from: ``<zoo>/<params["original"]>``."""
    twin_dir = Path(twin_dir)
    zoo = twin_dir.parent.parent.parent  # <zoo>/twins/<set>/<model>
    return zoo / read_params(twin_dir)["original"]


# ----------------------------------------------------------------------------------- readers


def read_zoo_config(zoo: str | Path) -> dict[str, Any]:
    """The zoo's (or twin set's) ``config.json``."""
    path = Path(zoo) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{zoo} is not a zoo: no {CONFIG_FILE}")
    return json.loads(path.read_text())


def read_params(model_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / PARAMS_FILE).read_text())


def read_results(model_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch result lines (a list of dicts, epoch order). Missing file: ``[]``.

    Public-format lines without ``epoch`` get it from ``training_iteration``."""
    path = Path(model_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        if "epoch" not in row and "training_iteration" in row:
            row["epoch"] = int(row["training_iteration"])
        rows.append(row)
    return rows


def read_done(model_dir: str | Path) -> dict[str, Any] | None:
    path = Path(model_dir) / DONE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_state(model_dir: str | Path, epoch: int | None = None) -> dict[str, torch.Tensor]:
    """State dict at ``epoch`` (default: the last stored epoch), from safetensors or the public
    ``checkpoints`` torch file (loaded with ``weights_only=True``; a dict holding the state dict
    under ``"model"``/``"state_dict"`` is unwrapped)."""
    epochs = list_epochs(model_dir)
    if not epochs:
        raise FileNotFoundError(f"no checkpoints in {model_dir}")
    epoch = epochs[-1] if epoch is None else int(epoch)
    ckpt = checkpoint_dir(model_dir, epoch)
    if (ckpt / STATE_FILE).is_file():
        from safetensors.torch import load_file

        return load_file(str(ckpt / STATE_FILE))
    if (ckpt / PUBLIC_STATE_FILE).is_file():
        return read_public_state(ckpt / PUBLIC_STATE_FILE)
    raise FileNotFoundError(f"no checkpoint for epoch {epoch} in {model_dir} (stored: {epochs})")


def read_public_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A public-zoo ``checkpoints`` file: ``torch.load(weights_only=True)``, unwrapped to tensors."""
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict")
    return dict(obj)


def build_member_model(params: Mapping[str, Any]) -> nn.Module:
    """Build (uninitialised-from-disk) the architecture described by a ``params.json`` dict."""
    return build_model(
        params["model"],
        num_classes=int(params["num_classes"]),
        input_shape=tuple(params["input_shape"]),
        **dict(params.get("model_options") or {}),
    )


def load_model(model_dir: str | Path, epoch: int | None = None) -> nn.Module:
    """The model of ``model_dir`` with its state at ``epoch`` (default: last), in eval mode."""
    model = build_member_model(read_params(model_dir))
    model.load_state_dict(load_state(model_dir, epoch))
    return model.eval()


def iter_states(model_dir: str | Path) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """``(epoch, state dict)`` for every stored epoch, ascending."""
    for epoch in list_epochs(model_dir):
        yield epoch, load_state(model_dir, epoch)


def load_zoo_data(spec: Mapping[str, Any]):
    """The :class:`~prunezoo.data.DataSplits` of a zoo's ``config["dataset"]`` (or a twin set's).

    Keys: those of ``prunezoo.data.load_dataset`` (``name``, ``options``, ``val_fraction``,
    ``split_seed``, ...) plus ``max_train`` / ``max_test``: keep a seeded random subset
    (seed ``split_seed``) of that many samples, so small CPU zoos train on a fixed subset.
    """
    from prunezoo.data import load_dataset

    spec = dict(spec)
    max_train, max_test = spec.pop("max_train", None), spec.pop("max_test", None)
    options = dict(spec.pop("options", None) or {})
    splits = load_dataset(spec.pop("name"), **spec, **options)
    seed = int(spec.get("split_seed", 42))
    for split, limit in (("train", max_train), ("test", max_test)):
        data = getattr(splits, split)
        if limit is not None and int(limit) < len(data):
            g = torch.Generator().manual_seed(seed)
            idx = torch.randperm(len(data), generator=g)[: int(limit)].sort().values
            setattr(splits, split, data.subset(idx))
    return splits


# ----------------------------------------------------------------------------------- writers


def write_zoo_config(zoo: str | Path, config: Mapping[str, Any], readme: str | None = None) -> None:
    """Write ``config.json`` (``format`` added) and, if given, ``README.md``."""
    zoo = Path(zoo)
    zoo.mkdir(parents=True, exist_ok=True)
    write_json(zoo / CONFIG_FILE, {"format": FORMAT, **dict(config)})
    if readme is not None:
        write_text(zoo / README_FILE, readme)


def write_params(model_dir: str | Path, params: Mapping[str, Any]) -> None:
    write_json(Path(model_dir) / PARAMS_FILE, dict(params))


def write_results(model_dir: str | Path, rows: list[Mapping[str, Any]]) -> None:
    """Rewrite ``result.json`` atomically with one JSON line per row."""
    text = "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in rows)
    write_text(Path(model_dir) / RESULTS_FILE, text)


def save_state(model_dir: str | Path, epoch: int, state: Mapping[str, torch.Tensor]) -> Path:
    """Write the state dict of ``epoch`` to ``checkpoint_{epoch:06d}/state.safetensors`` (atomic)."""
    ckpt = checkpoint_dir(model_dir, epoch)
    ckpt.mkdir(parents=True, exist_ok=True)
    checkpoint.save_state(ckpt / STATE_FILE, dict(state))
    return ckpt


def mark_done(model_dir: str | Path, rows: list[Mapping[str, Any]], **extra: Any) -> None:
    """Write the final marker (atomically, last): the model is complete."""
    write_json(
        Path(model_dir) / DONE_FILE,
        {"epochs": rows[-1]["epoch"] if rows else 0, "final": dict(rows[-1]) if rows else {}, **extra},
    )


def clear_model_dir(model_dir: str | Path) -> None:
    """Remove an unfinished model directory so it can be redone from scratch."""
    shutil.rmtree(model_dir, ignore_errors=True)


def model_done(model_dir: Path) -> bool:
    """Finished and intact (a zoo member or a twin): a damaged marker, result or last state is moved to
    ``<parent>/quarantine/`` (logged) and the model counts as unfinished, so it is redone."""
    if not is_done(model_dir):
        return False
    try:
        read_json(model_dir / DONE_FILE)
        read_json(model_dir / PARAMS_FILE)
        if (model_dir / RESULTS_FILE).exists():  # JSON lines: checksum only
            verify_file(model_dir / RESULTS_FILE)
        epochs = list_epochs(model_dir)
        if epochs:
            checked_state(model_dir, epochs[-1])
    except CorruptFileError as err:
        quarantine(err.path, err.reason, into=model_dir.parent)
        (model_dir / DONE_FILE).unlink(missing_ok=True)
        return False
    return True


def model_lock(parent: Path, name: str):
    """One process per model directory (a zoo member or a twin): ``<parent>/.<name>.lock``, an flock;
    another process waits, then reads the model back."""
    parent.mkdir(parents=True, exist_ok=True)
    return file_lock(parent / f".{name}.lock")


def checked_state(model_dir: Path, epoch: int):
    """The state of ``epoch``, its checksum verified; a torn file raises CorruptFileError."""
    path = checkpoint_dir(model_dir, epoch) / STATE_FILE
    if path.exists():
        verify_file(path)
    try:
        return load_state(model_dir, epoch)
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors' own error type for torn files
        raise CorruptFileError(path, f"unreadable state ({err})") from None
