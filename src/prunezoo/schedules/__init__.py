"""Schedules say when and how much to prune; they drive the trainer through callbacks."""

from prunezoo.schedules.acdc import ACDC, acdc_phases
from prunezoo.schedules.base import MaskingSchedule
from prunezoo.schedules.dst import SET, DynamicSparseTraining, RigL, drop_fraction
from prunezoo.schedules.gradual import GradualMagnitudePruning, cubic_sparsity
from prunezoo.schedules.iterative import IterativeSchedule, LevelResult, ResetMode, reset_parameters, run_iterative
from prunezoo.schedules.oneshot import OneShot

__all__ = [
    "ACDC",
    "DynamicSparseTraining",
    "RigL",
    "SET",
    "acdc_phases",
    "drop_fraction",
    "GradualMagnitudePruning",
    "IterativeSchedule",
    "LevelResult",
    "MaskingSchedule",
    "OneShot",
    "ResetMode",
    "cubic_sparsity",
    "reset_parameters",
    "run_iterative",
]
