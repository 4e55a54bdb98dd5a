"""A plain, fast trainer. It knows no pruning method: schedules and masks act through callbacks."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.training.callbacks import Callback, CallbackList
from prunezoo.training.checkpoint import load_checkpoint, save_checkpoint
from prunezoo.training.config import TrainingConfig
from prunezoo.training.evaluate import IGNORE_INDEX, autocast_context, evaluate, split_batch, to_device
from prunezoo.training.optim import build_optimizer, lr_at
from prunezoo.training.runtime import RuntimeConfig
from prunezoo.utils.progress import ProgressBar

if TYPE_CHECKING:
    from prunezoo.sparsity.masks import MaskHandle


class Trainer:
    """Trains ``model`` in place on ``train_data`` according to ``config``.

    ``eval_sets`` maps a prefix (``"test"``, ``"val"``) to a dataset evaluated after every epoch;
    per-epoch metrics are ``train_loss``, ``train_acc``, ``lr``, ``step``, ``epoch``, ``time_s`` and
    ``<prefix>_loss/_acc/_entropy``. ``fit(start_step=k)`` resumes the data order and LR schedule at
    step k (lottery-ticket rewinding); ``fit(resume_from=dir)`` restores a checkpoint first.

    ``train_data`` (and each eval set) is one of:

    - an ArrayDataset (x/y tensors): the fast in-memory :class:`~prunezoo.data.BatchLoader`;
    - a map-style ``torch.utils.data.Dataset`` returning ``(x, y)``: batched by a
      :class:`~prunezoo.data.loader.DatasetLoader` in an order fixed by ``(config.seed, epoch)``,
      with random transforms inside the dataset seeded per batch; a mid-epoch resume skips the
      consumed batches by index. Resume is exact whatever ``runtime.num_workers``;
    - a ready ``DataLoader``, used as is (``set_epoch(epoch)`` is called on its sampler / batch sampler
      when they have one; the states of its own ``generator`` and its sampler's are saved in
      checkpoints). Resuming from an end-of-epoch checkpoint is exact when its randomness comes from
      those generators or the global torch RNG; a mid-epoch resume iterates and drops the consumed
      batches, and is exact only when the loader's order is a function of the epoch (``shuffle=False``
      or a sampler seeded per ``set_epoch``); otherwise it resumes with different batches.

    ``runtime`` (a :class:`RuntimeConfig`) says where and how: the model is moved to its device in
    ``__init__``; bf16/fp16 autocast the forward and the loss only (fp16 with a GradScaler, its state
    in the checkpoint); ``compile`` compiles the training forward (``self.model`` stays the original
    module: checkpoints, callbacks and evaluation use it). ``runtime=None`` keeps the model where it
    is, in fp32. ``loss(logits, targets)`` replaces the default cross-entropy, which also takes token
    outputs ``[B, T, C]`` with targets ``[B, T]`` (-100 = no target; accuracy counts scored tokens
    only). ``masks`` keeps a MaskSet enforced for the whole fit (pruned weights stay exactly 0).
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
        runtime: RuntimeConfig | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        masks: Mapping[str, torch.Tensor] | None = None,
    ):
        from prunezoo.data.loader import make_loader
        from prunezoo.sparsity.masks import MaskSet

        self.runtime = runtime if runtime is not None else RuntimeConfig()
        # None: today's behaviour, the model stays where it is (a GPU only when the caller asked for one)
        self.device = runtime.resolve() if runtime is not None else _model_device(model)
        self.model = model.to(self.device)
        if self.runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config = config
        self._pin = self.device.type == "cuda"
        self.loader = make_loader(
            train_data,
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            num_workers=self.runtime.num_workers,
            pin_memory=self._pin,
            field="train_data",
        )
        self.eval_sets = dict(eval_sets or {})
        self._eval_loaders: dict[str, tuple[object, object]] = {}
        for prefix, ds in self.eval_sets.items():
            self._eval_loader(prefix, ds)  # a bad eval set fails here, before any training
        self.callbacks = CallbackList(callbacks)
        if loss is None and config.loss is not None:  # a loss named by import path in the config
            from prunezoo.utils.plugins import load_import_path

            loss = load_import_path(config.loss, "training.loss")
        self.loss_fn = loss if loss is not None else cross_entropy_loss(config.label_smoothing)
        self.masks = masks if masks is None or isinstance(masks, MaskSet) else MaskSet(masks)
        self._mask_handle: MaskHandle | None = None
        self.optimizer = build_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.runtime.precision == "fp16" else None
        # compiled forward only: state_dict keys, hooks and checkpoints stay the original module's
        self._forward = torch.compile(self.model) if self.runtime.compile else self.model
        try:
            self.steps_per_epoch = max(1, len(self.loader))
        except TypeError:  # a DataLoader over an IterableDataset
            raise TypeError(
                "train_data: the DataLoader has no length (steps per epoch); use a map-style Dataset"
            ) from None
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
        rt = self.runtime
        for prefix, ds in self.eval_sets.items():
            data = self._eval_loader(prefix, ds)
            metrics = evaluate(
                self.model, data, self.config.eval_batch_size, precision=rt.precision, channels_last=rt.channels_last
            )
            for k, v in metrics.items():
                out[f"{prefix}_{k}"] = v
        return out

    def _eval_loader(self, prefix: str, ds):
        """An ArrayDataset as is (evaluate's fast path); a Dataset/DataLoader through one loader kept
        for the whole run (its workers are started once)."""
        from prunezoo.data.loader import has_xy, make_loader

        if has_xy(ds):
            return ds
        cached = self._eval_loaders.get(prefix)
        if cached is None or cached[0] is not ds:
            loader = make_loader(
                ds,
                self.config.eval_batch_size,
                shuffle=False,
                augment=False,
                num_workers=self.runtime.num_workers,
                pin_memory=self._pin,
                field=f"eval_sets[{prefix!r}]",
            )
            cached = self._eval_loaders[prefix] = (ds, loader)
        return cached[1]

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
            self._restore_runtime_state(meta["extra"], meta["tensors"])
        if not 0 <= start_step <= self.total_steps:
            raise ValueError(f"start_step={start_step} outside [0, {self.total_steps}]")
        self.start_step = self.step = start_step
        spe = self.steps_per_epoch
        self.model.train()
        if self.masks is not None:
            self._mask_handle = self.masks.attach(self.model, self.optimizer)
        try:
            return self._fit(start_step, spe, checkpoint_dir, eval_initial)
        finally:
            if self._mask_handle is not None:
                self._mask_handle.remove()
                self._mask_handle = None

    def _fit(self, start_step: int, spe: int, checkpoint_dir, eval_initial: bool) -> list[dict]:
        from prunezoo.data.loader import set_loader_epoch

        self.callbacks.on_train_begin(self)
        if eval_initial and start_step == 0:
            self.history.append({"epoch": 0, "step": 0, **self.evaluate()})

        with ProgressBar(self.description, self.total_steps, completed=start_step, enabled=self.progress) as bar:
            epoch = start_step // spe
            while self.step < self.total_steps and not self.stop_requested:
                t0 = time.perf_counter()
                set_loader_epoch(self.loader, epoch)
                self.callbacks.on_epoch_begin(self, epoch)
                skip = self.step - epoch * spe  # batches already consumed when resuming mid-epoch
                loss_sum = torch.zeros((), device=self.device)
                correct = torch.zeros((), dtype=torch.long, device=self.device)
                seen: int | torch.Tensor = 0  # scored targets (an int, or a device tensor for token targets: no sync)
                scored = True
                for batch in self._batches(skip):
                    if self.step >= self.total_steps or self.stop_requested:
                        break
                    xb, yb = split_batch(batch, "train_data")
                    xb, yb = (
                        to_device(xb, self.device, self.runtime.channels_last),
                        yb.to(self.device, non_blocking=True),
                    )
                    loss, logits = self._train_step(xb, yb)
                    n, hits = batch_counts(logits.detach(), yb)
                    loss_sum += loss.detach() * n
                    if hits is None:
                        scored = False
                    else:
                        correct += hits
                    seen += n
                    self.callbacks.on_step_end(self, self.step - 1, loss.detach())  # a tensor: no per-step device sync
                    bar.advance()
                count = float(seen)
                metrics = {
                    "epoch": epoch + 1,
                    "step": self.step,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "train_loss": float(loss_sum) / max(count, 1),
                    "train_acc": float(correct) / max(count, 1) if scored else float("nan"),
                    **self.evaluate(),
                    "time_s": time.perf_counter() - t0,
                }
                self.history.append(metrics)
                self.callbacks.on_epoch_end(self, epoch, metrics)
                last = self.step >= self.total_steps or self.stop_requested
                if checkpoint_dir is not None and (last or (epoch + 1) % self.config.checkpoint_every == 0):
                    cb_meta, cb_tensors = self._callback_states()
                    extra = {"history": self.history, "callbacks": cb_meta}
                    if self.scaler is not None:
                        extra["grad_scaler"] = self.scaler.state_dict()
                    for name, g in self._loader_generators().items():
                        cb_tensors[f"{_LOADER_KEY}{name}"] = g.get_state()
                    save_checkpoint(
                        checkpoint_dir,
                        self.model,
                        self.optimizer,
                        step=self.step,
                        extra=extra,
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

    def _batches(self, skip: int) -> Iterator:
        """The batches of the current epoch from batch ``skip`` on."""
        from prunezoo.data.loader import DatasetLoader

        if isinstance(self.loader, DatasetLoader):
            self.loader.set_start(skip)  # skipped by index: nothing loaded for them
            return iter(self.loader)
        # BatchLoader: skipped batches are drawn (their augmentation draws keep the rest identical);
        # a user's DataLoader can only be iterated
        return itertools.islice(iter(self.loader), skip, None)

    def _loader_generators(self) -> dict[str, torch.Generator]:
        """The generators a user's DataLoader draws its order / worker seeds from (saved in checkpoints)."""
        loader = self.loader
        if not isinstance(loader, torch.utils.data.DataLoader):
            return {}
        bs = loader.batch_sampler
        owners = {
            "loader": loader,
            "sampler": loader.sampler,
            "batch_sampler": bs,
            "batch_sampler.sampler": getattr(bs, "sampler", None),
        }
        found: dict[str, torch.Generator] = {}
        for name, obj in owners.items():
            g = getattr(obj, "generator", None)
            if isinstance(g, torch.Generator) and all(g is not h for h in found.values()):
                found[name] = g
        return found

    def _restore_runtime_state(self, extra: dict, tensors: dict[str, torch.Tensor]) -> None:
        if self.scaler is not None and extra.get("grad_scaler"):
            self.scaler.load_state_dict(extra["grad_scaler"])
        for name, g in self._loader_generators().items():
            state = tensors.get(f"{_LOADER_KEY}{name}")
            if state is not None:
                g.set_state(state)

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
        with autocast_context(self.device, self.runtime.precision):
            logits = self._forward(xb)
            loss = self.loss_fn(logits, yb)
        extra = self.callbacks.extra_loss(self, step)
        objective = loss if extra is None else loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            objective.backward()
            self.callbacks.on_after_backward(self, step)
            self.optimizer.step()
        else:
            self.scaler.scale(objective).backward()
            self.scaler.unscale_(self.optimizer)  # callbacks (clipping, RigL growth) see true gradients
            self.callbacks.on_after_backward(self, step)
            self.scaler.step(self.optimizer)  # skipped on inf/nan gradients; mask hooks run inside step()
            self.scaler.update()
        self.step = step + 1
        return loss, logits


_LOADER_KEY = "trainer/generator/"  # checkpoint tensors of a DataLoader's generators (callbacks use "<i>/")


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def cross_entropy_loss(label_smoothing: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The default loss: cross-entropy of class logits ``[B, C]`` with labels ``[B]``, or of token
    logits ``[B, T, C]`` with targets ``[B, T]`` averaged over the targets that are not -100."""

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.ndim == 2 and targets.ndim == 1:
            return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        flat, y = logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
        total = F.cross_entropy(flat, y, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing, reduction="sum")
        return total / (y != IGNORE_INDEX).sum().clamp_min(1)  # a batch without targets gives 0, not nan

    return loss


def batch_counts(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int | torch.Tensor, torch.Tensor | None]:
    """(scored targets, correct argmax predictions) of a batch; token targets count only those != -100.
    ``None`` correct when the targets are not class indices (accuracy undefined, e.g. a custom regression loss)."""
    if logits.ndim == 2 and targets.ndim == 1 and not targets.is_floating_point():
        return len(targets), (logits.argmax(1) == targets).sum()
    if targets.is_floating_point() or logits.shape[:-1] != targets.shape:
        return len(targets), None
    valid = targets != IGNORE_INDEX
    return valid.sum(), ((logits.argmax(-1) == targets) & valid).sum()
