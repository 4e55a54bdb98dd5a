"""Batched, seeded augmentation for image tensors ``(N, C, H, W)``, and augmentations by name.

One gather for the whole batch instead of per-image PIL ops: the standard CIFAR recipe (random
crop with 4-pixel zero padding + horizontal flip) costs about as much as one copy of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomCropFlip:
    """Random ``H x W`` crop of the zero-padded image, then (optionally) a random horizontal flip.

    Equivalent to ``RandomCrop(size, padding=pad)`` + ``RandomHorizontalFlip()`` of torchvision,
    drawn independently per sample from ``generator``. Padding is applied in [0, 1] pixel space
    (before normalisation), i.e. black borders, as torchvision does.
    """

    def __init__(self, pad: int = 4, flip: bool = True):
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.pad = int(pad)
        self.flip = bool(flip)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"RandomCropFlip expects (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        p = self.pad
        dev = x.device
        # Draw on CPU from the (CPU) generator so results do not depend on the device.
        oy = torch.randint(0, 2 * p + 1, (n, 1), generator=generator)
        ox = torch.randint(0, 2 * p + 1, (n, 1), generator=generator)
        rows = oy + torch.arange(h)  # (n, h) rows of the padded image to read
        cols = ox + torch.arange(w)  # (n, w)
        if self.flip:
            flip = torch.rand(n, 1, generator=generator) < 0.5
            cols = torch.where(flip, cols.flip(1), cols)  # reading columns backwards = mirror image
        padded = F.pad(x, (p, p, p, p)) if p else x
        b = torch.arange(n).view(n, 1, 1, 1)
        ch = torch.arange(c).view(1, c, 1, 1)
        return padded[b.to(dev), ch.to(dev), rows.view(n, 1, h, 1).to(dev), cols.view(n, 1, 1, w).to(dev)]

    def __repr__(self) -> str:
        return f"RandomCropFlip(pad={self.pad}, flip={self.flip})"


# Augmentations by name (``dataset.options.augment``). Same recipe on both paths: in memory a batched
# RandomCropFlip drawn from the loader's generator (reproducible, resumable); on the lazy per-image
# path the equivalent torchvision.transforms.v2 ops. Plain literal: prunezoo.names reads it with ast.
AUGMENTATIONS: tuple[str, ...] = ("none", "cifar-crop-flip", "cifar-crop", "flip")

# name -> (padding of the random crop, horizontal flip); "none" has no entry
_RECIPES: dict[str, tuple[int, bool]] = {
    "cifar-crop-flip": (4, True),  # RandomCrop(size, padding=4) + RandomHorizontalFlip: the CIFAR recipe
    "cifar-crop": (4, False),  # crop only: digits (SVHN) must not be mirrored
    "flip": (0, True),
}


def resolve_augment(value: object, default: str = "cifar-crop-flip") -> str:
    """An ``augment`` option as a name of :data:`AUGMENTATIONS`: ``True`` is ``default``, ``False`` ``"none"``."""
    if isinstance(value, bool):
        return default if value else "none"
    if isinstance(value, str) and value in AUGMENTATIONS:
        return value
    raise ValueError(f"augment={value!r}: expected true/false or one of {list(AUGMENTATIONS)}")


def batch_augmentation(name: str) -> RandomCropFlip | None:
    """The batched, generator-seeded transform for augmentation ``name`` (None for ``"none"``)."""
    name = resolve_augment(name)
    if name == "none":
        return None
    pad, flip = _RECIPES[name]
    return RandomCropFlip(pad=pad, flip=flip)


def v2_augmentation(name: str, size: tuple[int, int]) -> list:
    """The torchvision.transforms.v2 ops of augmentation ``name`` for ``size`` (H, W) images (per image,
    on uint8 tensors, random state from torch's global generator: seed the DataLoader to reproduce)."""
    name = resolve_augment(name)
    if name == "none":
        return []
    from torchvision.transforms import v2  # deferred: only the lazy image-folder path needs it

    pad, flip = _RECIPES[name]
    ops: list = [v2.RandomCrop(tuple(size), padding=pad)] if pad else []
    return [*ops, v2.RandomHorizontalFlip()] if flip else ops
