"""Which photograph or texture is this crop from? A task of natural pixel detail at its own
resolution, built from the images that scikit-image and scikit-learn ship (nothing is downloaded).

One class per source image (:data:`SOURCES`): square crops of ``crop_size`` pixels, cut at the
image's native resolution (no resizing), in grey (colour alone would tell the colour photographs
from the grey ones without looking at any pixel detail), repeated into 3 channels, in [0, 1] or
normalised with ImageNet's mean and std. The label is the source, so it survives every zero-shot
view (a rotated crop of brick is still brick).

Each source image is cut into vertical bands, left to right, with a gap of ``crop_size`` columns
between bands so that no two crops of different bands share a pixel, or even touch::

    | train (tuning) | gap | holdout | gap | val |
    |<------- training pool -------->|

- ``"val"``: the rightmost quarter (at least one crop wide): the validation crops, the same for
  every seed (a grid of positions spread over the band);
- ``"pool"``: everything left of the validation band's gap: the training crops, drawn at random
  positions from ``seed`` (each seed redraws the training set);
- ``"tune"`` and ``"holdout"``: the pool cut again the same way (its right quarter for
  ``"holdout"``): for choosing a step size on images of the training pool that the tuning run
  did not train on, never on the validation band.

Crops with almost no detail (a pixel standard deviation below ``min_std``, e.g. the black sky of
a photograph) are not drawn: their label could be any source.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import TensorDataset

SKIMAGE = ("brick", "grass", "gravel", "immunohistochemistry", "coins", "page", "coffee", "astronaut", "cat", "camera")
SKLEARN = ("china", "flower")
SOURCES = SKIMAGE + SKLEARN
"""The sources, each a class, are scikit-image's textures and photographs (its files that ship inside
the package) and scikit-learn's two sample photographs."""

SPLITS = ("pool", "val", "tune", "holdout")


def source(name: str) -> torch.Tensor:
    """A source image in grey, (H, W) float32 in [0, 1], at its native resolution (luminance
    weights of ITU-R 601, as PIL's ``convert("L")``, for colour images)."""
    if name not in SOURCES:
        raise ValueError(f"name must be one of {SOURCES}, got {name!r}")
    return _source(name).clone()


@functools.lru_cache(maxsize=None)
def _source(name: str) -> torch.Tensor:
    if name in SKLEARN:
        from sklearn.datasets import load_sample_image

        image = np.asarray(load_sample_image(f"{name}.jpg"))
    else:
        import skimage.data

        image = np.asarray(getattr(skimage.data, name)())
    image = image.astype(np.float32) / 255.0
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(image))


def bands(width: int, crop_size: int) -> dict:
    """{split: (first column, last column + 1)} of an image ``width`` columns wide (see the
    module's docstring): every band at least ``crop_size`` wide, ``crop_size`` columns between
    bands. Refused: an image too narrow for the five bands."""
    def cut(lo: int, hi: int):
        right = max((hi - lo) // 4, crop_size)
        return (lo, hi - right - crop_size), (hi - right, hi)

    pool, val = cut(0, width)
    tune, holdout = cut(*pool)
    out = {"pool": pool, "val": val, "tune": tune, "holdout": holdout}
    narrow = [name for name, (lo, hi) in out.items() if hi - lo < crop_size]
    if narrow:
        raise ValueError(f"an image {width} pixels wide is too narrow for crop_size {crop_size}: its "
                         f"{', '.join(narrow)} band would be narrower than a crop")
    return out


@functools.lru_cache(maxsize=None)
def _detail(name: str, crop_size: int) -> np.ndarray:
    """:func:`_crop_std` of a source, computed once per process."""
    return _crop_std(_source(name), crop_size)


def _crop_std(image: torch.Tensor, crop_size: int) -> np.ndarray:
    """The pixel standard deviation of the crop at every (top, left), from summed-area tables."""
    x = image.double().numpy()
    def box(a):
        c = np.pad(a.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return (c[crop_size:, crop_size:] - c[:-crop_size, crop_size:] - c[crop_size:, :-crop_size]
                + c[:-crop_size, :-crop_size]) / crop_size ** 2
    mean = box(x)
    return np.sqrt(np.maximum(box(x * x) - mean ** 2, 0.0))


def _positions(image: torch.Tensor, std: np.ndarray, band: tuple, crop_size: int, count: int, generator,
               min_std: float):
    """``count`` (top, left) positions of crops inside ``band`` with pixel std >= ``min_std``:
    random from ``generator``, or a regular grid (the same for every seed) when it is None."""
    height = image.shape[0]
    lo, hi = band[0], band[1] - crop_size
    if generator is None:                       # a grid of stride S / 8, then its detailed positions
        stride = max(1, crop_size // 8)
        candidates = [(t, left) for t in range(0, height - crop_size + 1, stride)
                      for left in range(lo, hi + 1, stride)]
    else:
        tops = torch.randint(0, height - crop_size + 1, (count * 20,), generator=generator).tolist()
        lefts = torch.randint(lo, hi + 1, (count * 20,), generator=generator).tolist()
        candidates = list(zip(tops, lefts))
    chosen = [(t, left) for t, left in candidates if std[t, left] >= min_std]
    if len(chosen) < count:
        raise ValueError(f"found {len(chosen)} crops of {crop_size} pixels with detail (std >= {min_std}) in "
                         f"columns {band[0]}..{band[1] - 1}, not {count}: ask for fewer")
    if generator is None:                                   # spread over the grid, in order
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, count).round().astype(int)]
    return chosen[:count]


def textures(split: str = "pool", per_class: int = 40, crop_size: int = 64, seed: int = 0,
             names=SOURCES, normalize: bool = True, min_std: float = 0.02) -> TensorDataset:
    """Crops of every source of ``names``: a dataset of ``(crop (3, S, S) float32, class int64)``.

    Args:
        split: ``"pool"`` (training), ``"val"``, ``"tune"`` or ``"holdout"`` (see the module's
            docstring).
        per_class: crops of each source.
        crop_size: S, in the source's own pixels.
        seed: draws the positions of ``"pool"``, ``"tune"`` and ``"holdout"`` crops; ``"val"``
            crops are a fixed grid, the same for every seed.
        names: the sources, in class order (default :data:`SOURCES`).
        normalize: ImageNet's mean and std (else pixels in [0, 1]).
        min_std: the least pixel standard deviation of a crop.

    ``dataset.classes`` are the names; ``dataset.positions[i]`` is ``(class, top, left)`` of crop
    ``i`` in :func:`source` coordinates. Refused: an unknown split or source, sizes < 1, a source
    too small for its bands or without enough detailed crops.
    """
    from .small import _normalize

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for arg, value in (("per_class", per_class), ("crop_size", crop_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
    names = tuple(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names must list distinct sources, got {names!r}")
    generator = None if split == "val" else torch.Generator().manual_seed(
        1_000_003 * seed + SPLITS.index(split))
    crops, positions = [], []
    for k, name in enumerate(names):
        image = source(name)
        if image.shape[0] < crop_size:
            raise ValueError(f"source {name!r} is {image.shape[0]} pixels high, less than crop_size {crop_size}")
        band = bands(image.shape[1], crop_size)[split]
        for top, left in _positions(image, _detail(name, crop_size), band, crop_size, per_class, generator, min_std):
            crops.append(image[top:top + crop_size, left:left + crop_size])
            positions.append((k, top, left))
    images = torch.stack(crops)[:, None].repeat(1, 3, 1, 1)                # (N, 3, S, S) in [0, 1]
    dataset = TensorDataset(_normalize(images) if normalize else images,
                            torch.tensor([k for k, _, _ in positions]))
    dataset.classes, dataset.positions = list(names), positions
    return dataset
