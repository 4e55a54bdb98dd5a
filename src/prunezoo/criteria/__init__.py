"""Pruning criteria. Adding one = one small function decorated with ``@register_criterion``.

Registered: ``magnitude``, ``random`` (baselines), ``snip``, ``grasp``, ``synflow`` (at
initialisation; SynFlow is meant for ``prunezoo.sparsity.rounds.prune_iteratively``), ``taylor``,
``obd``, ``obs`` (trained networks; data-dependent ones need ``batches``). Movement pruning
needs training-time state: use ``MovementTracker`` and ``tracker.criterion`` (in studies:
``criterion: movement`` with kind ``gmp``, see ``TRAINING_CRITERIA``). ``oracle_scores``
and ``criterion_quality`` measure how well a criterion ranks the true loss change.
"""

from prunezoo.criteria import fisher, grasp, magnitude, obs, random, snip, synflow, taylor  # noqa: F401  (registers)
from prunezoo.criteria.base import CRITERIA, Criterion, ScoringContext, get_criterion, register_criterion
from prunezoo.criteria.fisher import diagonal_fisher, make_obd
from prunezoo.criteria.grasp import make_grasp
from prunezoo.criteria.movement import TRAINING_CRITERIA, MovementTracker, make_tracker
from prunezoo.criteria.obs import fisher_inverse_blocks, make_obs, obs_prune, obs_saliency, obs_update
from prunezoo.criteria.oracle import criterion_quality, oracle_scores

__all__ = [
    "CRITERIA",
    "Criterion",
    "MovementTracker",
    "ScoringContext",
    "TRAINING_CRITERIA",
    "criterion_quality",
    "diagonal_fisher",
    "fisher_inverse_blocks",
    "get_criterion",
    "make_grasp",
    "make_obd",
    "make_obs",
    "make_tracker",
    "obs_prune",
    "obs_saliency",
    "obs_update",
    "oracle_scores",
    "register_criterion",
]
