"""Population-batched training (prunezoo.zoo.population) against the per-model Trainer path."""

from __future__ import annotations

import pytest
import torch

from prunezoo.data import ArrayDataset, DataSplits
from prunezoo.errors import ConfigError
from prunezoo.models import build_model
from prunezoo.sparsity import MaskSet
from prunezoo.training import Trainer, TrainingConfig, seed_everything
from prunezoo.training.callbacks import EnforceMasks
from prunezoo.training.optim import lr_at
from prunezoo.zoo.population import MemberSpec, _Group, build_member, train_member, train_population


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: one thread avoids thread-sync overhead on a shared machine (results are the same).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _splits(n_train=40, n_test=24, shape=(1, 28, 28), seed=0, val=False) -> DataSplits:
    g = torch.Generator().manual_seed(seed)

    def ds(n):
        # Labels depend on the image (mean brightness of the left half) so training can learn something.
        x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
        score = x.float().flatten(1)[:, : x[0].numel() // 2].mean(1)
        y = (score > score.median()).long() + 2 * (x.float().flatten(1)[:, -1] > 127).long()
        return ArrayDataset(x, y, mean=0.5, std=0.25)

    return DataSplits(
        name="tiny", train=ds(n_train), test=ds(n_test), val=ds(16) if val else None, num_classes=4, input_shape=shape
    )


def _collect():
    states, metrics = {}, {}

    def on_epoch(i, epoch, state, m):
        states[i, epoch] = state
        metrics[i, epoch] = m

    return states, metrics, on_epoch


def _trainer_alone(model, opts, data, member, epochs, batch_size, mask=None):
    """The project's per-model path, written out without any population code."""
    seed_everything(member.seed)
    net = build_model(
        model,
        num_classes=data.num_classes,
        input_shape=data.input_shape,
        activation=member.activation,
        init=member.init,
        **opts,
    )
    cfg = TrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=member.optimizer,
        lr=member.lr,
        momentum=member.momentum,
        weight_decay=member.weight_decay,
        seed=member.seed,
    )
    cbs = [EnforceMasks(mask)] if mask is not None else []
    hist = Trainer(net, data.train, cfg, eval_sets={"test": data.test}, callbacks=cbs, progress=False).fit()
    return net, hist


MEMBERS = [
    MemberSpec(seed=1),
    MemberSpec(seed=2, optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=1e-3, init="kaiming_uniform"),
    MemberSpec(seed=3, lr=1e-3, weight_decay=1e-2, init="xavier_uniform"),
    MemberSpec(seed=4, optimizer="sgd", lr=0.05, momentum=0.5, activation="relu", init="kaiming_normal"),
    MemberSpec(seed=5, activation="relu", init=None),
]


def test_members_match_trainer_alone_after_two_epochs():
    data = _splits()
    states, metrics, cb = _collect()
    final = train_population("cnn-s", {}, data, MEMBERS, epochs=2, batch_size=7, on_epoch=cb)
    for i, member in enumerate(MEMBERS):
        net, hist = _trainer_alone("cnn-s", {}, data, member, 2, 7)
        ref = net.state_dict()
        assert set(ref) == set(states[i, 2])
        for name, w in ref.items():
            torch.testing.assert_close(states[i, 2][name], w, rtol=1e-4, atol=1e-5, msg=f"member {i} {name}")
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "test_ece"):
            assert final[i][key] == pytest.approx(hist[-1][key], rel=1e-4, abs=1e-5), (i, key)
        assert final[i]["epoch"] == 2 and final[i]["step"] == hist[-1]["step"]
    # Different hyperparameters really give different weights (the comparison above is not vacuous).
    assert not torch.allclose(states[0, 2]["fc2.weight"], states[2, 2]["fc2.weight"])


def test_mlp_and_train_member_share_the_conventions():
    data = _splits(shape=(1, 6, 6))
    member = MemberSpec(seed=7, optimizer="sgd", lr=0.1, activation="relu", init="kaiming_uniform")
    states, _, cb = _collect()
    train_population("mlp", {"hidden": [16]}, data, [member, MemberSpec(seed=8)], epochs=2, batch_size=5, on_epoch=cb)
    net, _ = train_member("mlp", {"hidden": [16]}, data, member, epochs=2, batch_size=5)
    for name, w in net.state_dict().items():
        torch.testing.assert_close(states[0, 2][name], w, rtol=1e-4, atol=1e-5)


def test_masks_stay_enforced_and_match_masked_trainer():
    data = _splits()
    members = [MemberSpec(seed=11, weight_decay=1e-2), MemberSpec(seed=12, optimizer="sgd", lr=0.05)]
    masks = []
    for k in range(len(members)):
        shapes = dict(build_model("cnn-s", num_classes=4).named_parameters())
        g = torch.Generator().manual_seed(k)
        masks.append(
            MaskSet(
                {
                    n: torch.rand(shapes[n].shape, generator=g) < 0.3
                    for n in ("conv1.weight", "fc1.weight", "fc2.weight")
                }
            )
        )
    states, _, cb = _collect()
    train_population("cnn-s", {}, data, members, epochs=2, batch_size=8, masks=[masks[0], None], on_epoch=cb)
    for epoch in (0, 1, 2):
        for name, keep in masks[0].items():
            w = states[0, epoch][name]
            assert bool((w[~keep] == 0).all()), (epoch, name)
            assert bool((w[keep] != 0).any())
    assert float((states[1, 2]["fc1.weight"] == 0).float().mean()) < 0.01  # unmasked member stays dense
    net, _ = _trainer_alone("cnn-s", {}, data, members[0], 2, 8, mask=masks[0])
    for name, w in net.state_dict().items():
        torch.testing.assert_close(states[0, 2][name], w, rtol=1e-4, atol=1e-5)


def test_mixed_activations_form_groups_and_keep_member_order():
    data = _splits()
    members = [
        MemberSpec(seed=1, activation="relu"),
        MemberSpec(seed=2, activation="tanh"),
        MemberSpec(seed=3, activation="sigmoid", optimizer="sgd", lr=0.05),
        MemberSpec(seed=4, activation="relu"),
    ]
    states, metrics, cb = _collect()
    final = train_population("cnn-s", {}, data, members, epochs=1, batch_size=10, on_epoch=cb)
    assert sorted(states) == [(i, e) for i in range(4) for e in (0, 1)]
    for i in (0, 2):  # one from a 2-member group, one alone in its group
        net, hist = _trainer_alone("cnn-s", {}, data, members[i], 1, 10)
        for name, w in net.state_dict().items():
            torch.testing.assert_close(states[i, 1][name], w, rtol=1e-4, atol=1e-5)
        assert final[i]["test_acc"] == pytest.approx(hist[-1]["test_acc"])


def test_same_seeds_same_results_and_epoch_zero_callback():
    data = _splits(val=True)
    members = [MemberSpec(seed=5, dropout=0.3), MemberSpec(seed=6), MemberSpec(seed=6, dropout=0.3)]
    runs = []
    for _ in range(2):
        states, metrics, cb = _collect()
        final = train_population("cnn-s", {}, data, members, epochs=1, batch_size=10, on_epoch=cb)
        runs.append((states, metrics, final))
    (s1, m1, f1), (s2, m2, f2) = runs
    assert f1 == f2
    for key in s1:
        for name in s1[key]:
            assert torch.equal(s1[key][name], s2[key][name])
    # Epoch 0: the initial (seeded) weights, with metrics on every split.
    seed_everything(6)
    init = build_model("cnn-s", num_classes=4, activation="tanh", init="uniform").state_dict()
    for name, w in init.items():
        assert torch.equal(s1[1, 0][name], w)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc"):
        assert key in m1[1, 0] and key in f1[1]
    assert m1[1, 0]["epoch"] == 0 and m1[1, 0]["step"] == 0


def test_init_states_start_from_given_weights():
    data = _splits()
    seed_everything(99)
    start = build_model("cnn-s", num_classes=4, activation="tanh", init="xavier_uniform").state_dict()
    states, _, cb = _collect()
    member = MemberSpec(seed=3)
    train_population("cnn-s", {}, data, [member], epochs=1, init_states=[start], on_epoch=cb)
    for name, w in start.items():
        assert torch.equal(states[0, 0][name], w)
    net, _ = train_member("cnn-s", {}, data, member, epochs=1, init_state=start)
    for name, w in net.state_dict().items():
        torch.testing.assert_close(states[0, 1][name], w, rtol=1e-4, atol=1e-5)


def test_identical_members_stay_identical_without_dropout():
    data = _splits(shape=(1, 6, 6))
    states, _, cb = _collect()
    train_population(
        "mlp", {"hidden": [16]}, data, [MemberSpec(seed=1, activation="relu", init=None)] * 2, epochs=1, on_epoch=cb
    )
    assert torch.equal(states[0, 1]["fc1.weight"], states[1, 1]["fc1.weight"])


def test_dropout_equal_in_distribution_to_trainer():
    # Dropout draws under vmap cannot reproduce a lone model's RNG stream, so compare in
    # distribution: mean test loss over 6 seeds vs the per-model Trainer path.
    data = _splits(n_train=60, n_test=60)
    members = [MemberSpec(seed=s, dropout=0.5, lr=3e-3, init=None) for s in range(6)]
    states, _, cb = _collect()
    pop = train_population("cnn-s", {}, data, members + [members[0]], epochs=2, batch_size=10, on_epoch=cb)
    # Two identical members (same seed, init, data order) diverge: each draws its own dropout masks.
    assert not torch.allclose(states[0, 2]["fc1.weight"], states[6, 2]["fc1.weight"])
    alone = []
    for m in members:
        _, hist = train_member("cnn-s", {}, data, m, epochs=2, batch_size=10)
        alone.append(hist[-1]["test_loss"])
    pop_loss = torch.tensor([r["test_loss"] for r in pop[:6]])
    alone_loss = torch.tensor(alone)
    spread = float(torch.cat([pop_loss, alone_loss]).std())
    assert abs(float(pop_loss.mean() - alone_loss.mean())) < 3 * spread / 6**0.5
    # ... while a no-dropout population would be exactly the same models: dropout is really on.
    assert all(abs(a - b) > 1e-6 for a, b in zip(pop_loss.tolist(), alone))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"members": [MemberSpec(seed=0, optimizer="rmsprop")]}, "members[0].optimizer"),
        ({"members": [MemberSpec(seed=0), MemberSpec(seed=1, lr=-1.0)]}, "members[1].lr"),
        ({"members": [MemberSpec(seed=0, dropout=1.5)]}, "members[0].dropout"),
        ({"members": [MemberSpec(seed=0)], "masks": [None, None]}, "masks"),
        ({"members": [MemberSpec(seed=0)], "init_states": []}, "init_states"),
        ({"members": [MemberSpec(seed=0)], "masks": [{"nope.weight": torch.ones(3, dtype=torch.bool)}]}, "masks[0]"),
        ({"members": [MemberSpec(seed=0)], "epochs": -1}, "epochs"),
        ({"members": []}, "members"),
        ({"members": [MemberSpec(seed=0)], "eval_splits": ["val"]}, "eval_splits"),
        ({"members": [MemberSpec(seed=0, lr_schedule="exp")]}, "members[0].lr_schedule"),
        ({"members": [MemberSpec(seed=0), MemberSpec(seed=1, label_smoothing=1.0)]}, "members[1].label_smoothing"),
        ({"members": [MemberSpec(seed=0, lr_schedule="step", milestones=(2.0, 1.0))]}, "members[0]"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    data = _splits(n_train=10, n_test=5)
    kwargs = {"epochs": 1, **kwargs}
    members = kwargs.pop("members")
    with pytest.raises(ConfigError) as err:
        train_population("cnn-s", {}, data, members, **kwargs)
    assert err.value.field == field


def test_model_without_dropout_option_rejects_dropout_member():
    data = _splits(shape=(1, 6, 6))
    with pytest.raises(ConfigError) as err:
        train_population("mlp", {"hidden": [4]}, data, [MemberSpec(seed=0, dropout=0.2)], epochs=0)
    assert err.value.field == "members[0].dropout"


@pytest.mark.parametrize("model, shape", [("cnn-s", (1, 28, 28)), ("conv1d", (1, 40)), ("mlp", (1, 8, 8))])
def test_stacked_is_adopted_for_zoo_models(model, shape):
    data = _splits(n_train=8, n_test=4, shape=shape)
    members = [MemberSpec(seed=s, activation="relu", init=None) for s in (1, 2, 3)]
    group = _Group([build_member(model, {}, data, m, i) for i, m in enumerate(members)], members, [None] * 3)
    assert group.impl == "grouped"  # vmap until a probe has shown the stacked path agrees
    group._adopt_stacked(data.train.prepare(data.train.x[:4]))
    assert group.impl == "stacked"


class _MixesChannels(torch.nn.Module):
    """Supported layers, but a forward that averages over channels: not expressible stacked."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3)
        self.fc = torch.nn.Linear(36, 4)

    def forward(self, x):
        h = self.conv(x)
        return self.fc((h - h.mean(1, keepdim=True)).flatten(1))


def test_stacked_falls_back_to_vmap_when_the_forward_mixes_channels():
    data = _splits(n_train=8, n_test=4, shape=(1, 8, 8))
    members = [MemberSpec(seed=s) for s in (1, 2)]
    modules = []
    for m in members:
        torch.manual_seed(m.seed)
        modules.append(_MixesChannels())
    group = _Group(modules, members, [None, None])
    group._adopt_stacked(data.train.prepare(data.train.x[:4]))
    assert group.impl == "grouped"


@pytest.mark.parametrize("model, shape", [("cnn-s", (1, 28, 28)), ("conv1d", (1, 40))])
def test_convolution_paths_give_the_same_weights(model, shape):
    data = _splits(n_train=20, n_test=10, shape=shape)
    members = [MemberSpec(seed=1, activation="relu", init=None), MemberSpec(seed=2, activation="relu", init=None)]
    runs = []
    for conv in ("grouped", "im2col", "stacked"):
        states, _, cb = _collect()
        train_population(model, {}, data, members, epochs=1, on_epoch=cb, conv=conv)
        runs.append(states)
    for other in runs[1:]:
        for key, state in runs[0].items():
            for name, w in state.items():
                torch.testing.assert_close(other[key][name], w, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError) as err:
        train_population(model, {}, data, members, epochs=0, conv="fft")
    assert err.value.field == "conv"


SCHEDULED = [  # two groups (adam, sgd); in each, members differ in schedule and label smoothing
    MemberSpec(seed=1, lr=3e-3, lr_schedule="cosine", label_smoothing=0.1),
    MemberSpec(seed=2, lr=2e-3, lr_schedule="linear", warmup_epochs=0.5, label_smoothing=0.2, weight_decay=1e-2),
    MemberSpec(seed=3, optimizer="sgd", lr=0.05, lr_schedule="cosine", label_smoothing=0.1),
    MemberSpec(
        seed=4,
        optimizer="sgd",
        lr=0.05,
        momentum=0.5,
        lr_schedule="step",
        milestones=(1.0,),
        gamma=0.2,
        label_smoothing=0.1,
    ),
    MemberSpec(seed=5, optimizer="adamw", lr=3e-3, weight_decay=0.1, lr_schedule="cosine"),
]


def test_members_match_trainer_with_lr_schedules_and_label_smoothing():
    """The population uses the Trainer's LR schedules (lr_at) and label smoothing, member by member."""
    data = _splits()
    states, _, cb = _collect()
    final = train_population("cnn-s", {}, data, SCHEDULED, epochs=2, batch_size=7, on_epoch=cb)
    for i, m in enumerate(SCHEDULED):
        seed_everything(m.seed)
        net = build_model(
            "cnn-s", num_classes=data.num_classes, input_shape=data.input_shape, activation=m.activation, init=m.init
        )
        cfg = TrainingConfig(
            epochs=2,
            batch_size=7,
            optimizer=m.optimizer,
            lr=m.lr,
            momentum=m.momentum,
            weight_decay=m.weight_decay,
            seed=m.seed,
            lr_schedule=m.lr_schedule,
            warmup_epochs=m.warmup_epochs,
            milestones=list(m.milestones),
            gamma=m.gamma,
            label_smoothing=m.label_smoothing,
        )
        hist = Trainer(net, data.train, cfg, eval_sets={"test": data.test}, progress=False).fit()
        for name, w in net.state_dict().items():
            torch.testing.assert_close(states[i, 2][name], w, rtol=1e-4, atol=1e-5, msg=f"member {i} {name}")
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert final[i][key] == pytest.approx(hist[-1][key], rel=1e-4, abs=1e-5), (i, key)
    # Without the schedule (constant LR) the weights differ: the comparison above sees the schedule.
    plain = {}
    train_population(
        "cnn-s",
        {},
        data,
        [MemberSpec(seed=1, lr=3e-3, label_smoothing=0.1)],
        epochs=2,
        batch_size=7,
        on_epoch=lambda i, e, st, _m: plain.setdefault(e, st),
    )
    assert not torch.allclose(plain[2]["fc2.weight"], states[0, 2]["fc2.weight"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_stacked_optimizer_matches_torch_optim_member_by_member(kind):
    from prunezoo.training.optim import StackedOptimizer, build_optimizer

    configs = [
        TrainingConfig(optimizer=kind, lr=0.1, weight_decay=0.0, lr_schedule="cosine", betas=(0.9, 0.99)),
        TrainingConfig(
            optimizer=kind,
            lr=0.02,
            momentum=0.5,
            weight_decay=0.05,
            lr_schedule="step",
            milestones=[1.0],
            warmup_epochs=0.5,
            nesterov=kind == "sgd",
        ),
        TrainingConfig(optimizer=kind, lr=0.05, momentum=0.0, weight_decay=0.01, betas=(0.8, 0.9)),
    ]
    g = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(3, 4, 5, generator=g), "b": torch.randn(3, 5, generator=g)}
    stacked = {n: t.clone().requires_grad_(True) for n, t in start.items()}
    opt = StackedOptimizer(stacked, configs, total_steps=8, steps_per_epoch=2)
    alone = []
    for j, cfg in enumerate(configs):
        mod = torch.nn.Module()
        mod.w, mod.b = (torch.nn.Parameter(start[n][j].clone()) for n in ("w", "b"))
        alone.append((mod, build_optimizer(mod, cfg)))
    for step in range(8):
        grads = {n: torch.randn(t.shape, generator=g) for n, t in start.items()}
        opt.step(grads)
        for j, (mod, o) in enumerate(alone):
            for group in o.param_groups:
                group["lr"] = lr_at(step, 8, 2, configs[j])
            mod.w.grad, mod.b.grad = grads["w"][j].clone(), grads["b"][j].clone()
            o.step()
    for j, (mod, _) in enumerate(alone):
        torch.testing.assert_close(stacked["w"][j], mod.w.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stacked["b"][j], mod.b.detach(), rtol=1e-5, atol=1e-6)
