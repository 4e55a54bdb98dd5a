"""Dynamic sparse training: RigL / SET drop-and-grow (Evci et al. 2020; Mocanu et al. 2018)."""

import math

import numpy as np
import pytest
import torch

from prunezoo.data import load_dataset
from prunezoo.data.datasets import ArrayDataset
from prunezoo.models import build_model
from prunezoo.pruning import random_er_masks
from prunezoo.schedules import SET, DynamicSparseTraining, RigL, drop_fraction
from prunezoo.sparsity import MaskSet
from prunezoo.training import Callback, Trainer, TrainingConfig, seed_everything


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(data, seed=0):
    seed_everything(seed)
    return build_model("mlp", num_classes=10, input_shape=data.input_shape, hidden=[32])


def _cfg(epochs=4, optimizer="sgd"):
    return TrainingConfig(epochs=epochs, batch_size=64, lr=0.05, optimizer=optimizer)


class Watch(Callback):
    """Placed after the schedule: checks each update before the optimizer step, records masks."""

    def __init__(self, sched):
        self.sched, self.nnz, self.checked, self.masks_at = sched, [], 0, {}

    def on_after_backward(self, trainer, step):
        if not self.sched.is_update_step(step):
            return
        params = dict(trainer.model.named_parameters())
        for name, grown in self.sched.last_grown.items():
            p = params[name]
            assert torch.all(p[grown] == 0)  # grown weights start at exactly 0 ...
            assert torch.all(trainer.optimizer.state[p]["momentum_buffer"][grown] == 0)  # ... with no momentum
            assert not torch.any(grown & self.sched.last_dropped[name])
            self.checked += int(grown.sum())

    def on_step_end(self, trainer, step, loss):
        self.nnz.append(self.sched.masks.layer_nnz())
        self.masks_at[step + 1] = self.sched.masks.clone()


def test_drop_fraction_is_cosine():
    assert drop_fraction(0, 0.3, 1000) == pytest.approx(0.3)
    assert drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)
    assert drop_fraction(250, 0.3, 1000) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction(1000, 0.3, 1000) == 0.0 and drop_fraction(1500, 0.3, 1000) == 0.0
    assert drop_fraction(700, 0.3, 1000, "constant") == 0.3


def test_rigl_training_run(digits):
    model = _model(digits)
    sched = RigL(0.8, delta_t=10, seed=1)
    watch = Watch(sched)
    trainer = Trainer(model, digits.train, _cfg(), callbacks=[sched, watch])
    trainer.fit()
    t_end = round(0.75 * trainer.total_steps)
    assert sched.t_end == t_end
    # updates exactly at multiples of ΔT below T_end, drop fraction on the cosine schedule
    assert [e["step"] for e in sched.events] == list(range(10, t_end, 10))
    for e in sched.events:
        assert e["fraction"] == pytest.approx(0.15 * (1 + math.cos(math.pi * e["step"] / t_end)))
        assert e["changed"] > 0 and 0 < e["iou"] < 1
    assert watch.checked > 0
    # fixed sparsity: per-layer nnz never changes; ERK random start at density 0.2
    initial = random_er_masks(_model(digits), 0.2, "erk", seed=1, exact=True).layer_nnz()
    assert all(n == initial for n in watch.nnz)
    assert sched.masks.density() == pytest.approx(0.2, abs=1e-3)
    # the mask really moved, then froze after T_end
    assert watch.masks_at[1].iou(sched.masks) < 0.95
    assert all(torch.equal(watch.masks_at[t_end][n], sched.masks[n]) for n in sched.masks)
    # pruned weights exactly zero after training; the handle is released
    params = dict(model.named_parameters())
    for name, m in sched.masks.items():
        assert torch.all(params[name][~m] == 0)
    assert sched.handle is None


def _controlled(sched, digits, optimizer="sgd", seed=0):
    """A trainer whose schedule is attached, with known weights, gradients and optimizer state."""
    model = _model(digits)
    trainer = Trainer(model, digits.train, _cfg(optimizer=optimizer), callbacks=[sched])
    sched.on_train_begin(trainer)
    g = torch.Generator().manual_seed(seed)
    grads = {}
    for name, p in model.named_parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g))
        p.grad = torch.randn(p.shape, generator=g)
        grads[name] = p.grad
        state = trainer.optimizer.state[p]
        if optimizer == "sgd":
            state["momentum_buffer"] = torch.ones_like(p)
        else:
            state.update(step=torch.tensor(3.0), exp_avg=torch.ones_like(p), exp_avg_sq=torch.ones_like(p))
    sched.masks.apply(model)
    return model, trainer, grads


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_rigl_update_drops_smallest_weights_and_grows_largest_gradients(digits, optimizer):
    # prunezoo's earlier rule, kept as an option: no regrowth of just-dropped weights, k = round(f·n)
    sched = RigL(0.7, scheme="uniform", delta_t=10, regrow_dropped=False, drop_count="round")
    model, trainer, grads = _controlled(sched, digits, optimizer)
    name = "fc1.weight"
    p, old = dict(model.named_parameters())[name], sched.masks[name].clone()
    active = old.flatten().nonzero().squeeze(1)
    # the weakest active weight gets the largest gradient of all: it must still not be regrown
    weakest = active[p.detach().flatten()[active].abs().argmin()]
    grads[name].view(-1)[weakest] = 1e6
    event = sched.update_masks(trainer, 20)

    frac = drop_fraction(20, 0.3, sched.t_end)
    n_active = int(old.sum())
    k = math.floor(frac * n_active + 0.5)
    w = p.detach().flatten()
    # expected: k smallest |w| among active dropped; k largest |grad| among previously inactive grown
    drop_expected = set(active[w[active].abs().argsort()[:k]].tolist())
    inactive = (~old).flatten().nonzero().squeeze(1)
    g = grads[name].flatten()
    grow_expected = set(inactive[g[inactive].abs().argsort(descending=True)[:k]].tolist())
    new = sched.masks[name].flatten()
    assert set((old.flatten() & ~new).nonzero().squeeze(1).tolist()) == drop_expected
    assert set((new & ~old.flatten()).nonzero().squeeze(1).tolist()) == grow_expected
    assert int(weakest) in drop_expected and int(weakest) not in grow_expected
    assert int(new.sum()) == n_active
    grown = sched.last_grown[name]
    assert torch.all(p[grown] == 0) and torch.all(p[~sched.masks[name]] == 0)
    for key, value in trainer.optimizer.state[p].items():
        if isinstance(value, torch.Tensor) and value.shape == p.shape:
            assert torch.all(value[grown] == 0) and torch.all(value[~grown] == 1), key
    assert event["step"] == 20 and event["fraction"] == pytest.approx(frac)
    assert event["changed"] == sum(int(m.sum()) for m in sched.last_grown.values())
    nnz, changed = sched.masks.nnz(), event["changed"]
    assert event["iou"] == pytest.approx((nnz - changed) / (nnz + changed))  # |both| / |either|


def _reference_update(mask, weights, score_grow, drop_fraction):
    """NumPy port of google-research/rigl ``SparseSETOptimizer._get_update_op`` (no drop noise, grow_init
    zeros, initial_acc_scale 0): returns the new mask, the new weights and where momentum is reset."""
    mask, w, sg = mask.reshape(-1).astype(np.float32), weights.reshape(-1).copy(), score_grow.reshape(-1)
    n_total, n_ones = mask.size, int(mask.sum())
    n_prune = int(np.float32(n_ones) * np.float32(drop_fraction))  # tf.cast(float32 -> int32) truncates
    n_keep = n_ones - n_prune
    order = np.argsort(-np.abs(mask * w), kind="stable")  # tf.nn.top_k: ties in index order
    mask1 = np.zeros(n_total, np.float32)
    mask1[order[:n_keep]] = 1
    lifted = np.where(mask1 == 1, sg.min() - 1, sg)  # only the kept weights are lifted out of growth
    order = np.argsort(-lifted, kind="stable")
    mask2 = np.zeros(n_total, np.float32)
    mask2[order[:n_prune]] = 1
    assert (mask1 * mask2).sum() == 0
    new_connections = (mask2 == 1) & (mask == 0)
    w = np.where(new_connections, 0.0, w)
    shape = weights.shape
    return (mask1 + mask2).reshape(shape).astype(bool), w.reshape(shape), new_connections.reshape(shape)


@pytest.mark.parametrize("fraction", [0.3, 0.55])
def test_rigl_update_matches_a_port_of_the_reference_rule(fraction):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 6, bias=False)
    data = ArrayDataset(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
    trainer = Trainer(model, data, TrainingConfig(steps=1, batch_size=4, lr=0.1))
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(6, 8, generator=g) < 0.5
    with torch.no_grad():
        model.weight.copy_(torch.randn(6, 8, generator=g))
    grad = torch.randn(6, 8, generator=g)
    # the weakest active weight gets the largest gradient: the reference regrows it in the same update
    active = mask.flatten().nonzero().squeeze(1)
    weakest = active[model.weight.detach().flatten()[active].abs().argmin()]
    grad.view(-1)[weakest] = 100.0
    sched = RigL(masks=MaskSet({"weight": mask}), alpha=fraction, decay="constant", t_end=10, delta_t=1)
    sched.on_train_begin(trainer)
    model.weight.grad = grad.clone()
    trainer.optimizer.state[model.weight]["momentum_buffer"] = torch.ones(6, 8)
    before = model.weight.detach().clone()
    ref_mask, ref_w, reset = _reference_update(mask.numpy(), before.numpy(), grad.abs().numpy(), fraction)
    sched.update_masks(trainer, 1)
    assert torch.equal(sched.masks["weight"], torch.from_numpy(ref_mask))
    assert torch.equal(model.weight.detach(), torch.from_numpy(ref_w * ref_mask).float())
    assert bool(sched.masks["weight"].view(-1)[weakest])  # dropped and regrown: kept its value
    assert model.weight.detach().view(-1)[weakest] == before.view(-1)[weakest]
    momentum = trainer.optimizer.state[model.weight]["momentum_buffer"]
    assert torch.equal(momentum == 0, torch.from_numpy(reset))
    assert int(sched.masks["weight"].sum()) == int(mask.sum())


def test_set_grows_at_random_seeded(digits):
    grown = {}
    makers = {
        "rigl": lambda: RigL(0.7, scheme="uniform"),
        "set0": lambda: SET(0.7, scheme="uniform"),
        "set0b": lambda: SET(0.7, scheme="uniform"),
        "set1": lambda: SET(0.7, scheme="uniform", seed=1),
    }
    for label, make in makers.items():
        sched = make()
        _, trainer, _ = _controlled(sched, digits)
        if label == "set1":  # same starting mask as the others: only the growth draw may differ
            sched.handle.update(random_er_masks(trainer.model, 0.3, "uniform", seed=0, exact=True))
        old = sched.masks.clone()
        sched.update_masks(trainer, 20)
        grown[label] = sched.last_grown["fc1.weight"]
        assert not torch.any(grown[label] & old["fc1.weight"])  # only previously inactive weights grow
        assert sched.masks.layer_nnz() == old.layer_nnz()
    assert torch.equal(grown["set0"], grown["set0b"])  # seeded
    assert not torch.equal(grown["set0"], grown["set1"])
    assert not torch.equal(grown["set0"], grown["rigl"])  # not the gradient ranking
    assert isinstance(SET(0.5), DynamicSparseTraining) and SET(0.5).grow == "random" and RigL(0.5).grow == "gradient"


def test_sparse_to_sparse_from_given_masks(digits):
    start = random_er_masks(_model(digits), 0.25, "uniform", seed=5, exact=True)
    sched = SET(masks=start, delta_t=5)
    watch = Watch(sched)
    Trainer(_model(digits), digits.train, _cfg(epochs=1), callbacks=[sched, watch]).fit()
    assert watch.masks_at[1].layer_nnz() == start.layer_nnz() == sched.masks.layer_nnz()
    assert len(sched.events) > 0 and sched.masks.iou(start) < 1
    with pytest.raises(ValueError):
        DynamicSparseTraining()


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch + 1 == self.epochs:
            trainer.stop_requested = True


@pytest.mark.parametrize("make", [lambda: RigL(0.8, delta_t=7), lambda: SET(0.8, delta_t=7, seed=3)])
def test_resume_matches_uninterrupted(digits, tmp_path, make):
    full_model, full = _model(digits), make()
    Trainer(full_model, digits.train, _cfg(), callbacks=[full]).fit()

    Trainer(_model(digits), digits.train, _cfg(), callbacks=[make(), StopAfter(2)]).fit(checkpoint_dir=tmp_path / "ck")
    resumed_model, resumed = _model(digits, seed=99), make()
    Trainer(resumed_model, digits.train, _cfg(), callbacks=[resumed]).fit(resume_from=tmp_path / "ck")
    ref = full_model.state_dict()
    assert all(torch.equal(resumed_model.state_dict()[k], ref[k]) for k in ref)
    assert resumed.events == full.events
    assert all(torch.equal(resumed.masks[n], full.masks[n]) for n in full.masks)
