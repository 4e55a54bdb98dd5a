"""A plain, fast trainer. It knows no pruning method: schedules and masks act through callbacks."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.training.callbacks import Callback, CallbackList
from prunezoo.training.checkpoint import load_checkpoint, save_checkpoint
from prunezoo.training.config import TrainingConfig
from prunezoo.training.evaluate import evaluate
from prunezoo.training.optim import build_optimizer, lr_at
from prunezoo.utils.progress import ProgressBar


class Trainer:
    """Trains ``model`` in place on ``train_data`` according to ``config``.

    ``eval_sets`` maps a prefix (``"test"``, ``"val"``) to a dataset evaluated after every epoch;
    per-epoch metrics are ``train_loss``, ``train_acc``, ``lr``, ``step``, ``epoch``, ``time_s`` and
    ``<prefix>_loss/_acc/_entropy``. ``fit(start_step=k)`` resumes the data order and LR schedule at
    step k (lottery-ticket rewinding); ``fit(resume_from=dir)`` restores a checkpoint first.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data,
        config: TrainingConfig,
        *,
        eval_sets: Mapping[str, object] | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
        description: str = "train",
    ):
        from prunezoo.data import BatchLoader

        self.model = model
        self.config = config
        self.loader = BatchLoader(train_data, config.batch_size, shuffle=True, seed=config.seed)
        self.eval_sets = dict(eval_sets or {})
        self.callbacks = CallbackList(callbacks)
        self.optimizer = build_optimizer(model, config)
        self.steps_per_epoch = max(1, len(self.loader))
        self.total_steps = config.steps if config.steps is not None else config.epochs * self.steps_per_epoch
        self.start_step = 0
        self.step = 0
        self.history: list[dict] = []
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.description = description
        self.stop_requested = False

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        out = {}
        for prefix, ds in self.eval_sets.items():
            for k, v in evaluate(self.model, ds, self.config.eval_batch_size).items():
                out[f"{prefix}_{k}"] = v
        return out

    # -- training ---------------------------------------------------------------------------------
    def fit(
        self,
        start_step: int = 0,
        *,
        resume_from: str | Path | None = None,
        checkpoint_dir: str | Path | None = None,
        eval_initial: bool = False,
    ) -> list[dict]:
        if resume_from is not None:
            meta = load_checkpoint(resume_from, self.model, self.optimizer)
            start_step = meta["step"]
            self.history = list(meta["extra"].get("history", []))
            self._restore_callbacks(meta["extra"].get("callbacks", {}), meta["tensors"])
        if not 0 <= start_step <= self.total_steps:
            raise ValueError(f"start_step={start_step} outside [0, {self.total_steps}]")
        self.start_step = self.step = start_step
        spe = self.steps_per_epoch
        self.model.train()
        self.callbacks.on_train_begin(self)
        if eval_initial and start_step == 0:
            self.history.append({"epoch": 0, "step": 0, **self.evaluate()})

        with ProgressBar(self.description, self.total_steps, completed=start_step, enabled=self.progress) as bar:
            epoch = start_step // spe
            while self.step < self.total_steps and not self.stop_requested:
                t0 = time.perf_counter()
                self.loader.set_epoch(epoch)
                self.callbacks.on_epoch_begin(self, epoch)
                skip = self.step - epoch * spe  # batches already consumed when resuming mid-epoch
                loss_sum = torch.zeros(())
                correct = torch.zeros((), dtype=torch.long)
                seen = 0
                for i, (xb, yb) in enumerate(self.loader):
                    if i < skip:
                        continue
                    if self.step >= self.total_steps or self.stop_requested:
                        break
                    loss, logits = self._train_step(xb, yb)
                    loss_sum += loss.detach() * len(yb)
                    correct += (logits.detach().argmax(1) == yb).sum()
                    seen += len(yb)
                    self.callbacks.on_step_end(self, self.step - 1, loss.detach())  # a tensor: no per-step device sync
                    bar.advance()
                metrics = {
                    "epoch": epoch + 1,
                    "step": self.step,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "train_loss": float(loss_sum) / max(seen, 1),
                    "train_acc": float(correct) / max(seen, 1),
                    **self.evaluate(),
                    "time_s": time.perf_counter() - t0,
                }
                self.history.append(metrics)
                self.callbacks.on_epoch_end(self, epoch, metrics)
                if checkpoint_dir is not None:
                    cb_meta, cb_tensors = self._callback_states()
                    save_checkpoint(
                        checkpoint_dir,
                        self.model,
                        self.optimizer,
                        step=self.step,
                        extra={"history": self.history, "callbacks": cb_meta},
                        tensors=cb_tensors,
                    )
                epoch += 1
        self.callbacks.on_train_end(self)
        return self.history

    # Callbacks with state (e.g. a schedule's current masks) expose state_dict/load_state_dict
    # returning {"meta": json-able, "tensors": {name: tensor}}; it travels inside the checkpoint.
    def _callback_states(self) -> tuple[dict, dict[str, torch.Tensor]]:
        meta, tensors = {}, {}
        for i, cb in enumerate(self.callbacks.callbacks):
            if hasattr(cb, "state_dict"):
                st = cb.state_dict()
                meta[str(i)] = st.get("meta", {})
                tensors.update({f"{i}/{k}": v for k, v in st.get("tensors", {}).items()})
        return meta, tensors

    def _restore_callbacks(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        for i, cb in enumerate(self.callbacks.callbacks):
            if hasattr(cb, "load_state_dict") and str(i) in meta:
                prefix = f"{i}/"
                own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                cb.load_state_dict({"meta": meta[str(i)], "tensors": own})

    def _train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.step
        lr = lr_at(step, self.total_steps, self.steps_per_epoch, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.callbacks.on_step_begin(self, step)
        logits = self.model(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=self.config.label_smoothing)
        extra = self.callbacks.extra_loss(self, step)
        objective = loss if extra is None else loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.callbacks.on_after_backward(self, step)
        self.optimizer.step()
        self.step = step + 1
        return loss, logits
