"""MaskSet integrity: pruned weights are exactly zero in the forward pass and after any optimizer step."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunezoo.pruning import prune
from prunezoo.sparsity import MaskSet, prunable_parameters


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.05),
    "adam-wd": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.5),
}


def _train_steps(model, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 1, 8, 8, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_selection_defaults_exclude_bias_and_norm():
    names = list(prunable_parameters(small_net()))
    assert names == ["0.weight", "4.weight", "6.weight"]
    assert list(prunable_parameters(small_net(), exclude=["6.*"])) == ["0.weight", "4.weight"]
    assert list(prunable_parameters(small_net(), include=["*.bias"]))[0] == "0.bias"
    with pytest.raises(ValueError, match="matches no parameter"):
        prunable_parameters(small_net(), include=["nope*"])


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@settings(max_examples=8, deadline=None)
@given(density=st.floats(0.05, 0.95), seed=st.integers(0, 10_000))
def test_masked_weights_stay_zero_under_optimizer(opt_name, density, seed):
    torch.manual_seed(seed)
    model = small_net()
    masks = prune(model, density, criterion="random", scheme="uniform", seed=seed)
    # Give every weight nonzero optimizer state first, so momentum/Adam moments exist for pruned entries.
    opt = OPTIMIZERS[opt_name](model.parameters())
    _train_steps(model, opt, 2, seed)
    handle = masks.attach(model, opt, mask_gradients=bool(seed % 2))
    _train_steps(model, opt, 5, seed + 1)
    params = prunable_parameters(model)
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0), name
        assert torch.count_nonzero(params[name][mask]) > 0
    handle.remove()
    _train_steps(model, opt, 1, seed + 2)  # detached: pruned weights may move again
    assert any(torch.any(params[n][~m] != 0) for n, m in masks.items())


def test_forward_uses_zeroed_weights_and_state_dict_is_clean():
    model = small_net()
    dense = {k: v.clone() for k, v in model.state_dict().items()}  # before any masking
    masks = prune(model, 0.3)
    masks.attach(model)
    keys = set(model.state_dict())
    assert not any("orig" in k or "mask" in k for k in keys)
    # reference built independently: the dense weights times the masks, by hand
    ref = small_net()
    ref.load_state_dict({k: v * masks[k] if k in masks else v for k, v in dense.items()})
    x = torch.randn(2, 1, 8, 8)
    model.eval(), ref.eval()
    assert torch.equal(model(x), ref(x))
    unmasked = small_net()
    unmasked.load_state_dict(dense)
    assert not torch.allclose(model(x), unmasked.eval()(x))  # the masks really change the forward pass


def test_gradient_masking_keeps_optimizer_state_of_pruned_entries_zero():
    model = small_net()
    masks = prune(model, 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks.attach(model, opt, mask_gradients=True)
    _train_steps(model, opt, 3, 0)
    for name, p in prunable_parameters(model).items():
        assert torch.all(p.grad[~masks[name]] == 0)
        assert torch.all(opt.state[p]["momentum_buffer"][~masks[name]] == 0)
        assert torch.any(opt.state[p]["momentum_buffer"][masks[name]] != 0)


def test_stats_iou_and_channel_sparsity():
    a = MaskSet({"w": torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)})
    b = MaskSet({"w": torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool)})
    assert a.nnz() == 2 and a.numel() == 6
    assert a.density() == pytest.approx(2 / 6)
    assert a.iou(b) == pytest.approx(1 / 3)
    assert a.iou(a) == 1.0
    assert a.channel_sparsity() == {"w": 0.5}
    assert a.global_channel_sparsity() == 0.5
    s = a.summary()
    assert s["layers"]["w"]["nnz"] == 2


def test_save_load_roundtrip(tmp_path):
    model = small_net()
    masks = prune(model, 0.2, criterion="random", seed=3, scheme="uniform")
    masks.save(tmp_path / "m.safetensors")
    loaded = MaskSet.load(tmp_path / "m.safetensors")
    assert list(loaded) == list(masks)
    assert all(torch.equal(loaded[n], masks[n]) for n in masks)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="shape"):
        MaskSet({"0.weight": torch.ones(2, 2, dtype=torch.bool)}).apply(small_net())
    with pytest.raises(KeyError, match="nope"):
        MaskSet({"nope": torch.ones(2, dtype=torch.bool)}).apply(small_net())
