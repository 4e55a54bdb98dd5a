"""Training: config, optimizers/LR schedules, trainer, callbacks, checkpoints, evaluation."""

from prunezoo.training.callbacks import Callback, EnforceMasks, SnapshotAtStep
from prunezoo.training.checkpoint import load_checkpoint, save_checkpoint
from prunezoo.training.config import TrainingConfig
from prunezoo.training.evaluate import evaluate, predict
from prunezoo.training.runtime import RuntimeConfig, resolve_device
from prunezoo.training.seeding import seed_everything
from prunezoo.training.trainer import Trainer

__all__ = [
    "Callback",
    "EnforceMasks",
    "RuntimeConfig",
    "SnapshotAtStep",
    "TrainingConfig",
    "Trainer",
    "evaluate",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
