"""torchvision-backed datasets read from tiny fixture files written in the real on-disk formats.

No network is used: every test blocks sockets and torchvision's downloaders.
"""

from __future__ import annotations

import pickle
import socket
import struct

import numpy as np
import pytest
import scipy.io
import torch

from prunezoo.data import BatchLoader, load_dataset
from prunezoo.data.vision import NORMALIZATION


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails loudly instead of hanging or silently succeeding."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist
    import torchvision.datasets.svhn as tv_svhn

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", refuse)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", refuse)
    monkeypatch.setattr(tv_svhn, "download_url", refuse)


def _rng(seed=0):
    return np.random.default_rng(seed)


# -- writers for the real formats -------------------------------------------------------------------
def _write_idx(path, array: np.ndarray):
    """IDX format (big-endian): magic 0x0000 08 ndim, then the dims as uint32, then uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">I", 0x0800 | array.ndim))
        fh.write(struct.pack(f">{array.ndim}I", *array.shape))
        fh.write(array.astype(np.uint8).tobytes())


def _write_mnist(root, folder, n_train=12, n_test=5):
    raw = root / folder / "raw"
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = _rng(n).integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        _write_idx(raw / f"{split}-images-idx3-ubyte", x)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", y)
        data[split] = (x, y)
    return data


def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def _write_cifar10(root, per_batch=4, n_test=6):
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        x = _rng(i).integers(0, 256, (per_batch, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        y = [(i + j) % 10 for j in range(per_batch)]
        _pickle(folder / f"data_batch_{i}", {"batch_label": f"batch {i}", "data": x, "labels": y})
        xs.append(x)
        ys += y
    xt = _rng(9).integers(0, 256, (n_test, 3072), dtype=np.uint8)
    yt = [j % 10 for j in range(n_test)]
    _pickle(folder / "test_batch", {"data": xt, "labels": yt})
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return np.concatenate(xs), np.array(ys), xt, np.array(yt)


def _write_cifar100(root, n_train=10, n_test=4):
    folder = root / "cifar-100-python"
    x = _rng(1).integers(0, 256, (n_train, 3072), dtype=np.uint8)
    xt = _rng(2).integers(0, 256, (n_test, 3072), dtype=np.uint8)
    y, yt = [7 * j % 100 for j in range(n_train)], [99 - j for j in range(n_test)]
    _pickle(folder / "train", {"data": x, "fine_labels": y, "coarse_labels": [v // 5 for v in y]})
    _pickle(folder / "test", {"data": xt, "fine_labels": yt, "coarse_labels": [v // 5 for v in yt]})
    _pickle(
        folder / "meta",
        {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]},
    )
    return x, np.array(y), xt, np.array(yt)


def _write_svhn(root, n_train=9, n_test=3, extra=0):
    out = {}
    splits = [("train", n_train), ("test", n_test)] + ([("extra", extra)] if extra else [])
    for split, n in splits:
        x = _rng(n).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN stores HWCN
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # digit 0 is labelled 10
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


# -- tests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_like_from_idx_files(tmp_path, name, folder):
    raw = _write_mnist(tmp_path, folder)
    d = load_dataset(name, root=tmp_path)
    assert d.num_classes == 10 and d.input_shape == (1, 28, 28)
    assert (len(d.train), len(d.test)) == (12, 5)
    assert d.train.x.dtype == torch.uint8
    assert torch.equal(d.train.x[:, 0], torch.from_numpy(raw["train"][0]))
    assert d.train.y.tolist() == raw["train"][1].tolist() and d.test.y.tolist() == raw["t10k"][1].tolist()
    mean, std = NORMALIZATION[name]
    x0, _ = d.test[0]
    assert torch.allclose(x0, (torch.from_numpy(raw["t10k"][0][0]).float() / 255 - mean[0]) / std[0])
    assert d.meta["normalization"] == {"mean": list(mean), "std": list(std)}


def test_cifar10_from_pickle_batches(tmp_path):
    x, y, xt, yt = _write_cifar10(tmp_path)
    d = load_dataset("cifar10", root=tmp_path, noise_rate=0.5, noise_kind="pairflip")
    assert d.num_classes == 10 and d.input_shape == (3, 32, 32)
    assert (len(d.train), len(d.test)) == (20, 6)
    assert torch.equal(d.train.x, torch.from_numpy(x.reshape(-1, 3, 32, 32)))  # channel-first, as stored
    assert d.train.clean_y.tolist() == y.tolist() and d.test.y.tolist() == yt.tolist()
    assert d.meta["classes"][3] == "c3" and d.meta["noise"]["num_noisy"] == 10
    # training batches are augmented (crop + flip), evaluation data is not
    assert d.train.transform is not None and d.test.transform is None
    xb, _ = next(iter(BatchLoader(d.train, 20, shuffle=False, seed=0)))
    assert xb.shape == (20, 3, 32, 32) and not torch.allclose(xb, d.train.prepare(d.train.x))
    assert load_dataset("cifar10", root=tmp_path, augment=False).train.transform is None
    assert load_dataset("cifar10", root=tmp_path, val_fraction=0.25).val.transform is None


def test_cifar100_from_pickle(tmp_path):
    x, y, xt, yt = _write_cifar100(tmp_path)
    d = load_dataset("cifar100", root=tmp_path)
    assert d.num_classes == 100 and d.input_shape == (3, 32, 32)
    assert d.train.y.tolist() == y.tolist() and d.test.y.tolist() == yt.tolist()  # fine labels
    assert torch.equal(d.test.x, torch.from_numpy(xt.reshape(-1, 3, 32, 32)))


def test_svhn_from_mat(tmp_path):
    raw = _write_svhn(tmp_path, extra=4)
    d = load_dataset("svhn", root=tmp_path)
    assert d.num_classes == 10 and d.input_shape == (3, 32, 32)
    assert (len(d.train), len(d.test)) == (9, 3)
    assert d.train.y.tolist() == [(i % 10 + 1) % 10 for i in range(9)]  # label 10 -> 0
    assert torch.equal(d.train.x, torch.from_numpy(raw["train"][0].transpose(3, 2, 0, 1).copy()))
    assert not d.train.transform.flip  # crop only: mirrored digits are not digits
    assert len(load_dataset("svhn", root=tmp_path, extra=True).train) == 13


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"])
def test_missing_files_clear_error_without_download(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(name, root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "download=True" in msg and "--download" in msg and str(tmp_path / "nowhere") in msg


def test_partial_files_named(tmp_path):
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path)


def test_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEZOO_DATA", str(tmp_path))
    _write_mnist(tmp_path, "MNIST")
    assert len(load_dataset("mnist").train) == 12
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_dataset("cifar10")


def test_download_true_goes_through_torchvision(tmp_path):
    # With download=True the stock torchvision class runs its own download (blocked here).
    with pytest.raises(AssertionError, match="network access attempted"):
        load_dataset("cifar10", root=tmp_path, download=True)
