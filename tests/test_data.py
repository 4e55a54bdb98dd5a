"""Offline datasets, validation split, label noise, BatchLoader and GMM data."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from prunezoo.data import (
    DATASETS,
    NOISE_KINDS,
    ArrayDataset,
    BatchLoader,
    DataSplits,
    RandomCropFlip,
    apply_label_noise,
    bayes_error,
    bayes_error_linear,
    bayes_error_mc,
    bayes_error_xor,
    load_dataset,
    register_dataset,
    true_posterior,
)
from prunezoo.data.gmm import make_gmm

OFFLINE = {
    # name: (num_classes, input_shape, n_train, n_test, options)
    "digits": (10, (1, 8, 8), 1437, 360, {}),
    "mnist5k": (10, (1, 28, 28), 4000, 1000, {}),
    "mnist1d": (10, (1, 40), 4000, 1000, {}),
    "gmm-linear": (2, (100,), 10_000, 5_000, {}),
    "gmm-xor": (2, (20,), 600, 400, {"dim": 20, "n_train": 600, "n_test": 400, "nu": 0.5}),
}


# -- registry / offline datasets --------------------------------------------------------------------
def test_registry_names():
    expected = {
        "digits",
        "mnist5k",
        "mnist1d",
        "gmm-linear",
        "gmm-xor",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "cifar100",
        "svhn",
    }
    assert expected <= set(DATASETS)
    assert set(NOISE_KINDS) == {"uniform-resample", "symmetric", "pairflip", "subset-permute"}


@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_offline_dataset_shapes(name):
    k, shape, n_train, n_test, opts = OFFLINE[name]
    d = load_dataset(name, **opts)
    assert isinstance(d, DataSplits) and d.name == name and d.val is None
    assert d.num_classes == k and d.input_shape == shape
    assert (len(d.train), len(d.test)) == (n_train, n_test)
    assert d.train.input_shape == d.test.input_shape == shape
    for ds in (d.train, d.test):
        assert ds.y.dtype == torch.long and int(ds.y.min()) >= 0 and int(ds.y.max()) < k
        x0, y0 = ds[0]
        assert x0.shape == shape and x0.dtype == torch.float32 and y0.ndim == 0
    assert set(d.train.y.tolist()) == set(range(k))
    json.dumps(d.meta)  # meta must be JSON-serialisable
    assert d.meta["num_train"] == n_train and d.meta["noise"]["num_noisy"] == 0


def test_image_scaling_and_stratification():
    d = load_dataset("mnist5k")
    assert d.train.x.dtype == torch.uint8  # stored compactly, scaled on access
    x, _ = d.train[0:64]
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert torch.bincount(d.test.y).tolist() == [100] * 10  # stratified 4000/1000
    dig = load_dataset("digits")
    assert float(dig.train.x.max()) == 1.0 and float(dig.train.x.min()) == 0.0


def test_mnist1d_standardised_cached_and_global_rng_untouched(tmp_path):
    random.seed(123)
    np.random.seed(123)
    expect_py, expect_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    # num_samples=1000 is not in the in-process cache yet, so make_dataset really runs here
    d = load_dataset("mnist1d", root=tmp_path, num_samples=1000)
    assert (len(d.train), len(d.test)) == (800, 200)
    # make_dataset reseeds the global generators; the builder must restore them
    assert random.random() == expect_py and np.random.rand() == expect_np
    x = torch.cat([d.train.x, d.test.x])
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    cache = list((tmp_path / "mnist1d").glob("*.npz"))
    assert len(cache) == 1
    again = load_dataset("mnist1d", root=tmp_path, num_samples=1000)
    assert torch.equal(again.train.x, d.train.x) and torch.equal(again.test.y, d.test.y)


def test_offline_datasets_are_deterministic():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    c = load_dataset("digits", seed=1)
    assert not torch.equal(a.test.y, c.test.y)


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet-9000'.*digits"):
        load_dataset("imagenet-9000")
    with pytest.raises(ValueError, match="unknown option.*'bogus'.*accepted"):
        load_dataset("digits", bogus=1)
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(ValueError, match="gaussian"):
        load_dataset("digits", noise_rate=0.1, noise_kind="gaussian")
    with pytest.raises(ValueError, match="1.5"):
        load_dataset("digits", noise_rate=1.5)


def test_register_dataset_custom():
    name = "test-data-tiny"

    @register_dataset(name, overwrite=True)
    def _tiny(root=None, download=False, n: int = 20):  # options need not be keyword-only
        x = torch.arange(n, dtype=torch.float32).reshape(n, 1)
        y = torch.arange(n) % 2
        return DataSplits(name=name, train=ArrayDataset(x, y), test=ArrayDataset(x, y), num_classes=2, input_shape=(1,))

    try:
        assert DATASETS[name].options == {"n": 20}
        d = load_dataset(name, n=30, val_fraction=0.2)
        assert len(d.train) == 24 and len(d.val) == 6
        with pytest.raises(ValueError, match="already registered"):
            register_dataset(name, _tiny)
    finally:
        DATASETS.pop(name)


# -- validation split -------------------------------------------------------------------------------
def test_validation_split_disjoint_and_deterministic():
    full = load_dataset("digits")
    a = load_dataset("digits", val_fraction=0.2, split_seed=7)
    b = load_dataset("digits", val_fraction=0.2, split_seed=7)
    c = load_dataset("digits", val_fraction=0.2, split_seed=8)
    n = len(full.train)
    assert len(a.val) == round(0.2 * n) and len(a.train) + len(a.val) == n
    tr, va = set(a.train.source_index.tolist()), set(a.val.source_index.tolist())
    assert not tr & va and tr | va == set(range(n))
    assert torch.equal(a.val.source_index, b.val.source_index) and torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.source_index, c.val.source_index)
    # samples really are the originals at those positions
    assert torch.equal(a.val.x, full.train.x[a.val.source_index])
    assert torch.equal(a.train.y, full.train.y[a.train.source_index])
    assert torch.equal(a.test.y, full.test.y)


def test_noise_applied_to_train_only_after_val_split():
    clean = load_dataset("mnist1d", val_fraction=0.1)
    d = load_dataset("mnist1d", val_fraction=0.1, noise_rate=0.3, noise_kind="symmetric", noise_seed=5)
    assert torch.equal(d.test.y, clean.test.y)  # test untouched
    assert torch.equal(d.val.y, clean.val.y) and torch.equal(d.val.source_index, clean.val.source_index)
    assert torch.equal(d.train.clean_y, clean.train.y)
    changed = (d.train.y != d.train.clean_y).nonzero().flatten()
    assert torch.equal(changed, d.noise.noisy_indices)  # symmetric: every chosen label changes
    assert d.meta["noise"] == {
        "kind": "symmetric",
        "rate": 0.3,
        "seed": 5,
        "num_noisy": len(changed),
        "num_changed": len(changed),
        "realized_rate": len(changed) / len(d.train),
    }
    assert len(changed) == math.ceil(0.3 * len(d.train))
    json.dumps(d.meta)


# -- label noise ------------------------------------------------------------------------------------
@pytest.fixture
def labels():
    return torch.arange(10_000) % 10


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_noise_realized_rates(labels, rate):
    n, k = len(labels), 10
    m = math.ceil(rate * n)
    for kind in ("symmetric", "pairflip"):
        r = apply_label_noise(labels, rate, kind, k, seed=1)
        assert r.num_noisy == m and r.realized_rate == pytest.approx(m / n)
        assert bool((r.labels[r.noisy_indices] != labels[r.noisy_indices]).all())
    pf = apply_label_noise(labels, rate, "pairflip", k, seed=1)
    assert torch.equal(pf.labels[pf.noisy_indices], (labels[pf.noisy_indices] + 1) % k)
    ur = apply_label_noise(labels, rate, "uniform-resample", k, seed=1)
    assert ur.num_noisy == m
    assert ur.realized_rate == pytest.approx(rate * (k - 1) / k, abs=0.012)
    sp = apply_label_noise(labels, rate, "subset-permute", k, seed=1)
    assert sp.num_noisy == m and sp.realized_rate <= m / n
    # permuting within the subset keeps the class histogram
    assert torch.equal(torch.bincount(sp.labels, minlength=k), torch.bincount(labels, minlength=k))
    if m > 100:
        assert sp.realized_rate == pytest.approx(rate * (k - 1) / k, abs=0.02)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_noise_deterministic_and_pure(labels, kind):
    before = labels.clone()
    a = apply_label_noise(labels, 0.2, kind, 10, seed=3)
    b = apply_label_noise(labels.numpy(), 0.2, kind, 10, seed=3)
    c = apply_label_noise(labels, 0.2, kind, 10, seed=4)
    assert torch.equal(labels, before)  # input not modified
    assert torch.equal(a.labels, b.labels) and torch.equal(a.noisy_indices, b.noisy_indices)
    assert not torch.equal(a.noisy_indices, c.noisy_indices)
    # only chosen indices may change
    changed = (a.labels != labels).nonzero().flatten()
    assert set(changed.tolist()) <= set(a.noisy_indices.tolist())
    assert a.kind == kind and a.rate == 0.2 and a.seed == 3
    json.dumps(a.to_meta())


def test_noise_independent_of_global_rng(labels):
    torch.manual_seed(0)
    np.random.seed(0)
    a = apply_label_noise(labels, 0.2, "uniform-resample", 10, seed=9)
    torch.manual_seed(1)
    np.random.seed(1)
    b = apply_label_noise(labels, 0.2, "uniform-resample", 10, seed=9)
    assert torch.equal(a.labels, b.labels)


def test_noise_count_rounding():
    y = torch.zeros(4000, dtype=torch.long)
    assert apply_label_noise(y, 0.15, "pairflip", 2, 0).num_noisy == 600  # 0.15*4000 = 600.0000000000001
    assert apply_label_noise(y[:7], 0.5, "pairflip", 2, 0).num_noisy == 4  # ceil(3.5)


def test_noise_errors(labels):
    with pytest.raises(ValueError, match="1.2"):
        apply_label_noise(labels, 1.2, "symmetric", 10)
    with pytest.raises(ValueError, match="-0.1"):
        apply_label_noise(labels, -0.1, "symmetric", 10)
    with pytest.raises(ValueError, match="nan"):
        apply_label_noise(labels, float("nan"), "symmetric", 10)
    with pytest.raises(ValueError, match="'flip'"):
        apply_label_noise(labels, 0.1, "flip", 10)
    with pytest.raises(ValueError, match="labels must lie"):
        apply_label_noise(labels, 0.1, "symmetric", 5)


# -- BatchLoader ------------------------------------------------------------------------------------
@pytest.fixture
def small_ds():
    x = torch.arange(103 * 2, dtype=torch.float32).reshape(103, 2)
    return ArrayDataset(x, torch.arange(103) % 3)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(xb.clone(), yb.clone()) for xb, yb in loader]


def test_loader_coverage_and_len(small_ds):
    for drop_last, n_batches, n_seen in ((False, 11, 103), (True, 10, 100)):
        loader = BatchLoader(small_ds, 10, shuffle=True, seed=0, drop_last=drop_last)
        batches = _epoch(loader, 0)
        assert len(loader) == len(batches) == n_batches
        seen = torch.cat([xb[:, 0] for xb, _ in batches]) / 2
        assert len(seen) == n_seen and len(set(seen.tolist())) == n_seen
        if not drop_last:
            assert sorted(seen.long().tolist()) == list(range(103))
        for xb, yb in batches:  # inputs stay paired with their labels
            assert torch.equal((xb[:, 0] / 2).long() % 3, yb)


def test_loader_determinism(small_ds):
    a, b = BatchLoader(small_ds, 16, seed=5), BatchLoader(small_ds, 16, seed=5)
    ea0, eb0 = _epoch(a, 0), _epoch(b, 0)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(ea0, eb0, strict=True))
    ea1 = _epoch(a, 1)
    assert not torch.equal(ea0[0][0], ea1[0][0])  # a new order every epoch
    again = _epoch(a, 0)  # an epoch's order does not depend on what ran before
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(ea0, again, strict=True))
    other = _epoch(BatchLoader(small_ds, 16, seed=6), 0)
    assert not torch.equal(ea0[0][0], other[0][0])
    plain = _epoch(BatchLoader(small_ds, 16, shuffle=False), 3)
    assert torch.equal(torch.cat([xb for xb, _ in plain]), small_ds.x)


def test_loader_normalises_like_prepare():
    x = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    ds = ArrayDataset(x, torch.zeros(50, dtype=torch.long), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    xb = torch.cat([b for b, _ in BatchLoader(ds, 8, shuffle=False)])
    assert torch.allclose(xb, ds.prepare(x))
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    expect = (x.float() / 255 - mean) / std
    assert torch.allclose(xb, expect, atol=1e-6)
    assert torch.allclose(ds[7][0], expect[7], atol=1e-6)


def test_loader_augmentation_seeded():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    ds = ArrayDataset(x, torch.arange(64), transform=RandomCropFlip(pad=2))
    loader = BatchLoader(ds, 64, shuffle=False, seed=1)
    a, b = _epoch(loader, 0)[0][0], _epoch(loader, 0)[0][0]
    assert torch.equal(a, b) and a.shape == (64, 3, 8, 8)
    assert not torch.equal(a, ds.prepare(x))  # augmented ...
    assert torch.equal(_epoch(BatchLoader(ds, 64, shuffle=False, augment=False), 0)[0][0], ds.prepare(x))


def test_random_crop_flip_matches_reference():
    x = torch.rand(32, 2, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = RandomCropFlip(pad=3)(x, g)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for i in range(32):  # every output is some crop of the padded image, maybe mirrored
        crops = [padded[i, :, r : r + 6, c : c + 6] for r in range(7) for c in range(7)]
        assert any(torch.equal(out[i], cr) or torch.equal(out[i], cr.flip(-1)) for cr in crops)
    assert torch.equal(RandomCropFlip(pad=0, flip=False)(x, g), x)


# -- GMM --------------------------------------------------------------------------------------------
def test_gmm_bayes_error_closed_forms():
    assert bayes_error_linear(0.2, 100) == pytest.approx(0.1587, abs=1e-4)
    assert bayes_error("linear", 0.2, 100) == pytest.approx(0.158655, abs=1e-6)
    assert bayes_error_xor(0.2, 100) == pytest.approx(0.36454, abs=1e-4)
    assert load_dataset("gmm-linear", n_train=100, n_test=100).meta["bayes_error"] == pytest.approx(0.1587, abs=1e-4)
    for kind in ("linear", "xor"):
        assert bayes_error_mc(kind, 0.2, 100, n=100_000) == pytest.approx(bayes_error(kind, 0.2, 100), abs=0.004)


@pytest.mark.parametrize("kind", ["linear", "xor"])
def test_gmm_bayes_classifier_reaches_bayes_error(kind):
    x, y, xt, yt = make_gmm(kind, nu=0.2, dim=100, n_train=20_000, n_test=20_000, seed=3)
    assert torch.bincount(y).tolist() == [10_000, 10_000]
    p = true_posterior(xt, kind, 0.2)
    assert p.shape == (20_000,) and bool(((p >= 0) & (p <= 1)).all())
    err = float(((p > 0.5).long() != yt).float().mean())
    assert err == pytest.approx(bayes_error(kind, 0.2, 100), abs=0.012)  # ~4 sigma at n = 20k


def test_gmm_means_and_posterior_symmetry():
    x, y, _, _ = make_gmm("linear", nu=1.0, dim=10, n_train=20_000, n_test=2, seed=0)
    assert torch.allclose(x[y == 0].mean(0), torch.zeros(10), atol=0.05)
    assert torch.allclose(x[y == 1].mean(0), torch.ones(10), atol=0.05)
    mid = torch.full((1, 10), 0.5)
    assert float(true_posterior(mid, "linear", 1.0)) == pytest.approx(0.5)
    # xor: swapping the halves maps class 1 to class 1 and class 0 to class 0
    xx, _, _, _ = make_gmm("xor", nu=0.7, dim=10, n_train=100, n_test=2)
    swapped = torch.cat([xx[:, 5:], xx[:, :5]], 1)
    assert torch.allclose(true_posterior(xx, "xor", 0.7), true_posterior(swapped, "xor", 0.7), atol=1e-6)
    big = torch.full((2, 10), 1e4)  # log-sum-exp keeps extreme inputs finite
    assert torch.isfinite(true_posterior(big, "xor", 0.7)).all()


def test_gmm_seeding_and_options():
    a = load_dataset("gmm-xor", n_train=200, n_test=100, dim=10, nu=1.0)
    b = load_dataset("gmm-xor", n_train=200, n_test=100, dim=10, nu=1.0)
    c = load_dataset("gmm-xor", n_train=300, n_test=100, dim=10, nu=1.0)
    assert torch.equal(a.train.x, b.train.x) and a.input_shape == (10,)
    assert torch.equal(a.test.x, c.test.x)  # test set independent of n_train
    assert a.meta["bayes_error"] == pytest.approx(bayes_error_xor(1.0, 10))
    with pytest.raises(ValueError, match="even"):
        load_dataset("gmm-xor", dim=11)
