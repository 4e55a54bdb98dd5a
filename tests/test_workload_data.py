"""The user's data on disk: a CIFAR-10 fixture in the real format, subsets of file-backed datasets,
augmentation by name (batched and torchvision.transforms.v2), and the ``imagefolder`` dataset."""

from __future__ import annotations

import pickle
import socket
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cifar_fixture import LABEL_NAMES, write_cifar10
from prunezoo.cli import app
from prunezoo.data import BatchLoader, load_dataset
from prunezoo.data.datasets import stratified_subset
from prunezoo.data.imagefolder import ImageFolderDataset
from prunezoo.data.transforms import AUGMENTATIONS, batch_augmentation, v2_augmentation
from prunezoo.errors import ConfigError

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"), n_train=600, n_test=200)


# -- the CIFAR-10 fixture ---------------------------------------------------------------------------
def test_cifar_fixture_is_the_real_format(cifar_root):
    folder = cifar_root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    )
    with open(folder / "data_batch_1", "rb") as fh:
        raw = fh.read()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the published files
    batch = pickle.loads(raw, encoding="bytes")  # the dataset page's recipe: bytes keys
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (120, 3072)
    assert batch[b"batch_label"] == b"training batch 1 of 5"
    assert all(isinstance(v, int) and 0 <= v < 10 for v in batch[b"labels"])
    assert batch[b"filenames"][0].endswith(b".png")
    latin = pickle.loads(raw, encoding="latin1")  # torchvision's way: str keys
    assert set(latin) == {"batch_label", "labels", "data", "filenames"}
    assert np.array_equal(latin["data"], batch[b"data"])
    with open(folder / "batches.meta", "rb") as fh:
        meta = pickle.load(fh, encoding="bytes")
    assert meta[b"label_names"] == [n.encode() for n in LABEL_NAMES] and meta[b"num_vis"] == 3072


def test_cifar_fixture_reads_through_torchvision_and_prunezoo(cifar_root):
    from torchvision.datasets import CIFAR10

    class NoMd5(CIFAR10):  # the fixture's md5 sums are not the published ones
        def _check_integrity(self):
            return True

        def _load_meta(self):
            with open(cifar_root / self.base_folder / self.meta["filename"], "rb") as fh:
                self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]

    tv = NoMd5(str(cifar_root), train=True, download=False)
    assert tv.data.shape == (600, 32, 32, 3) and tv.classes == LABEL_NAMES
    d = load_dataset("cifar10", root=cifar_root)
    assert (len(d.train), len(d.test)) == (600, 200) and d.meta["classes"] == LABEL_NAMES
    assert torch.equal(d.train.x, torch.from_numpy(tv.data).permute(0, 3, 1, 2))
    assert d.train.y.tolist() == tv.targets
    assert torch.bincount(d.train.y).tolist() == [60] * 10  # balanced, like the real set


def test_cifar_fixture_is_seeded(tmp_path):
    a = load_dataset("cifar10", root=write_cifar10(tmp_path / "a", 50, 10, seed=3))
    b = load_dataset("cifar10", root=write_cifar10(tmp_path / "b", 50, 10, seed=3))
    c = load_dataset("cifar10", root=write_cifar10(tmp_path / "c", 50, 10, seed=4))
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)


# -- subsets ----------------------------------------------------------------------------------------
def test_stratified_subset_proportional_and_seeded():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_subset(y, 10, seed=0)
    assert torch.bincount(y[idx], minlength=3).tolist() == [5, 3, 2]
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == 10
    assert torch.equal(idx, stratified_subset(y, 10, seed=0))
    assert not torch.equal(idx, stratified_subset(y, 10, seed=1))
    # largest remainders: 7 * (0.5, 0.3, 0.2) = 3.5, 2.1, 1.4 -> 4, 2, 1
    assert torch.bincount(y[stratified_subset(y, 7, seed=0)], minlength=3).tolist() == [4, 2, 1]
    assert torch.equal(stratified_subset(y, 100), torch.arange(100))
    for bad in (0, -1, 101, 2.5, True, "5"):
        with pytest.raises(ValueError, match="subset"):
            stratified_subset(y, bad)


def test_cifar_subset_and_test_subset(cifar_root):
    full = load_dataset("cifar10", root=cifar_root)
    d = load_dataset("cifar10", root=cifar_root, subset=512)
    assert (len(d.train), len(d.test)) == (512, 200)  # the test split stays whole unless test_subset
    counts = torch.bincount(d.train.y, minlength=10).tolist()
    assert sum(counts) == 512 and max(counts) - min(counts) <= 1  # stratified
    src = d.train.source_index
    assert torch.equal(d.train.x, full.train.x[src]) and torch.equal(d.train.y, full.train.y[src])
    assert d.meta["subset"] == {"train": 512, "test": None, "seed": 0, "num_train": 600, "num_test": 200}
    assert d.meta["num_train"] == 512 and d.meta["options"] == {"subset": 512}
    assert torch.equal(load_dataset("cifar10", root=cifar_root, subset=512).train.x, d.train.x)  # seeded
    other = load_dataset("cifar10", root=cifar_root, subset=512, subset_seed=1)
    assert not torch.equal(other.train.source_index, src)
    t = load_dataset("cifar10", root=cifar_root, subset=100, test_subset=50, val_fraction=0.2)
    assert (len(t.train), len(t.val), len(t.test)) == (80, 20, 50)
    assert torch.bincount(t.test.y, minlength=10).tolist() == [5] * 10
    assert "subset" not in full.meta  # whole splits: meta as before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subset": 601}, "subset=601 is larger"),
        ({"subset": 0}, "subset must be a positive integer"),
        ({"test_subset": "all"}, "test_subset must be a positive integer"),
        ({"subset": 10, "subset_seed": -1}, "subset_seed must be an integer >= 0"),
        ({"augment": "crop-flip"}, "cifar-crop-flip"),
    ],
)
def test_bad_subset_or_augment_named(cifar_root, options, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("cifar10", root=cifar_root, **options)


# -- augmentation by name ---------------------------------------------------------------------------
def test_augment_names_and_backward_compatible_defaults(cifar_root):
    from prunezoo import names

    assert names.AUGMENTATIONS == AUGMENTATIONS  # what `prunezoo list augment` prints
    default = load_dataset("cifar10", root=cifar_root)
    named = load_dataset("cifar10", root=cifar_root, augment="cifar-crop-flip")
    assert repr(default.train.transform) == repr(named.train.transform) == "RandomCropFlip(pad=4, flip=True)"
    a = next(iter(BatchLoader(default.train, 64, seed=5)))[0]
    assert torch.equal(a, next(iter(BatchLoader(named.train, 64, seed=5)))[0])  # same draws: same batches
    assert load_dataset("cifar10", root=cifar_root, augment="none").train.transform is None
    crop = load_dataset("cifar10", root=cifar_root, augment="cifar-crop").train.transform
    assert (crop.pad, crop.flip) == (4, False)
    flip = batch_augmentation("flip")
    assert (flip.pad, flip.flip) == (0, True) and batch_augmentation("none") is None
    res = runner.invoke(app, ["list", "augment"])
    assert res.exit_code == 0 and all(n in res.output for n in AUGMENTATIONS)


def _candidates(img: torch.Tensor, pad: int, flip: bool) -> list[torch.Tensor]:
    """Every output torchvision's RandomCrop(size, padding=pad) (+ RandomHorizontalFlip) can give."""
    from torchvision.transforms.v2 import functional as TF

    h, w = img.shape[-2:]
    padded = TF.pad(img, [pad])
    crops = [TF.crop(padded, t, left, h, w) for t in range(2 * pad + 1) for left in range(2 * pad + 1)]
    return crops + [TF.horizontal_flip(c) for c in crops] if flip else crops


def _one_of(out: torch.Tensor, candidates: list[torch.Tensor]) -> bool:
    return any(torch.equal(out, c) for c in candidates)


@pytest.mark.parametrize("name", ["cifar-crop-flip", "cifar-crop", "flip"])
def test_batched_and_v2_augmentations_match_torchvision(name):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 10, 12), generator=g, dtype=torch.uint8)
    pad, flip = {"cifar-crop-flip": (4, True), "cifar-crop": (4, False), "flip": (0, True)}[name]
    batched = batch_augmentation(name)(x.float(), torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    v2_ops = v2_augmentation(name, (10, 12))
    flips = 0
    for i in range(len(x)):
        cands = _candidates(x[i].float(), pad, flip)
        assert _one_of(batched[i], cands)
        y = x[i]
        for op in v2_ops:
            y = op(y)
        assert _one_of(y.float(), cands)
        flips += not _one_of(batched[i], _candidates(x[i].float(), pad, False))
    assert (flips > 0) == flip  # with 6 images, at least one flip is drawn (seeded)
    assert v2_augmentation("none", (10, 12)) == []


def _write_idx(path, array: np.ndarray) -> None:
    """IDX (MNIST's format): magic 0x0000 08 ndim, the dims as big-endian uint32, then uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def test_mnist_augment_option(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", np.random.default_rng(n).integers(0, 256, (n, 28, 28), np.uint8))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    assert load_dataset("mnist", root=tmp_path).train.transform is None  # default unchanged: none
    t = load_dataset("mnist", root=tmp_path, augment=True).train.transform
    assert (t.pad, t.flip) == (4, False)  # digits are never mirrored
    assert len(load_dataset("mnist", root=tmp_path, subset=10, test_subset=5).train) == 10


# -- imagefolder --------------------------------------------------------------------------------------
CLASSES = ["ant", "bee", "cow"]


def _write_folder(root, splits=(("train", 8), ("test", 3)), classes=CLASSES, hw=(20, 24), seed=0, mode="RGB"):
    """Class-coloured PNGs in ImageFolder layout; returns {split: uint8 [N, C, H, W] in class/file order}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in splits:
        imgs = []
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = np.clip(rng.normal(60 + 70 * c, 25, (*hw, 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(a).convert(mode)
                img.save(d / f"{i:03d}.png")
                arr = np.asarray(img)
                imgs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        out[split] = torch.from_numpy(np.stack(imgs))
    return out


def test_imagefolder_in_memory(tmp_path):
    raw = _write_folder(tmp_path)
    d = load_dataset("imagefolder", root=tmp_path)
    assert d.num_classes == 3 and d.input_shape == (3, 20, 24) and d.meta["classes"] == CLASSES
    assert (len(d.train), len(d.test)) == (24, 9) and d.meta["in_memory"] is True
    assert torch.equal(d.train.x, raw["train"]) and d.train.y.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert torch.equal(d.test.x, raw["test"]) and d.train.x.dtype == torch.uint8
    mean = raw["train"].double().div(255).mean(dim=(0, 2, 3))
    assert torch.allclose(torch.tensor(d.meta["normalization"]["mean"], dtype=torch.float64), mean, atol=1e-6)
    x0, _ = d.train[0]
    assert abs(float(d.train.prepare(d.train.x).mean())) < 1e-3 and x0.shape == (3, 20, 24)  # normalised
    assert d.train.transform is None and d.meta["augmentation"] == "none"
    aug = load_dataset("imagefolder", root=tmp_path, augment="cifar-crop-flip", normalize=False)
    assert repr(aug.train.transform) == "RandomCropFlip(pad=4, flip=True)" and aug.test.transform is None
    assert aug.meta["normalization"] is None and torch.equal(aug.test[0][0], raw["test"][0].float() / 255)


def test_imagefolder_resize_grayscale_subset_and_val(tmp_path):
    _write_folder(tmp_path, splits=(("train", 10), ("val", 2), ("test", 4)))
    d = load_dataset("imagefolder", root=tmp_path, size=16, grayscale=True, subset=15, test_subset=6)
    assert d.input_shape == (1, 16, 16) and d.train.x.shape == (15, 1, 16, 16)
    assert torch.bincount(d.train.y).tolist() == [5, 5, 5] and torch.bincount(d.test.y).tolist() == [2, 2, 2]
    assert d.val is not None and len(d.val) == 6 and d.meta["num_val"] == 6  # val/ next to test/: its own split
    assert d.meta["subset"]["num_train"] == 30 and d.train.source_index.max() < 30
    assert load_dataset("imagefolder", root=tmp_path, size=[8, 12]).input_shape == (3, 8, 12)
    with pytest.raises(ValueError, match="brings its own validation split"):
        load_dataset("imagefolder", root=tmp_path, val_fraction=0.1)
    only_val = tmp_path / "only_val"
    _write_folder(only_val, splits=(("train", 3), ("val", 2)))
    v = load_dataset("imagefolder", root=only_val)
    assert v.val is None and len(v.test) == 6 and v.meta["splits"]["test"].endswith("val")


def test_imagefolder_lazy_matches_in_memory(tmp_path):
    _write_folder(tmp_path)
    mem = load_dataset("imagefolder", root=tmp_path, size=16, augment="cifar-crop-flip")
    lazy = load_dataset("imagefolder", root=tmp_path, size=16, augment="cifar-crop-flip", in_memory=False)
    assert isinstance(lazy.train, ImageFolderDataset) and lazy.meta["in_memory"] is False
    assert lazy.input_shape == mem.input_shape == (3, 16, 16)
    assert lazy.meta["normalization"] == mem.meta["normalization"]  # all 24 images < STATS_SAMPLES
    for i in range(len(mem.test)):  # evaluation inputs identical on both paths
        x, y = lazy.test[i]
        assert torch.allclose(x, mem.test[i][0], atol=1e-6) and int(y) == int(mem.test.y[i])
    torch.manual_seed(0)
    xa = torch.stack([lazy.train[i][0] for i in range(6)])
    torch.manual_seed(0)
    assert torch.equal(xa, torch.stack([lazy.train[i][0] for i in range(6)]))  # v2 draws from the torch RNG
    split = load_dataset(
        "imagefolder", root=tmp_path, size=16, augment="flip", in_memory=False, val_fraction=0.25, noise_rate=0.5
    )
    assert isinstance(split.val, ImageFolderDataset) and split.val.transform is None and split.train.transform
    assert (len(split.train), len(split.val)) == (18, 6) and bool((split.train.y != split.train.clean_y).any())


def test_imagefolder_lazy_trains_reproducibly(tmp_path):
    from prunezoo.models import build_model
    from prunezoo.training import Trainer, TrainingConfig

    _write_folder(tmp_path)
    lazy = load_dataset("imagefolder", root=tmp_path, size=8, augment="cifar-crop-flip", in_memory=False)
    mem = load_dataset("imagefolder", root=tmp_path, size=8, augment="cifar-crop-flip")
    cfg = TrainingConfig(epochs=8, batch_size=8, lr=0.05, seed=3)

    def fit(data):
        torch.manual_seed(0)
        model = build_model("mlp", num_classes=3, input_shape=(3, 8, 8), hidden=[16])
        history = Trainer(model, data.train, cfg, eval_sets={"test": data.test}).fit()
        return model, history

    m1, h1 = fit(lazy)
    m2, h2 = fit(lazy)
    assert h1[-1]["train_loss"] == h2[-1]["train_loss"]  # per-batch seeded v2 augmentation
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    _, hm = fit(mem)
    assert h1[-1]["test_acc"] > 0.9 and hm[-1]["test_acc"] > 0.9  # both paths learn the class colours


def _study(tmp_path, dataset: dict) -> str:
    import yaml

    path = tmp_path / "study.yaml"
    cfg = {
        "name": "folder",
        "dataset": dataset,
        "model": {"name": "mlp", "options": {"hidden": [16]}},
        "training": {"epochs": 1, "batch_size": 8},
        "finetune": {"epochs": 1, "batch_size": 8},
        "methods": [
            {"name": "mag", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.5]},
            {"name": "snip", "kind": "at-init", "criterion": "snip", "sparsities": [0.5], "batches": 1},
        ],
    }
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("in_memory", [True, False])
def test_imagefolder_study_through_the_cli(tmp_path, in_memory):
    _write_folder(tmp_path / "imgs")
    options = {"size": 8, "augment": "flip", "in_memory": in_memory}
    ds = {"name": "imagefolder", "root": str(tmp_path / "imgs"), "options": options}
    res = runner.invoke(app, ["run", _study(tmp_path, ds), "--out", str(tmp_path / "out"), "--workers", "1", "-q"])
    assert res.exit_code == 0, res.output
    rows = __import__("json").loads(next((tmp_path / "out").glob("folder-*/results.json")).read_text())["rows"]
    assert {r["method"] for r in rows} == {"dense", "mag", "snip"}
    missing = {**ds, "root": str(tmp_path / "nowhere")}
    res = runner.invoke(app, ["run", _study(tmp_path, missing), "--out", str(tmp_path / "out2"), "-q"])
    assert res.exit_code == 2 and "dataset.root" in res.output and "nowhere" in res.output
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").glob("folder-*"))


def _break(kind: str, root):
    if kind == "no root":
        return root / "absent", "not found"
    _write_folder(root)
    if kind == "no train":
        (root / "train").rename(root / "training")
        return root, "no train/ folder"
    if kind == "no test":
        (root / "test").rename(root / "testing")
        return root, r"no test/ \(or val/\) folder"
    if kind == "no classes":
        for p in (root / "test").rglob("*.png"):
            p.unlink()
        for c in CLASSES:
            (root / "test" / c).rmdir()
        return root, "no class folders"
    if kind == "empty class":
        for p in (root / "train" / "bee").glob("*.png"):
            p.unlink()
        return root, r"without images in .*\['bee'\]"
    if kind == "classes differ":
        (root / "test" / "cow").rename(root / "test" / "dog")
        return root, r"only in train/: \['cow'\], only in test/: \['dog'\]"
    if kind == "mixed sizes":
        Image.new("RGB", (7, 5)).save(root / "train" / "ant" / "zz.png")
        return root, "different sizes.*set size"
    if kind == "unreadable":
        (root / "train" / "ant" / "bad.png").write_bytes(b"not a png")
        return root, "cannot read image .*bad.png"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["no root", "no train", "no test", "no classes", "empty class", "classes differ", "mixed sizes", "unreadable"],
)
def test_imagefolder_errors_name_the_problem(tmp_path, kind):
    root, message = _break(kind, tmp_path)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset("imagefolder", root=root)
    if kind not in ("mixed sizes", "unreadable"):  # layout problems point at dataset.root
        assert isinstance(err.value, ConfigError) and err.value.field == "dataset.root"
        assert str(root) in str(err.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "size must be"),
        ({"size": [4, 4, 4]}, "size must be"),
        ({"in_memory": "yes"}, "in_memory"),
        ({"mean": [0.5, 0.5]}, "mean must be"),
        ({"mean": 0.5}, "give both mean and std"),
        ({"mean": 0.5, "std": 0}, "std must be > 0"),
        ({"download": True}, "cannot download"),
    ],
)
def test_imagefolder_bad_options(tmp_path, options, message):
    _write_folder(tmp_path, splits=(("train", 2), ("test", 1)))
    with pytest.raises(ValueError, match=message):
        load_dataset("imagefolder", root=tmp_path, **options)
