"""Trainer on user workloads: torch Datasets and DataLoaders, devices and precisions, custom losses,
token outputs, masks=, exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from prunezoo.data import ArrayDataset, BatchLoader
from prunezoo.data.loader import DatasetLoader, EpochBatchSampler
from prunezoo.errors import ConfigError
from prunezoo.sparsity.masks import MaskSet
from prunezoo.training import RuntimeConfig, Trainer, TrainingConfig, evaluate, resolve_device
from prunezoo.training.callbacks import StopAtStep
from prunezoo.training.evaluate import predict
from prunezoo.training.trainer import cross_entropy_loss


def _data(n=96, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # learnable labels in 0..k-1
    return x, y.clamp_max(k - 1)


def _mlp(d=6, k=3, seed=1, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, k))


def _cfg(**kw):
    base = dict(epochs=2, batch_size=16, lr=0.1, seed=4, eval_batch_size=32)
    return TrainingConfig(**{**base, **kw})


def _strip(history):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


class NoisyDataset(Dataset):
    """A custom map-style Dataset with a random transform drawn from the global torch RNG."""

    def __init__(self, x, y, noise=0.1):
        self.x, self.targets, self.noise = x, y, noise
        self.calls = 0

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.calls += 1
        return self.x[i] + self.noise * torch.randn(self.x.shape[1:]), self.targets[i]


# -- runtime ----------------------------------------------------------------------------------------------


def test_resolve_device_errors_name_the_field():
    with pytest.raises(ConfigError) as err:
        resolve_device("gpu")
    assert err.value.field == "device" and "'gpu'" in err.value.message
    with pytest.raises(ConfigError) as err:
        resolve_device("cuda:x", field="runtime.device")
    assert err.value.field == "runtime.device"
    with pytest.raises(ValidationError, match="gpu"):
        RuntimeConfig(device="gpu")
    with pytest.raises(ValidationError):
        RuntimeConfig(num_workers=-1)
    with pytest.raises(ValidationError):
        RuntimeConfig(precision="fp8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_a_config_error():
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError) as err:
            resolve_device(spec)
        assert err.value.field == "device" and "CUDA is not available on this machine" in err.value.message
        assert torch.__version__ in err.value.message
    with pytest.raises(ConfigError) as err:
        RuntimeConfig(device="cuda").resolve("study.")
    assert err.value.field == "study.device"


def test_auto_is_cpu_without_accelerators_and_fp16_needs_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert RuntimeConfig().resolve() == torch.device("cpu")
    with pytest.raises(ConfigError) as err:
        resolve_device("mps")
    assert err.value.field == "device"
    with pytest.raises(ConfigError) as err:
        RuntimeConfig(device="cpu", precision="fp16").resolve("runtime.")
    assert err.value.field == "runtime.precision" and "bf16" in err.value.message
    assert RuntimeConfig(device="cpu", precision="bf16").resolve() == torch.device("cpu")


# -- inputs -----------------------------------------------------------------------------------------------


def test_tensor_dataset_reproduces_the_array_dataset_path_exactly():
    """Same order (seed, epoch) and same batches: a TensorDataset trains and evaluates like an ArrayDataset."""
    x, y = _data()
    arr = Trainer(_mlp(), ArrayDataset(x[:64], y[:64]), _cfg(), eval_sets={"test": ArrayDataset(x[64:], y[64:])})
    ref = _strip(arr.fit())
    tds = Trainer(_mlp(), TensorDataset(x[:64], y[:64]), _cfg(), eval_sets={"test": TensorDataset(x[64:], y[64:])})
    assert isinstance(tds.loader, DatasetLoader) and tds.steps_per_epoch == 4
    assert _strip(tds.fit()) == ref
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "test_entropy", "test_ece"} <= set(ref[-1])


def test_custom_dataset_and_dataloader_train_and_evaluate():
    x, y = _data()
    ds = NoisyDataset(x[:64], y[:64])
    dl = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=10, shuffle=True)
    evals = {"test": NoisyDataset(x[64:], y[64:], noise=0.0), "val": DataLoader(TensorDataset(x[64:], y[64:]))}
    for data, spe in ((ds, 4), (dl, 7)):
        model = _mlp()
        before = [p.detach().clone() for p in model.parameters()]
        trainer = Trainer(model, data, _cfg(epochs=3), eval_sets=evals)
        assert trainer.steps_per_epoch == spe  # len() of the DataLoader is the steps per epoch
        hist = trainer.fit()
        assert [h["step"] for h in hist] == [spe, 2 * spe, 3 * spe]
        assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        last = hist[-1]
        assert last["test_loss"] == pytest.approx(last["val_loss"], rel=1e-5)  # the same data, two input kinds
        assert hist[-1]["train_loss"] < hist[0]["train_loss"]
        ref = evaluate(model, ArrayDataset(x[64:], y[64:]))
        assert last["val_acc"] == pytest.approx(ref["acc"]) and last["val_loss"] == pytest.approx(ref["loss"], rel=1e-5)


def test_evaluate_and_predict_take_datasets_and_dataloaders():
    x, y = _data()
    model = _mlp()
    ref_logits, ref_y = predict(model, ArrayDataset(x, y), batch_size=40)
    for data in (TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=40)):
        logits, labels = predict(model, data, batch_size=40)
        assert torch.equal(logits, ref_logits) and torch.equal(labels, ref_y)
        assert evaluate(model, data, 40) == evaluate(model, ArrayDataset(x, y), 40)


def test_bad_inputs_are_named_not_attribute_errors():
    x, y = _data()

    class Stream(IterableDataset):
        def __iter__(self):
            yield from zip(x, y)

    with pytest.raises(TypeError, match="train_data"):
        Trainer(_mlp(), Stream(), _cfg())
    with pytest.raises(TypeError, match="train_data: the DataLoader has no length"):
        Trainer(_mlp(), DataLoader(Stream(), batch_size=4), _cfg())
    with pytest.raises(TypeError, match="train_data"):
        Trainer(_mlp(), 42, _cfg())
    with pytest.raises(TypeError, match=r"eval_sets\['val'\]"):
        Trainer(_mlp(), TensorDataset(x, y), _cfg(), eval_sets={"val": object()})
    with pytest.raises(TypeError, match="ArrayDataset"):
        BatchLoader(TensorDataset(x, y), 8)
    triples = TensorDataset(x, y, y)
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pairs"):
        Trainer(_mlp(), triples, _cfg()).fit()


# -- order and seeding ------------------------------------------------------------------------------------


def test_dataset_order_is_a_function_of_seed_and_epoch():
    n = 50
    sampler = EpochBatchSampler(n, 8, seed=3)
    loader = BatchLoader(ArrayDataset(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long)), 8, seed=3)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = [i for b in sampler for i in b]
        assert order == loader.order(epoch).tolist()  # BatchLoader's convention
        orders.append(order)
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(n))
    sampler.set_epoch(1)
    sampler.set_start(2)  # a mid-epoch resume: the remaining batches, by index
    assert len(sampler) == 5 and [i for b in sampler for i in b] == orders[1][16:]


def test_same_seed_same_history_and_transforms_independent_of_workers():
    x, y = _data()

    def run(seed, workers=0):
        model = _mlp(dropout=0.2)
        rt = RuntimeConfig(device="cpu", num_workers=workers)
        trainer = Trainer(model, NoisyDataset(x[:64], y[:64]), _cfg(seed=seed), runtime=rt)
        return _strip(trainer.fit()), model.state_dict()

    (h1, s1), (h2, s2) = run(4), run(4)
    assert h1 == h2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    h3, _ = run(5)
    assert h3 != h1
    h4, s4 = run(4, workers=2)  # per-batch seeding: worker processes draw the same noise
    assert h4 == h1 and all(torch.equal(s1[k], s4[k]) for k in s1)


def test_mid_epoch_resume_skips_batches_by_index_and_is_exact(tmp_path):
    x, y = _data()
    cfg = _cfg(epochs=2)

    def trainer(ds, callbacks=()):
        return Trainer(
            _mlp(dropout=0.2), ds, cfg, eval_sets={"test": TensorDataset(x[64:], y[64:])}, callbacks=callbacks
        )

    full = trainer(NoisyDataset(x[:64], y[:64]))
    ref = full.fit()
    ckpt = tmp_path / "ckpt"
    trainer(NoisyDataset(x[:64], y[:64]), [StopAtStep(6)]).fit(checkpoint_dir=ckpt)  # stops in epoch 2
    ds = NoisyDataset(x[:64], y[:64])
    resumed = trainer(ds)
    hist = resumed.fit(resume_from=ckpt)
    assert ds.calls == (8 - 6) * 16  # the 6 consumed batches were never loaded
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), resumed.model.parameters()))
    assert hist[-1]["test_loss"] == ref[-1]["test_loss"] and hist[-1]["step"] == 8


# -- SIGKILL resume ---------------------------------------------------------------------------------------

_SCRIPT = """
import json, os, signal, sys
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from prunezoo.training import Callback, Trainer, TrainingConfig
from prunezoo.training.checkpoint import latest_checkpoint

torch.set_num_threads(1)
mode, ckpt, kill, out = sys.argv[1:5]
g = torch.Generator().manual_seed(0)
x = torch.randn(80, 6, generator=g)
y = (x[:, 0] > 0).long()


class Noisy(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return x[i] + 0.1 * torch.randn(6), y[i]


class Kill(Callback):
    def on_step_end(self, trainer, step, loss):
        if kill == "1" and step == trainer.steps_per_epoch + 1:  # mid epoch 2, after epoch 1's checkpoint
            os.kill(os.getpid(), signal.SIGKILL)


def run(ckpt):
    if mode == "dataset":
        data = Noisy()
    else:  # shuffled by its own generator, whose state the checkpoint keeps
        data = DataLoader(Noisy(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
    cfg = TrainingConfig(epochs=3, batch_size=16, lr=0.1, optimizer="adam", seed=3)
    trainer = Trainer(model, data, cfg, eval_sets={"test": TensorDataset(x[64:], y[64:])}, callbacks=[Kill()])
    resume = ckpt if latest_checkpoint(ckpt) is not None else None
    hist = trainer.fit(checkpoint_dir=ckpt, resume_from=resume)
    return {"resumed": resume is not None, "history": [{k: v for k, v in h.items() if k != "time_s"} for h in hist],
            "weights": {k: v.flatten().tolist() for k, v in model.state_dict().items()}}


resumed = run(ckpt)  # killed mid-run with kill=1
json.dump({"resumed": resumed, "fresh": run(ckpt + "-fresh")}, open(out, "w"))  # fresh: uninterrupted reference
"""


@pytest.mark.parametrize("mode", ["dataset", "dataloader"])
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, mode):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.json"

    def run(kill):
        args = [sys.executable, str(script), mode, str(ckpt), kill, str(out)]
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)

    killed = run("1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists() and (ckpt / "checkpoint.json").exists()
    finished = run("0")
    assert finished.returncode == 0, finished.stderr
    res = json.loads(out.read_text())
    a, b = res["resumed"], res["fresh"]
    assert a["resumed"] and not b["resumed"]
    assert a["history"] == b["history"] and len(a["history"]) == 3
    assert a["weights"] == b["weights"]


# -- device, precision, compile, memory format -------------------------------------------------------------


def test_explicit_cpu_runtime_keeps_the_default_numbers():
    x, y = _data()
    data, evals = ArrayDataset(x[:64], y[:64]), {"test": ArrayDataset(x[64:], y[64:])}
    ref = _strip(Trainer(_mlp(dropout=0.2), data, _cfg(), eval_sets=evals).fit())
    cpu = Trainer(_mlp(dropout=0.2), data, _cfg(), eval_sets=evals, runtime=RuntimeConfig(device="cpu"))
    assert cpu.device == torch.device("cpu")
    assert _strip(cpu.fit()) == ref


def test_bf16_autocast_on_cpu_keeps_masked_weights_exactly_zero():
    x, y = _data()
    model = _mlp()
    g = torch.Generator().manual_seed(2)
    masks = MaskSet({n: torch.rand(p.shape, generator=g) > 0.6 for n, p in model.named_parameters() if p.ndim == 2})
    dtypes = []

    def loss(logits, targets):
        dtypes.append(logits.dtype)
        return F.cross_entropy(logits, targets)

    cfg = _cfg(optimizer="adamw", lr=0.01, weight_decay=0.1)
    rt = RuntimeConfig(device="cpu", precision="bf16")
    hist = Trainer(model, TensorDataset(x[:64], y[:64]), cfg, runtime=rt, loss=loss, masks=masks).fit()
    assert set(dtypes) == {torch.bfloat16}  # the forward ran under autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # parameters stay fp32
    params = dict(model.named_parameters())
    for name, m in masks.items():
        assert torch.all(params[name][~m] == 0) and bool((params[name][m] != 0).all())
    assert MaskSet.from_model(model, list(masks)).density() == pytest.approx(masks.density())
    assert torch.isfinite(torch.tensor(hist[-1]["train_loss"]))
    # after fit the masks are no longer enforced: the handle was removed
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model(x).sum().backward()
    opt.step()
    assert any(bool((params[n][~m] != 0).any()) for n, m in masks.items())


def test_masks_attach_in_a_plain_pytorch_loop_keeps_weights_zero():
    x, y = _data()
    model = _mlp()
    masks = MaskSet({"0.weight": torch.arange(16 * 6).reshape(16, 6) % 3 == 0})
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.1)
    handle = masks.attach(model, opt)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        assert torch.all(model[0].weight[~masks["0.weight"]] == 0)
    assert bool((model[0].weight[masks["0.weight"]] != 0).all())
    handle.remove()


def test_compile_is_wired_for_the_forward_only(monkeypatch):
    calls = []

    class Compiled(nn.Module):  # stands in for torch.compile's wrapper (which prefixes keys with _orig_mod.)
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

        def forward(self, xb):
            calls.append(xb.shape[0])
            return self._orig_mod(xb)

    monkeypatch.setattr(torch, "compile", lambda m, **kw: Compiled(m))
    x, y = _data()
    model = _mlp()
    keys = list(model.state_dict())
    trainer = Trainer(model, TensorDataset(x[:64], y[:64]), _cfg(epochs=1), runtime=RuntimeConfig(compile=True))
    assert trainer.model is model and isinstance(trainer._forward, Compiled)
    trainer.fit()
    assert len(calls) == trainer.steps_per_epoch and list(trainer.model.state_dict()) == keys


def test_channels_last_model_and_inputs():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 3, 6, 6, generator=g), torch.randint(0, 2, (24,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    seen = []
    model[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    trainer = Trainer(
        model, TensorDataset(x, y), _cfg(epochs=1, batch_size=8), runtime=RuntimeConfig(channels_last=True)
    )
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    trainer.fit()
    assert seen and all(seen)


def test_grad_scaler_state_travels_in_the_checkpoint(tmp_path):
    """fp16 needs an accelerator; the scaler's save/restore path is exercised with a CPU scaler."""
    x, y = _data()
    trainer = Trainer(_mlp(), TensorDataset(x[:64], y[:64]), _cfg(epochs=1))
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    trainer.fit(checkpoint_dir=tmp_path / "ck")
    scale = trainer.scaler.get_scale()
    other = Trainer(_mlp(), TensorDataset(x[:64], y[:64]), _cfg(epochs=2))
    other.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    other._restore_runtime_state(*_ckpt_extra(tmp_path / "ck"))
    assert other.scaler.get_scale() == scale == 1024.0


def _ckpt_extra(path):
    from prunezoo.training.checkpoint import load_checkpoint

    meta = load_checkpoint(path, _mlp())
    return meta["extra"], meta["tensors"]


# -- losses and token outputs --------------------------------------------------------------------------------


def test_custom_loss_is_used():
    x, y = _data()
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def zero_loss(logits, targets):
        calls.append(tuple(logits.shape))
        return 0.0 * logits.sum()

    hist = Trainer(model, TensorDataset(x[:64], y[:64]), _cfg(), loss=zero_loss).fit()
    assert len(calls) == 8 and calls[0] == (16, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert hist[-1]["train_loss"] == 0.0


class TokenModel(nn.Module):
    def __init__(self, vocab=11, classes=5, dim=8):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, classes)

    def forward(self, tokens):  # [B, T] integer ids -> [B, T, C]
        return self.head(torch.tanh(self.emb(tokens)))


def _tokens(n=48, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 11, (n, t), generator=g)
    targets = tokens % 5
    targets[torch.rand(n, t, generator=g) > 0.3] = -100  # most positions carry no target
    return tokens, targets


def test_token_outputs_train_and_score_only_targeted_positions():
    tokens, targets = _tokens()
    torch.manual_seed(0)
    model = TokenModel()
    data = TensorDataset(tokens, targets)
    hist = Trainer(model, data, _cfg(epochs=30, lr=0.5), eval_sets={"test": data}).fit()
    with torch.no_grad():
        logits = model(tokens)
    keep = targets != -100
    acc = (logits.argmax(-1)[keep] == targets[keep]).float().mean()
    assert hist[-1]["test_acc"] == pytest.approx(float(acc))
    ce = float(F.cross_entropy(logits[keep], targets[keep]).detach())
    assert hist[-1]["test_loss"] == pytest.approx(ce, rel=1e-5)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] and hist[-1]["test_acc"] > 0.9

    # train_acc counts scored positions only: with frozen weights it is the accuracy over all of them
    frozen = TokenModel()
    default = cross_entropy_loss()
    h = Trainer(frozen, data, _cfg(epochs=1), loss=lambda lg, t: 0.0 * default(lg, t)).fit()
    lg = frozen(tokens)
    assert h[0]["train_acc"] == pytest.approx(float((lg.argmax(-1)[keep] == targets[keep]).float().mean()))


def test_default_loss_on_tokens_ignores_minus_100_and_a_batch_without_targets_is_zero():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    targets = torch.tensor([[1, -100, 3, -100], [-100, -100, 0, 2]])
    keep = targets != -100
    loss = cross_entropy_loss()(logits, targets)
    assert loss.item() == pytest.approx(F.cross_entropy(logits[keep], targets[keep]).item())
    empty = cross_entropy_loss()(logits, torch.full((2, 4), -100))
    assert empty.item() == 0.0
    empty.backward()
    assert torch.all(logits.grad == 0)
