"""Typed training configuration (pydantic): every bad value is an error naming its field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prunezoo.errors import ConfigError
from prunezoo.utils.plugins import is_import_path, load_import_path

# Fields that say how a run is carried out, not what it computes: left out of study hashes and job ids.
UNHASHED_TRAINING_FIELDS = frozenset({"checkpoint_every"})


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # lr: .inf would only fail mid-training

    epochs: int = Field(10, ge=0, description="training length in epochs (ignored if steps is set)")
    steps: int | None = Field(None, ge=0, description="training length in optimizer steps")
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "step", "cosine", "linear"] = "constant"
    milestones: list[float] = Field(default_factory=list, description="step schedule, in epochs")
    gamma: float = Field(0.1, gt=0)
    warmup_epochs: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    loss: str | None = Field(
        None,
        description="import path 'module:attr' of a loss(logits, targets) -> scalar replacing the "
        "default cross-entropy for training (evaluation losses stay cross-entropy)",
    )
    eval_batch_size: int = Field(1024, ge=1)
    checkpoint_every: int = Field(
        1,
        ge=1,
        description="write the resume checkpoint every k epochs (and after the last one): a larger k saves "
        "time on tiny epochs, a kill then loses up to k epochs of work; results are identical, so it is not "
        "part of a study's hash",
    )
    seed: int = 0

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str | None) -> str | None:
        if v is not None:
            if not is_import_path(v):
                raise ValueError(f"expected an import path 'module:attr' of a loss function, got {v!r}")
            try:  # imports now: a bad path is an error before anything runs
                load_import_path(v, "loss")
            except ConfigError as err:
                raise ValueError(err.message) from None
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.nesterov and self.optimizer != "sgd":
            raise ValueError("nesterov applies to optimizer 'sgd' only")
        if self.milestones and sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        return self
