"""Metrics beyond accuracy: calibration, training diagnostics."""

from prunezoo.metrics.calibration import (
    ReliabilityBins,
    calibration,
    classwise_reliability,
    confidence_histogram,
    expected_calibration_error,
    maximum_calibration_error,
    reliability_bins,
)
from prunezoo.metrics.diagnostics import hessian_top_eigenvalue, interpolation_curve, recompute_batchnorm
from prunezoo.metrics.posterior import posterior_gap

__all__ = [
    "ReliabilityBins",
    "calibration",
    "classwise_reliability",
    "confidence_histogram",
    "expected_calibration_error",
    "hessian_top_eigenvalue",
    "interpolation_curve",
    "maximum_calibration_error",
    "posterior_gap",
    "recompute_batchnorm",
    "reliability_bins",
]
