"""Evaluation: loss, accuracy, mean predictive entropy and ECE (15 bins) over a dataset, in eval mode.

``dataset`` is an ArrayDataset (x/y tensors, the fast path), a map-style torch Dataset returning
``(x, y)`` or a DataLoader. Token outputs (logits ``[B, T, C]`` with targets ``[B, T]``) are scored
over the positions whose target is not ``IGNORE_INDEX`` (-100, masked-token modelling).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # F.cross_entropy's default: targets with this value carry no loss and no accuracy

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device, precision: str = "fp32"):
    """``torch.autocast`` for ``precision`` (bf16/fp16) on ``device``; a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST[precision])


def split_batch(batch, field: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of a batch from a Dataset/DataLoader; a clear error for anything else."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(f"{field}: batches must be (inputs, targets) pairs, got {type(batch).__name__}")


def to_device(t: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Move a batch tensor (non-blocking; a no-op when already there), 4-D inputs in channels_last if asked."""
    t = t.to(device, non_blocking=True)
    if channels_last and t.ndim == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def flatten_tokens(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token outputs ``[..., C]`` with targets ``[...]`` -> ``[N, C]``, ``[N]`` over the scored positions
    (target != IGNORE_INDEX); class outputs ``[B, C]`` with ``[B]`` targets are returned as they are."""
    if logits.ndim == 2 and y.ndim == 1:
        return logits, y
    logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    keep = y != IGNORE_INDEX
    return logits[keep], y[keep]


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset,
    batch_size: int = 1024,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for a whole dataset (model put in eval mode, previous mode restored), on the CPU.

    Token outputs of a Dataset/DataLoader come back flattened to the scored positions (``flatten_tokens``).
    """
    from prunezoo.data.loader import has_xy, make_loader  # deferred: prunezoo.data loads its registry

    was_training = model.training
    model.eval()
    device = _model_device(model)
    logits, labels = [], []
    try:
        if has_xy(dataset):
            xs, ys = dataset.x, dataset.y
            for start in range(0, len(ys), batch_size):
                xb = to_device(prepare_inputs(dataset, xs[start : start + batch_size]), device, channels_last)
                with autocast_context(device, precision):
                    out = model(xb)
                logits.append(out.float().cpu())
            return (torch.cat(logits) if logits else torch.empty(0)), ys
        loader = make_loader(
            dataset, batch_size, shuffle=False, augment=False, num_workers=num_workers, field="eval dataset"
        )
        for batch in loader:
            xb, yb = split_batch(batch, "eval dataset")
            xb, yb = to_device(xb, device, channels_last), yb.to(device, non_blocking=True)
            with autocast_context(device, precision):
                out = model(xb)
            out, yb = flatten_tokens(out, yb)
            logits.append(out.float().cpu())
            labels.append(yb.cpu())
        if not logits:
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        return torch.cat(logits), torch.cat(labels)
    finally:
        model.train(was_training)


def prepare_inputs(dataset, xb: torch.Tensor) -> torch.Tensor:
    """A batch of ``dataset``'s stored inputs as models take them: its ``prepare`` (if any), else float."""
    prepare = getattr(dataset, "prepare", None)
    return prepare(xb) if prepare is not None else xb.float()


def evaluate(
    model: nn.Module,
    dataset,
    batch_size: int = 1024,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    num_workers: int = 0,
) -> dict[str, float]:
    """``loss``, ``acc``, ``entropy`` and ``ece`` of ``model`` on ``dataset`` (scored token positions only
    for token outputs). ``precision`` autocasts the forward (bf16/fp16); metrics are computed in fp32."""
    logits, y = predict(
        model, dataset, batch_size, precision=precision, channels_last=channels_last, num_workers=num_workers
    )
    logits, y = flatten_tokens(logits, y)
    if len(y) == 0:
        return {"loss": float("nan"), "acc": float("nan"), "entropy": float("nan"), "ece": float("nan")}
    from prunezoo.metrics.calibration import expected_calibration_error  # deferred: prunezoo.metrics loads torchvision

    log_p = F.log_softmax(logits, dim=1)
    probs = log_p.exp()
    return {
        "loss": float(F.nll_loss(log_p, y)),
        "acc": float((logits.argmax(1) == y).float().mean()),
        "entropy": float(-(probs * log_p).sum(1).mean()),
        "ece": expected_calibration_error(probs, y),
    }
