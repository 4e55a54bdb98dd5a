"""Pruning criteria. Adding one = one small function decorated with ``@register_criterion``.

Registered: ``magnitude``, ``random`` (baselines), ``snip``, ``grasp``, ``synflow`` (at
initialisation; SynFlow is meant for ``prunezoo.pruning.rounds.prune_iteratively``), ``taylor``,
``obd``, ``obs`` (trained networks; data-dependent ones need ``batches``). Movement pruning
needs training-time state: use ``MovementTracker`` and ``tracker.criterion`` (in studies:
``criterion: movement`` with kind ``gmp``, see ``TRAINING_CRITERIA``). ``oracle_scores``
and ``criterion_quality`` measure how well a criterion ranks the true loss change.

Scoring mode: the criteria that run the model set its train/eval mode themselves (and restore it),
following each paper's code (``SCORING_MODES``): SNIP, OBD, OBS (WoodFisher) and SynFlow in eval
mode, GraSP and Taylor in train mode, so scores never depend on the mode the model is left in.
``criterion_with_mode(name, mode)`` (study option ``score_mode``) overrides it; the oracle always
measures the loss in eval mode.
"""

from collections.abc import Callable

from prunezoo.criteria import fisher, grasp, magnitude, obs, random, snip, synflow, taylor  # noqa: F401  (registers)
from prunezoo.criteria._common import MODES, check_mode
from prunezoo.criteria.base import CRITERIA, Criterion, ScoringContext, get_criterion, register_criterion
from prunezoo.criteria.fisher import diagonal_fisher, make_obd
from prunezoo.criteria.grasp import make_grasp
from prunezoo.criteria.movement import TRAINING_CRITERIA, MovementTracker, make_tracker
from prunezoo.criteria.obs import fisher_inverse_blocks, make_obs, obs_saliency, obs_update
from prunezoo.criteria.oracle import criterion_quality, oracle_scores
from prunezoo.criteria.snip import make_snip
from prunezoo.criteria.synflow import make_synflow
from prunezoo.criteria.taylor import make_taylor
from prunezoo.errors import ConfigError
from prunezoo.utils.plugins import import_submodules

# a new built-in module registers itself: no import line to add here
import_submodules(__name__, __path__)

# Registered criteria that run the model: their factory (taking ``mode=``) and the paper's mode.
MODE_FACTORIES: dict[str, Callable[..., Criterion]] = {
    "snip": make_snip,
    "grasp": make_grasp,
    "taylor": make_taylor,
    "obd": make_obd,
    "obs": make_obs,
    "synflow": make_synflow,
}
SCORING_MODES: dict[str, str] = {
    "snip": snip.MODE,
    "grasp": grasp.MODE,
    "taylor": taylor.MODE,
    "obd": fisher.MODE,
    "obs": obs.MODE,
    "synflow": synflow.MODE,
}


def criterion_with_mode(name: str, mode: str | None) -> str | Criterion:
    """The registered criterion ``name`` scoring in ``mode`` ("train"/"eval"); None = the paper's."""
    if mode is None:
        return name
    check_mode(mode, "score_mode")
    if name not in MODE_FACTORIES:
        raise ConfigError(
            "score_mode",
            f"criterion {name!r} does not run the model, so it has no scoring mode; "
            f"criteria with one: {sorted(MODE_FACTORIES)}",
        )
    return MODE_FACTORIES[name](mode=mode)


__all__ = [
    "CRITERIA",
    "MODES",
    "MODE_FACTORIES",
    "SCORING_MODES",
    "Criterion",
    "MovementTracker",
    "ScoringContext",
    "TRAINING_CRITERIA",
    "criterion_quality",
    "criterion_with_mode",
    "diagonal_fisher",
    "fisher_inverse_blocks",
    "get_criterion",
    "make_grasp",
    "make_obd",
    "make_obs",
    "make_snip",
    "make_synflow",
    "make_taylor",
    "make_tracker",
    "obs_saliency",
    "obs_update",
    "oracle_scores",
    "register_criterion",
]
