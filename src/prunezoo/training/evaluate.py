"""Evaluation: loss, accuracy, mean predictive entropy and ECE (15 bins) over a dataset, in eval mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, dataset, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for a whole dataset (model put in eval mode, previous mode restored)."""
    was_training = model.training
    model.eval()
    xs, ys = dataset.x, dataset.y
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    logits = []
    for start in range(0, len(ys), batch_size):
        xb = prepare_inputs(dataset, xs[start : start + batch_size]).to(device)
        logits.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(logits) if logits else torch.empty(0), ys


def prepare_inputs(dataset, xb: torch.Tensor) -> torch.Tensor:
    """A batch of ``dataset``'s stored inputs as models take them: its ``prepare`` (if any), else float."""
    prepare = getattr(dataset, "prepare", None)
    return prepare(xb) if prepare is not None else xb.float()


def evaluate(model: nn.Module, dataset, batch_size: int = 1024) -> dict[str, float]:
    logits, y = predict(model, dataset, batch_size)
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
