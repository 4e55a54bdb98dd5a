"""Calibration (Guo et al. 2017, "On Calibration of Modern Neural Networks").

confidence = max softmax probability; M equal-width bins; ECE = Σ_m |B_m|/n |acc(B_m) − conf(B_m)|,
MCE = max_m |acc(B_m) − conf(B_m)| over non-empty bins.

Bin convention: Guo et al. use right-closed bins ((m−1)/M, m/M] — our default
(``right_closed=True``); torchmetrics uses left-closed [lo, hi) (``right_closed=False``). They
differ only for confidences exactly on an edge. A confidence of exactly 0 (right-closed) or 1
(left-closed) falls outside the half-open range and is put in the first / last bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics; ``accuracy``/``confidence`` are NaN for empty bins."""

    edges: torch.Tensor  # M + 1 edges, 0..1
    counts: torch.Tensor
    accuracy: torch.Tensor
    confidence: torch.Tensor

    @property
    def gaps(self) -> torch.Tensor:
        return (self.accuracy - self.confidence).abs()

    @property
    def ece(self) -> float:
        n = int(self.counts.sum())
        filled = self.counts > 0
        return float((self.counts[filled].double() / n * self.gaps[filled]).sum()) if n else float("nan")

    @property
    def mce(self) -> float:
        filled = self.counts > 0
        return float(self.gaps[filled].max()) if filled.any() else float("nan")


def bin_index(confidence: torch.Tensor, n_bins: int, right_closed: bool = True) -> torch.Tensor:
    scaled = confidence.double() * n_bins
    idx = torch.ceil(scaled) - 1 if right_closed else torch.floor(scaled)
    return idx.clamp(0, n_bins - 1).long()


def reliability_bins(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 15, right_closed: bool = True
) -> ReliabilityBins:
    """Bin predictions by confidence; ``correct`` is a boolean (or 0/1) tensor of the same length."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence, correct = confidence.detach().double().flatten(), correct.detach().double().flatten()
    idx = bin_index(confidence, n_bins, right_closed)
    counts = torch.bincount(idx, minlength=n_bins)
    sum_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, confidence)
    sum_acc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, correct)
    denom = counts.double()
    nan = torch.full((n_bins,), math.nan, dtype=torch.float64)
    return ReliabilityBins(
        edges=torch.linspace(0, 1, n_bins + 1, dtype=torch.float64),
        counts=counts,
        accuracy=torch.where(counts > 0, sum_acc / denom.clamp_min(1), nan),
        confidence=torch.where(counts > 0, sum_conf / denom.clamp_min(1), nan),
    )


def calibration(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, right_closed: bool = True
) -> ReliabilityBins:
    """Top-label reliability bins from class probabilities ``probs`` (N, K) and ``labels`` (N,)."""
    conf, pred = probs.max(dim=1)
    return reliability_bins(conf, pred == labels, n_bins, right_closed)


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, right_closed: bool = True
) -> float:
    return calibration(probs, labels, n_bins, right_closed).ece


def maximum_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, right_closed: bool = True
) -> float:
    return calibration(probs, labels, n_bins, right_closed).mce


def classwise_reliability(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, right_closed: bool = True
) -> dict[str, torch.Tensor]:
    """Class-wise reliability: for each class k, bin p_k over all samples against 1[y = k]; returns
    the per-class accuracy curves (K, M) and their mean and std over classes (NaN-aware) for a band."""
    curves = torch.stack(
        [reliability_bins(probs[:, k], labels == k, n_bins, right_closed).accuracy for k in range(probs.shape[1])]
    )
    filled = ~curves.isnan()
    n = filled.sum(0).double()
    mean = torch.where(filled, curves, 0.0).sum(0) / n.clamp_min(1)
    var = torch.where(filled, (curves - mean) ** 2, 0.0).sum(0) / (n - 1).clamp_min(1)
    nan = torch.full_like(mean, math.nan)
    return {
        "curves": curves,
        "mean": torch.where(n > 0, mean, nan),
        "std": torch.where(n > 1, var.sqrt(), nan),
        "centers": (torch.arange(n_bins, dtype=torch.float64) + 0.5) / n_bins,
    }


def confidence_histogram(probs: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    """Fraction of samples per confidence bin (predicted-class probability)."""
    idx = bin_index(probs.max(dim=1).values, n_bins)
    return torch.bincount(idx, minlength=n_bins).double() / max(len(idx), 1)
