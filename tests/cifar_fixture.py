"""A tiny CIFAR-10 written in the real on-disk format (``cifar-10-batches-py``), for tests that run offline.

The real files are Python 2 pickles (protocol 2) of dicts whose keys and strings are Python 2 ``str``:
``pickle.load(f, encoding="bytes")`` gives ``b"data"`` keys (the dataset page's recipe) and
``encoding="latin1"`` gives ``"data"`` keys (what torchvision uses). Python 3's pickler writes ``str`` as
unicode, which neither reading turns into bytes, so this writer emits the Python 2 string opcodes
itself. Contents: ``data_batch_1..5`` and ``test_batch`` with ``b"batch_label"``, ``b"labels"``
(list of int), ``b"data"`` (uint8 ``[N, 3072]``: the red plane, then green, then blue, each row-major
32 x 32) and ``b"filenames"``; ``batches.meta`` with ``b"label_names"``, ``b"num_cases_per_batch"``,
``b"num_vis"``.

The images are learnable: each class has its own colour and a bright square in its own place, plus
noise, so a few epochs of training beat chance. The md5 sums differ from the real files', so the stock
``torchvision.datasets.CIFAR10(download=False)`` rejects them (it md5-checks every file); prunezoo's
loader only requires the files to exist when ``download=False`` (see ``prunezoo.data.vision``).
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCHES = 5


class _Py2Str(str):
    """A string pickled as a Python 2 ``str`` (bytes that a Python 3 reader decodes per ``encoding``)."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: _Py2Str) -> None:
        raw = obj.encode("latin1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2_str


def _py2(obj):
    """``obj`` with every str (dict keys included) marked to be written as a Python 2 ``str``."""
    if isinstance(obj, str):
        return _Py2Str(obj)
    if isinstance(obj, dict):
        return {_py2(k): _py2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_py2(v) for v in obj]
    return obj


def _dump(path: Path, obj: dict) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(_py2(obj))
    path.write_bytes(buf.getvalue())


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[N, 3072]`` rows: class colour + a bright 8x8 square at a class-specific place + noise."""
    n = len(labels)
    colours = np.random.default_rng(1234).integers(40, 216, (10, 3))  # fixed per class, whatever the seed
    img = np.empty((n, 3, 32, 32), dtype=np.float64)
    img[:] = colours[labels][:, :, None, None]
    for c in range(10):
        r, q = divmod(c, 4)
        img[labels == c, :, 4 + 8 * r : 12 + 8 * r, 2 + 7 * q : 10 + 7 * q] = 250
    img += rng.normal(0, 30, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(n, 3072)


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced labels (each class n/10 times, up to one), in random order like the real batches."""
    return rng.permutation(np.arange(n) % 10)


def write_cifar10(root: str | Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` with ``n_train`` training images over 5 batches and ``n_test`` test
    images; returns ``root`` (what ``dataset.root`` should be)."""
    if n_train < BATCHES or n_test < 1:
        raise ValueError(f"need n_train >= {BATCHES} and n_test >= 1, got {n_train}, {n_test}")
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y = _labels(n_train, rng)
    x = _images(y, rng)
    bounds = np.linspace(0, n_train, BATCHES + 1).round().astype(int)
    for b in range(BATCHES):
        lo, hi = bounds[b], bounds[b + 1]
        _dump(
            folder / f"data_batch_{b + 1}",
            {
                "batch_label": f"training batch {b + 1} of {BATCHES}",
                "labels": [int(v) for v in y[lo:hi]],
                "data": x[lo:hi],
                "filenames": [f"{LABEL_NAMES[v]}_s_{lo + i:06d}.png" for i, v in enumerate(y[lo:hi])],
            },
        )
    yt = _labels(n_test, rng)
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [int(v) for v in yt],
            "data": _images(yt, rng),
            "filenames": [f"{LABEL_NAMES[v]}_s_{i:06d}.png" for i, v in enumerate(yt)],
        },
    )
    per_batch = int(bounds[1] - bounds[0])
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": LABEL_NAMES, "num_vis": 3072})
    return root
