"""Population-batched training: many small models of one architecture trained at once.

Members' parameters are stacked along a leading "member" dimension and the model runs through
``torch.func.functional_call`` under ``torch.func.vmap``; one autograd backward of the summed
per-member losses gives every member its own gradient (members share no parameters, so the sum
decouples exactly). The optimizer, learning-rate schedule and label smoothing are those of
``prunezoo.training`` (:func:`training_config` gives each member its :class:`TrainingConfig`;
:class:`~prunezoo.training.optim.StackedOptimizer` runs ``torch.optim``'s SGD/Adam/AdamW update on the
stacked tensors with per-member hyperparameters and :func:`~prunezoo.training.optim.lr_at` schedules),
so a member matches :class:`~prunezoo.training.Trainer` run alone up to float rounding.

Conventions shared with the per-model path (:func:`train_member`, ``experiments.jobs``):

- init: ``seed_everything(member.seed)`` then ``build_model(...)``;
- data order: epoch ``e`` of member ``m`` is ``BatchLoader(train, batch_size, seed=m.seed).order(e)``
  (``epoch_seed(seed, e)``); the last batch may be smaller (no ``drop_last``);
- loss: mean cross-entropy per batch (with the member's label smoothing); masks re-applied after
  every optimizer step (pruned weights stay exactly 0, as ``MaskSet.attach`` does);
- metrics: ``train_loss/train_acc`` of an epoch are running means over its batches (the Trainer's
  definition); at epoch 0 (the init state) they are evaluated on the training split instead.

Members whose settings change the computation graph (optimizer kind, activation, dropout rate)
train in separate groups, one group after the other. Each member gets its own dropout masks
(element-wise dropout on the stacked channels, or ``vmap(randomness="different")``), drawn from a generator
seeded by the group's member seeds, so runs are deterministic but dropout draws differ from a
member trained alone (equal in distribution, not bit-for-bit).

How members run (``conv=``): by default ``"stacked"`` (see :class:`_Stacked`): one network whose
channels are the members' channels side by side, grouped convolutions in channels-last memory and
Linear layers as one ``bmm``: 5.7x the per-model loop on 2 cores, against 2.2x for vmap's own
batching rule (``"grouped"``), whose NCHW grouped convolution is ~2x slower in oneDNN. Models the
stacked form cannot express fall back to vmap. Measured with ``benchmarks/bench_population.py``.

Device and precision (``device=``, ``precision=``): members are initialised on the CPU (the same
weights everywhere), then the stacked parameters, optimizer state, masks and every batch live on the
device; ``bf16`` autocasts the forward and loss (parameters stay fp32). State dicts handed to
``on_epoch`` and the metrics are on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunezoo.errors import ConfigError
from prunezoo.models import build_model, get_model_spec
from prunezoo.sparsity import MaskSet
from prunezoo.training import Trainer, TrainingConfig, seed_everything
from prunezoo.training.callbacks import EnforceMasks
from prunezoo.training.optim import StackedOptimizer

OPTIMIZERS = ("adam", "sgd", "adamw")
# Member settings that change the traced computation: members differing in them cannot share a vmap.
GRAPH_FIELDS = ("optimizer", "activation", "dropout")
# Member settings passed to build_model as model options.
MODEL_FIELDS = ("activation", "init", "dropout")
ADAM_BETAS = (0.9, 0.999)
# How the population runs: "stacked" (members stacked along channels, one grouped convolution in
# channels-last memory, linear layers as one bmm; see _Stacked), "grouped" (vmap's own batching rule:
# one grouped convolution with groups=M, NCHW) or "im2col" (vmap, unfold + batched matmul).
CONV_IMPLS = ("stacked", "grouped", "im2col")
# Samples (over all members) per evaluation chunk: bounds activation memory of batched evaluation.
EVAL_SAMPLES = 16384


@dataclass(frozen=True)
class MemberSpec:
    """One population member: its seed (init, data order) and hyperparameters."""

    seed: int
    optimizer: str = "adam"  # "adam" | "sgd" (sgd uses momentum) | "adamw"
    lr: float = 3e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    activation: str = "tanh"
    init: str | None = "uniform"  # prunezoo.models.init names
    dropout: float = 0.0
    # As in TrainingConfig (prunezoo.training.optim.lr_at): LR schedule and label smoothing.
    lr_schedule: str = "constant"  # "constant" | "step" | "cosine" | "linear"
    warmup_epochs: float = 0.0
    milestones: tuple[float, ...] = ()  # step schedule, in epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0

    def graph_key(self) -> tuple:
        return tuple(getattr(self, f) for f in GRAPH_FIELDS)


# -- validation --------------------------------------------------------------------------------------
def _check_member(i: int, m) -> MemberSpec:
    if not isinstance(m, MemberSpec):
        raise ConfigError(f"members[{i}]", f"must be a MemberSpec, got {type(m).__name__}")
    f = f"members[{i}]"
    if isinstance(m.seed, bool) or not isinstance(m.seed, int) or m.seed < 0:
        raise ConfigError(f"{f}.seed", f"must be a non-negative integer, got {m.seed!r}")
    if m.optimizer not in OPTIMIZERS:
        raise ConfigError(f"{f}.optimizer", f"unknown optimizer {m.optimizer!r}; known: {list(OPTIMIZERS)}")
    if not (isinstance(m.lr, int | float) and m.lr > 0):
        raise ConfigError(f"{f}.lr", f"must be a positive number, got {m.lr!r}")
    if not (isinstance(m.momentum, int | float) and 0 <= m.momentum < 1):
        raise ConfigError(f"{f}.momentum", f"must be in [0, 1), got {m.momentum!r}")
    if not (isinstance(m.weight_decay, int | float) and m.weight_decay >= 0):
        raise ConfigError(f"{f}.weight_decay", f"must be >= 0, got {m.weight_decay!r}")
    if not (isinstance(m.dropout, int | float) and not isinstance(m.dropout, bool) and 0 <= m.dropout < 1):
        raise ConfigError(f"{f}.dropout", f"must be a probability in [0, 1), got {m.dropout!r}")
    from pydantic import ValidationError

    try:  # the schedule and loss settings, checked by the Trainer's own config
        training_config(m, epochs=1, batch_size=1)
    except ValidationError as err:
        e = err.errors()[0]
        msg = e["msg"].removeprefix("Value error, ")
        if not e["loc"]:  # a check across fields (milestones order)
            raise ConfigError(f, msg) from None
        raise ConfigError(f"{f}.{e['loc'][0]}", f"{msg}, got {e.get('input')!r}") from None
    return m


def _check_inputs(members, masks, init_states, epochs, batch_size, eval_splits, data) -> tuple[list, list[str]]:
    members = list(members)
    if not members:
        raise ConfigError("members", "must contain at least one MemberSpec")
    members = [_check_member(i, m) for i, m in enumerate(members)]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError("epochs", f"must be a non-negative integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size", f"must be a positive integer, got {batch_size!r}")
    for name, seq in (("masks", masks), ("init_states", init_states)):
        if seq is not None and len(seq) != len(members):
            raise ConfigError(name, f"has {len(seq)} entries for {len(members)} members")
    if eval_splits is None:
        eval_splits = ["test"] + (["val"] if getattr(data, "val", None) is not None else [])
    eval_splits = list(eval_splits)
    for s in eval_splits:
        if s not in ("train", "val", "test") or getattr(data, s, None) is None:
            raise ConfigError("eval_splits", f"{s!r} is not a split of the data (train, test, val if present)")
    return members, eval_splits


def _model_options(model: str, model_options: Mapping, member: MemberSpec, i: int) -> dict:
    known = get_model_spec(model).options
    opts = dict(model_options or {})
    for f in MODEL_FIELDS:
        value = getattr(member, f)
        if f in known:
            opts[f] = value  # the member's setting wins over model_options
        elif value not in (None, 0, 0.0):
            raise ConfigError(f"members[{i}].{f}", f"model {model!r} has no {f!r} option")
    return opts


def build_member(model: str, model_options: Mapping, data, member: MemberSpec, index: int = 0) -> nn.Module:
    """The member's freshly initialised model: ``seed_everything(seed)`` then ``build_model``."""
    opts = _model_options(model, model_options, member, index)
    seed_everything(member.seed)
    return build_model(model, num_classes=data.num_classes, input_shape=data.input_shape, **opts)


# -- the population ----------------------------------------------------------------------------------
def train_population(
    model: str,
    model_options: dict | None,
    data,
    members: Sequence[MemberSpec],
    *,
    epochs: int,
    batch_size: int = 10,
    masks: Sequence | None = None,
    init_states: Sequence[Mapping[str, Tensor]] | None = None,
    on_epoch: Callable[[int, int, dict[str, Tensor], dict], None] | None = None,
    eval_splits: Sequence[str] | None = None,
    steps: int | None = None,
    evaluate: bool = True,
    conv: str = "stacked",
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> list[dict]:
    """Train every member; returns the final metrics per member (in ``members`` order).

    Args:
        model, model_options: registry name and options for ``build_model``; a member's
            ``activation``/``init``/``dropout`` override ``model_options``.
        data: a :class:`~prunezoo.data.DataSplits` (``load_dataset(...)``).
        members: one :class:`MemberSpec` each.
        epochs: training epochs (0: only the epoch-0 evaluation).
        batch_size: per member.
        masks: per member a ``MaskSet`` (or mapping name -> bool tensor) or None; applied to the
            initial (or given) weights and enforced after every step.
        init_states: per member a state dict to start from instead of the seeded init (twins).
        on_epoch: ``on_epoch(member_index, epoch, state_dict, metrics)`` for epoch 0 (the initial
            state) and after every epoch; state dicts are detached copies.
        eval_splits: splits evaluated each epoch (default: test, and val when present); metrics
            ``<split>_loss/_acc/_entropy/_ece`` (``train`` is reported as ``train_eval_*``).
        steps: stop after this many optimizer steps (benchmarks); the partial epoch is reported.
        evaluate: False skips every evaluation (metrics then hold the running train loss/acc only).
        conv: ``"stacked"`` (default; models made only of Conv1d/Conv2d, Linear and parameter-free
            element-wise/pooling/dropout layers, checked on a probe batch against vmap, else vmap's
            ``"grouped"`` is used), ``"grouped"`` or ``"im2col"``: how the members run batched (same
            numbers up to float rounding; speed compared by ``benchmarks/bench_population.py``).
        device: where the population trains (a spelling like ``"cuda"`` or a ``torch.device``; default the CPU).
        precision: ``"fp32"`` or ``"bf16"`` (autocast forward and loss).
    """
    from prunezoo.training.runtime import resolve_device

    if precision not in ("fp32", "bf16"):
        raise ConfigError("precision", f"the population trainer runs fp32 or bf16, got {precision!r}")
    device = resolve_device(device) if isinstance(device, str) else torch.device(device or "cpu")
    members, eval_splits = _check_inputs(members, masks, init_states, epochs, batch_size, eval_splits, data)
    if not evaluate:
        eval_splits = []
    if conv not in CONV_IMPLS:
        raise ConfigError("conv", f"unknown convolution implementation {conv!r}; known: {list(CONV_IMPLS)}")
    modules = [build_member(model, model_options, data, m, i) for i, m in enumerate(members)]
    if next(iter(modules[0].buffers()), None) is not None:
        raise ConfigError(
            "model",
            f"{model!r} has buffers (BatchNorm); population training supports "
            "buffer-free models (cnn-s, cnn-l, mlp, conv1d)",
        )
    if init_states is not None:
        for i, (mod, state) in enumerate(zip(modules, init_states)):
            if state is None:
                continue
            try:
                mod.load_state_dict(dict(state))
            except RuntimeError as err:
                raise ConfigError(f"init_states[{i}]", str(err).splitlines()[0]) from None
    mask_list = [_check_mask(i, modules[i], masks[i]) if masks is not None else None for i in range(len(members))]

    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(members):
        groups.setdefault(m.graph_key(), []).append(i)
    results: list[dict | None] = [None] * len(members)
    for index in groups.values():
        group = _Group(
            [modules[i] for i in index],
            [members[i] for i in index],
            [mask_list[i] for i in index],
            conv=conv,
            device=device,
            precision=precision,
        )
        for j, metrics in enumerate(
            group.fit(data, epochs, batch_size, eval_splits, steps, evaluate, _forward_callback(on_epoch, index))
        ):
            results[index[j]] = metrics
    return results  # type: ignore[return-value]


def _forward_callback(on_epoch, index):
    if on_epoch is None:
        return None
    return lambda j, epoch, state, metrics: on_epoch(index[j], epoch, state, metrics)


def _check_mask(i: int, module: nn.Module, mask) -> dict[str, Tensor] | None:
    if mask is None:
        return None
    if not isinstance(mask, Mapping):
        raise ConfigError(f"masks[{i}]", f"must be a MaskSet, a mapping or None, got {type(mask).__name__}")
    params = dict(module.named_parameters())
    out = {}
    for name, m in mask.items():
        if name not in params:
            raise ConfigError(f"masks[{i}]", f"{name!r} is not a parameter of the model")
        if tuple(m.shape) != tuple(params[name].shape):
            raise ConfigError(f"masks[{i}]", f"{name!r} has shape {tuple(m.shape)}, weight {tuple(params[name].shape)}")
        out[name] = m.to(torch.bool)
    return out


def _im2col_conv2d(self: nn.Conv2d, x: Tensor) -> Tensor:
    # unfold + matmul: under vmap the matmul becomes one batched GEMM over members (backward: two
    # more GEMMs plus fold). Kept as an option: on CNN-s it measured slower than the grouped conv.
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(0)
    n, _, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
    out = self.weight.flatten(1) @ cols
    if self.bias is not None:
        out = out + self.bias[:, None]
    out = out.view(n, -1, oh, ow)
    return out[0] if squeeze else out


def _im2col_conv1d(self: nn.Conv1d, x: Tensor) -> Tensor:
    # Conv1d as a (L x 1) Conv2d through the same unfold + GEMM path.
    squeeze = x.ndim == 2
    if squeeze:
        x = x.unsqueeze(0)
    (k,), (s,), (p,), (d,) = self.kernel_size, self.stride, self.padding, self.dilation
    cols = F.unfold(x.unsqueeze(-1), (k, 1), dilation=(d, 1), padding=(p, 0), stride=(s, 1))
    out = self.weight.flatten(1) @ cols
    if self.bias is not None:
        out = out + self.bias[:, None]
    return out[0] if squeeze else out


def _use_im2col(module: nn.Module) -> None:
    """Run the (population copy's) plain convolutions as unfold + GEMM; others stay as they are."""
    import types

    for m in module.modules():
        plain = (
            getattr(m, "groups", None) == 1
            and getattr(m, "padding_mode", None) == "zeros"
            and not isinstance(getattr(m, "padding", None), str)
        )
        if type(m) is nn.Conv2d and plain:
            m.forward = types.MethodType(_im2col_conv2d, m)
        elif type(m) is nn.Conv1d and plain:
            m.forward = types.MethodType(_im2col_conv1d, m)


# Parameter-free layers that act per channel or per element, so they run unchanged on members
# stacked along the channel dimension (conv layout) or the leading dimension (linear layout).
_PER_CHANNEL = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.Tanh,
    nn.ReLU,
    nn.ReLU6,
    nn.Sigmoid,
    nn.GELU,
    nn.LeakyReLU,
    nn.SiLU,
    nn.ELU,
    nn.Softplus,
    nn.Flatten,
    nn.Sequential,
)


class _Stacked:
    """The population as one network: member m's channels are block m of the channel dimension.

    Conv layers run as one grouped convolution (``groups=M``) on ``(B, M*C, H, W)`` kept in
    channels-last memory (oneDNN's grouped convolution is ~2x faster there than on vmap's NCHW
    layout); ``flatten(1)`` then yields each member's features as block m, and Linear layers run as
    one ``bmm`` on ``(M, B, F)``. Element-wise and pooling layers need nothing. The model's own
    ``forward`` is reused with patched layers, so this works for models whose forward only
    flattens along dim 1 between such layers: ``agrees_with`` checks it against vmap on a probe.
    """

    def __init__(self, base: nn.Module, size: int, layers: dict[str, nn.Module]):
        import types

        self.base, self.size, self.layers = base, size, layers
        for m in layers.values():
            m.forward = types.MethodType(_stacked_linear if isinstance(m, nn.Linear) else _stacked_conv, m)

    @classmethod
    def build(cls, base: nn.Module, size: int) -> _Stacked | None:
        base = copy.deepcopy(base)
        layers = {}
        for name, m in base.named_modules():
            if type(m) in (nn.Conv1d, nn.Conv2d):
                if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                    return None
                layers[name] = m
            elif type(m) is nn.Linear:
                layers[name] = m
            elif not (m is base or isinstance(m, _PER_CHANNEL)):
                return None
        return cls(base, size, layers)

    def _bind(self, params: Mapping[str, Tensor]) -> None:
        for name, m in self.layers.items():
            prefix = f"{name}." if name else ""
            m.stacked = (params[prefix + "weight"], params.get(prefix + "bias"))

    def _run(self, params, x: Tensor) -> Tensor:
        self._bind(params)
        out = self.base(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x)
        if out.ndim != 3:
            raise RuntimeError("the stacked population forward must end in a Linear layer")
        return out

    def forward_train(self, params, xb: Tensor) -> Tensor:
        """``xb``: ``(M, B, *sample)`` -> logits ``(M, B, K)``."""
        m, b = xb.shape[:2]
        return self._run(params, xb.transpose(0, 1).reshape(b, m * xb.shape[2], *xb.shape[3:]))

    def forward_eval(self, params, x: Tensor) -> Tensor:
        """``x``: ``(N, *sample)`` shared by every member -> logits ``(M, N, K)``."""
        n = x.shape[0]
        xs = x.unsqueeze(1).expand(n, self.size, *x.shape[1:])
        return self._run(params, xs.reshape(n, self.size * x.shape[1], *x.shape[2:]))

    @torch.no_grad()
    def agrees_with(self, vmapped_eval, params: Mapping[str, Tensor], x: Tensor) -> bool:
        """Same logits as the vmapped model on the probe ``x`` (eval mode)?"""
        self.base.eval()
        try:
            ours = self.forward_eval({n: p.detach() for n, p in params.items()}, x)
        except (RuntimeError, ValueError):  # a forward that does more than flatten(1) between layers
            return False
        finally:
            self.base.train()
        theirs = vmapped_eval({n: p.detach() for n, p in params.items()}, x)
        return ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def _stacked_conv(self, x: Tensor) -> Tensor:
    w, b = self.stacked  # (M, C_out, C_in, *k), (M, C_out)
    conv = F.conv2d if w.ndim == 5 else F.conv1d
    return conv(
        x,
        w.flatten(0, 1),
        None if b is None else b.flatten(),
        self.stride,
        self.padding,
        self.dilation,
        groups=w.shape[0],
    )


def _stacked_linear(self, x: Tensor) -> Tensor:
    w, b = self.stacked  # (M, out, in), (M, out)
    if x.ndim == 2:  # (B, M*F) straight after flatten(1) of the conv layout or of the input
        x = x.reshape(x.shape[0], w.shape[0], -1).transpose(0, 1)
    out = torch.bmm(x, w.transpose(1, 2))
    return out if b is None else out + b.unsqueeze(1)


class _Group:
    """Members sharing one computation graph, with their stacked parameters and optimizer state."""

    def __init__(
        self,
        modules: list[nn.Module],
        specs: list[MemberSpec],
        masks: list[dict | None],
        conv: str = "stacked",
        device: torch.device | None = None,
        precision: str = "fp32",
    ):
        from torch.func import functional_call, vmap

        self.specs = specs
        self.size = len(specs)
        self.device = device or torch.device("cpu")
        self.precision = precision
        self.base = copy.deepcopy(modules[0]).to(self.device)
        if conv == "im2col":
            _use_im2col(self.base)
        self.names = [n for n, _ in self.base.named_parameters()]
        per_member = [dict(m.named_parameters()) for m in modules]
        self.params = {
            n: torch.stack([p[n].detach() for p in per_member]).to(self.device).requires_grad_(True) for n in self.names
        }
        self.optimizer = None  # a StackedOptimizer, built by fit() (the LR schedule needs the run's length)
        smoothing = [s.label_smoothing for s in specs]
        self.label_smoothing = smoothing[0] if len(set(smoothing)) == 1 else torch.tensor(smoothing, device=self.device)
        # Float keep-masks (1 where kept; members without a mask get all ones) for every masked name.
        names = sorted({n for m in masks if m for n in m})
        self.masks = {
            n: torch.stack(
                [
                    (m[n].to(self.device) if m and n in m else torch.ones_like(self.params[n][0], dtype=torch.bool))
                    for m in masks
                ]
            ).to(self.params[n].dtype)
            for n in names
        }
        self._enforce_masks()
        randomness = "different" if specs[0].dropout > 0 else "error"

        def forward(params, x):
            return functional_call(self.base, params, (x,))

        self.forward_train = vmap(forward, in_dims=(0, 0), randomness=randomness)
        self.forward_eval = vmap(forward, in_dims=(0, None), randomness=randomness)
        # The stacked path is adopted in fit(), once a probe batch has shown it equals vmap.
        self.stacked = _Stacked.build(self.base, self.size) if conv == "stacked" else None
        self.impl = "grouped" if conv == "stacked" else conv  # what runs now; "stacked" once adopted

    def _adopt_stacked(self, x: Tensor) -> None:
        if self.stacked is not None:
            self.base.eval()
            try:
                agrees = self.stacked.agrees_with(self.forward_eval, self.params, x)
            finally:
                self.base.train()
            if agrees:
                self.forward_train, self.forward_eval = self.stacked.forward_train, self.stacked.forward_eval
                self.base = self.stacked.base  # train()/eval() now switch the stacked copy
                self.impl = "stacked"
            self.stacked = None

    @torch.no_grad()
    def _enforce_masks(self) -> None:
        for n, m in self.masks.items():
            self.params[n].mul_(m)

    def _step(self, grads: list[Tensor]) -> None:
        self.optimizer.step(dict(zip(self.names, grads)))
        self._enforce_masks()

    def _losses(self, logits: Tensor, yb: Tensor) -> Tensor:
        """Per member mean cross-entropy of the batch, with each member's label smoothing (F.cross_entropy's)."""
        c = logits.shape[-1]
        eps = self.label_smoothing
        if not isinstance(eps, Tensor):  # one value for the group: exactly the Trainer's call
            return (
                F.cross_entropy(logits.reshape(-1, c), yb.reshape(-1), reduction="none", label_smoothing=eps)
                .view(self.size, -1)
                .mean(1)
            )
        log_p = F.log_softmax(logits, dim=2)
        nll = -log_p.gather(2, yb.unsqueeze(2)).squeeze(2)
        return ((1 - eps).unsqueeze(1) * nll - eps.unsqueeze(1) * log_p.mean(2)).mean(1)

    def member_state(self, j: int) -> dict[str, Tensor]:
        """Member ``j``'s parameters: a detached CPU copy."""
        return {n: self.params[n][j].detach().to("cpu", copy=True) for n in self.names}

    def autocast(self):
        from prunezoo.training.evaluate import autocast_context

        return autocast_context(self.device, self.precision)

    # -- evaluation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, dataset) -> list[dict[str, float]]:
        from prunezoo.metrics.calibration import expected_calibration_error  # deferred: loads torchvision

        self.base.eval()
        params = {n: p.detach() for n, p in self.params.items()}
        chunk = max(1, EVAL_SAMPLES // self.size)
        with self.autocast():
            logits = torch.cat(
                [
                    self.forward_eval(params, dataset.prepare(dataset.x[s : s + chunk]).to(self.device)).float().cpu()
                    for s in range(0, len(dataset.y), chunk)
                ],
                dim=1,
            )
        self.base.train()
        y = dataset.y
        log_p = F.log_softmax(logits, dim=2)
        nll = -log_p.gather(2, y.view(1, -1, 1).expand(self.size, -1, 1)).squeeze(2).mean(1)
        acc = (logits.argmax(2) == y).float().mean(1)
        probs = log_p.exp()
        entropy = -(probs * log_p).sum(2).mean(1)
        return [
            {
                "loss": float(nll[j]),
                "acc": float(acc[j]),
                "entropy": float(entropy[j]),
                "ece": expected_calibration_error(probs[j], y),
            }
            for j in range(self.size)
        ]

    def _eval_metrics(self, data, eval_splits) -> list[dict[str, float]]:
        out: list[dict[str, float]] = [{} for _ in range(self.size)]
        for split in eval_splits:
            prefix = "train_eval" if split == "train" else split
            for j, met in enumerate(self.evaluate(getattr(data, split))):
                out[j].update({f"{prefix}_{k}": v for k, v in met.items()})
        return out

    # -- training -----------------------------------------------------------------------------------
    def fit(
        self, data, epochs: int, batch_size: int, eval_splits, steps: int | None, evaluate: bool, on_epoch
    ) -> list[dict]:
        from prunezoo.data import BatchLoader  # deferred: prunezoo.data loads torchvision
        from prunezoo.data.loader import epoch_seed

        train = data.train
        self._adopt_stacked(train.prepare(train.x[:4]).to(self.device))
        loaders = [BatchLoader(train, batch_size, shuffle=True, seed=s.seed) for s in self.specs]
        n_batches = len(loaders[0])

        configs = [training_config(s, epochs, batch_size, steps) for s in self.specs]
        self.optimizer = StackedOptimizer(
            self.params,
            configs,
            steps_per_epoch=max(1, n_batches),
            total_steps=steps if steps is not None else epochs * max(1, n_batches),
        )
        # Dropout draws come from the global RNG under vmap: seed it from the members' seeds.
        torch.manual_seed(
            epoch_seed(sum(s.seed * 1_000_003**k for k, s in enumerate(self.specs)) % 2**63, len(self.specs))
        )
        initial_train = self.evaluate(train) if evaluate else [{} for _ in self.specs]
        final = [
            {"epoch": 0, "step": 0, **{f"train_{k}": t[k] for k in ("loss", "acc") if k in t}, **ev}
            for t, ev in zip(initial_train, self._eval_metrics(data, eval_splits))
        ]
        self._report(on_epoch, 0, final)
        step = 0
        for epoch in range(epochs):
            if steps is not None and step >= steps:
                break
            loss_sum = torch.zeros(self.size, device=self.device)
            correct = torch.zeros(self.size, device=self.device)
            seen = 0
            for xb, yb in self._batches(train, loaders, epoch, batch_size, n_batches):
                if steps is not None and step >= steps:
                    break
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
                with self.autocast():
                    logits = self.forward_train(self.params, xb)
                    losses = self._losses(logits, yb)
                grads = torch.autograd.grad(losses.sum(), [self.params[n] for n in self.names])
                self._step(list(grads))
                step += 1
                with torch.no_grad():
                    loss_sum += losses.detach() * yb.shape[1]
                    correct += (logits.detach().argmax(2) == yb).sum(1)
                seen += yb.shape[1]
            evals = self._eval_metrics(data, eval_splits)
            final = [
                {
                    "epoch": epoch + 1,
                    "step": step,
                    "train_loss": float(loss_sum[j]) / max(seen, 1),
                    "train_acc": float(correct[j]) / max(seen, 1),
                    **evals[j],
                }
                for j in range(self.size)
            ]
            self._report(on_epoch, epoch + 1, final)
        return final

    def _report(self, on_epoch, epoch: int, metrics: list[dict]) -> None:
        if on_epoch is not None:
            for j in range(self.size):
                on_epoch(j, epoch, self.member_state(j), dict(metrics[j]))

    def _batches(self, train, loaders, epoch: int, batch_size: int, n_batches: int):
        """Per step ``(x, y)`` of shape ``(M, B, ...)``: member m's batch from its own seeded order."""
        if getattr(train, "transform", None) is not None:
            # Augmentation draws from each loader's generator: iterate the loaders themselves.
            for ld in loaders:
                ld.set_epoch(epoch)
            for batch in zip(*loaders):
                yield torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
            return
        orders = torch.stack([ld.order(epoch) for ld in loaders])
        for b in range(n_batches):
            idx = orders[:, b * batch_size : (b + 1) * batch_size]
            xb, yb = train.get_batch(idx.reshape(-1))
            yield xb.view(self.size, idx.shape[1], *xb.shape[1:]), yb.view(self.size, -1)


# -- the per-model reference path --------------------------------------------------------------------
def training_config(member: MemberSpec, epochs: int, batch_size: int, steps: int | None = None):
    """The :class:`TrainingConfig` that trains ``member`` alone with the population's conventions."""
    return TrainingConfig(
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        optimizer=member.optimizer,
        lr=member.lr,
        momentum=member.momentum if member.optimizer == "sgd" else 0.9,
        weight_decay=member.weight_decay,
        betas=ADAM_BETAS,
        seed=member.seed,
        lr_schedule=member.lr_schedule,
        warmup_epochs=member.warmup_epochs,
        milestones=list(member.milestones),
        gamma=member.gamma,
        label_smoothing=member.label_smoothing,
    )


def train_member(
    model: str,
    model_options: dict | None,
    data,
    member: MemberSpec,
    *,
    epochs: int,
    batch_size: int = 10,
    mask=None,
    init_state: Mapping[str, Tensor] | None = None,
    eval_splits: Sequence[str] | None = None,
    steps: int | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Train one member with the per-model :class:`~prunezoo.training.Trainer` (the reference the
    population is tested against and benchmarked with); returns the model and its history."""
    [member], eval_splits = _check_inputs([member], None, None, epochs, batch_size, eval_splits, data)
    module = build_member(model, model_options, data, member)
    if init_state is not None:
        module.load_state_dict(dict(init_state))
    callbacks = [] if mask is None else [EnforceMasks(MaskSet(_check_mask(0, module, mask)))]
    sets = {("train_eval" if s == "train" else s): getattr(data, s) for s in eval_splits}
    trainer = Trainer(
        module,
        data.train,
        training_config(member, epochs, batch_size, steps),
        eval_sets=sets,
        callbacks=callbacks,
        progress=False,
    )
    return module, trainer.fit()


__all__ = ["GRAPH_FIELDS", "MemberSpec", "build_member", "train_member", "train_population", "training_config"]
