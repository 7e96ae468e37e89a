"""Small real datasets that ship inside installed packages, for training on a CPU in minutes.

Nothing here downloads anything:

- :func:`digits`: scikit-learn's handwritten digits (1,797 images, 8 x 8, 10 classes), upsampled
  to a size the models accept (64 x 64 by default: a SAN needs at least 2 pixels at its last,
  32-times smaller stage, and reflection padding of its 3 x 3 footprints). The upsampling is
  bilinear with half-pixel centres (``align_corners=False``), which keeps the strokes smooth
  rather than blocky; grey is repeated into 3 channels.
- :func:`photo`, :func:`photo_crops`: scikit-image's sample photographs, and a classification task
  made from them: "which photograph is this square crop from?". Training crops come from the left
  three quarters of each photo, validation crops from the right quarter, so they never overlap.
- :func:`noisy_crops`: (noisy, clean) crop pairs of the same photos, for denoising.

Images come normalised with ImageNet's mean and std (as :mod:`sanmini.data.folders` does), or in
[0, 1] with ``normalize=False``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .folders import IMAGENET_MEAN, IMAGENET_STD

# scikit-image's sample images that are files inside the package (others need a download).
PHOTOS = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel",
          "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
          "text")
DEFAULT_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket")


def _normalize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> normalised with ImageNet's mean and std."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _check_split(split: str) -> None:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def digits(split: str = "train", image_size: int = 64, normalize: bool = True,
           val_fraction: float = 0.2, seed: int = 0) -> TensorDataset:
    """scikit-learn's digits as a dataset of ``(image (3, S, S) float32, label int64)``.

    The split is stratified (scikit-learn's ``train_test_split``, ``random_state=seed``): 20% of
    each digit for ``"val"``, the rest for ``"train"``. Pixel values 0..16 become 0..1, then are
    upsampled bilinearly to ``image_size`` (``image_size=8`` keeps the original pixels).
    ``dataset.classes`` is ``["0", ..., "9"]``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_split(split)
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}")
    data = load_digits()
    train, val = train_test_split(np.arange(len(data.target)), test_size=val_fraction,
                                  stratify=data.target, random_state=seed)
    index = torch.from_numpy(train if split == "train" else val)
    images = torch.from_numpy(data.images).float()[index, None] / 16     # (N, 1, 8, 8) in [0, 1]
    if image_size != images.shape[-1]:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                               align_corners=False)                       # (N, 1, S, S)
    images = images.repeat(1, 3, 1, 1)                                     # (N, 3, S, S)
    if normalize:
        images = _normalize(images)
    dataset = TensorDataset(images, torch.from_numpy(data.target)[index].long())
    dataset.classes = [str(d) for d in range(10)]
    return dataset


def photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as a (3, H, W) float32 tensor in [0, 1] (grey repeated)."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; the photos that ship with scikit-image are {PHOTOS}")
    image = torch.from_numpy(np.asarray(getattr(skimage.data, name)()))
    image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    if image.ndim == 2:
        image = image[..., None].repeat(1, 1, 3)                           # (H, W, 3)
    return image[..., :3].permute(2, 0, 1).contiguous()                   # (3, H, W), alpha dropped


def _crops(names, split: str, crop_size: int, per_photo: int, seed: int):
    """Random square crops of each photo: (N, 3, S, S) in [0, 1], and (photo, top, left) of each.

    ``"train"`` crops lie in the left three quarters of a photo, ``"val"`` crops in the right
    quarter. The positions depend only on ``seed`` and ``split``.
    """
    _check_split(split)
    if not names:
        raise ValueError("names must list at least one photo")
    generator = torch.Generator().manual_seed(seed * 2 + (split == "val"))
    crops, positions = [], []
    for k, name in enumerate(names):
        image = photo(name)
        height, width = image.shape[1:]
        boundary = width - width // 4
        left_lo, left_hi = (0, boundary - crop_size) if split == "train" else (boundary, width - crop_size)
        if height < crop_size or left_hi < left_lo:
            region = "left three quarters" if split == "train" else "right quarter"
            raise ValueError(f"photo {name!r} ({height} x {width} pixels) is too small for "
                             f"crop_size {crop_size}: {split} crops come from its {region}")
        tops = torch.randint(0, height - crop_size + 1, (per_photo,), generator=generator)
        lefts = torch.randint(left_lo, left_hi + 1, (per_photo,), generator=generator)
        for top, left in zip(tops.tolist(), lefts.tolist()):
            crops.append(image[:, top:top + crop_size, left:left + crop_size])
            positions.append((k, top, left))
    return torch.stack(crops), positions


def photo_crops(split: str = "train", names=DEFAULT_PHOTOS, crop_size: int = 64,
                crops_per_photo: int = 64, normalize: bool = True, seed: int = 0) -> TensorDataset:
    """"Which photo is this crop from?": ``(crop (3, S, S), photo index)`` pairs.

    ``dataset.classes`` are the photo names; ``dataset.positions[i]`` is ``(photo index, top,
    left)`` of crop ``i`` in :func:`photo` coordinates.
    """
    images, positions = _crops(names, split, crop_size, crops_per_photo, seed)
    labels = torch.tensor([k for k, _, _ in positions])
    dataset = TensorDataset(_normalize(images) if normalize else images, labels)
    dataset.classes, dataset.positions = list(names), positions
    return dataset


def noisy_crops(split: str = "train", names=DEFAULT_PHOTOS, crop_size: int = 64,
                crops_per_photo: int = 64, sigma: float = 0.1, seed: int = 0) -> TensorDataset:
    """Denoising pairs ``(noisy (3, S, S), clean (3, S, S))``, clean in [0, 1], noisy = clean +
    ``sigma`` times standard Gaussian noise (not clipped), drawn once from ``seed``."""
    clean, positions = _crops(names, split, crop_size, crops_per_photo, seed)
    generator = torch.Generator().manual_seed(seed * 2 + 1000 + (split == "val"))
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
    dataset = TensorDataset(noisy, clean)
    dataset.positions = positions
    return dataset
