"""Theory helpers: how wide a random (ER) source network must be to contain a target network."""

from prunezoo.theory.er_width import (
    coverage_probability,
    er_width_lower_bound,
    er_width_requirements,
    width_curve_figure,
)

__all__ = ["coverage_probability", "er_width_lower_bound", "er_width_requirements", "width_curve_figure"]
