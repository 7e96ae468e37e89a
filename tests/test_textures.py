"""sanmini.data.textures: crops of the photographs and textures that scikit-image and scikit-learn
ship, one class per source, at native resolution, with training and validation crops from bands
that never share a pixel."""
from __future__ import annotations

import itertools

import pytest
import torch

from sanmini.data.textures import SOURCES, bands, source, textures

S = 64


@pytest.fixture(scope="module")
def crops():
    return {split: textures(split, per_class=30, crop_size=S, seed=3, normalize=False)
            for split in ("pool", "val", "tune", "holdout")}


def _gap(a, b) -> int:
    """Columns between two crops (top, left) of side S of one source: < 0 if they overlap in x."""
    (_, la), (_, lb) = a, b
    return max(la, lb) - min(la, lb) - S


@pytest.mark.slow                     # the fixture imports scikit-learn and scikit-image
def test_no_validation_crop_overlaps_or_touches_a_training_crop(crops):
    # Pairwise, by rectangles: a validation crop and a training crop of the same source are at
    # least a crop's width apart, so no validation pixel was trained on (nor its neighbours).
    for held, trained in (("val", "pool"), ("holdout", "tune"), ("val", "tune"), ("val", "holdout")):
        by_class = {}
        for k, top, left in crops[trained].positions:
            by_class.setdefault(k, []).append((top, left))
        for k, top, left in crops[held].positions:
            for other in by_class[k]:
                assert _gap((top, left), other) >= S, (held, trained, SOURCES[k], (top, left), other)


@pytest.mark.slow                     # the fixture imports scikit-learn and scikit-image
def test_crops_are_the_sources_pixels_at_native_resolution(crops):
    for split, dataset in crops.items():
        images, labels = dataset.tensors
        assert images.shape[1:] == (3, S, S) and labels.tolist() == [k for k, _, _ in dataset.positions]
        assert torch.bincount(labels).tolist() == [30] * len(SOURCES)
        for i in (0, len(images) // 2, len(images) - 1):
            k, top, left = dataset.positions[i]
            expected = source(SOURCES[k])[top:top + S, left:left + S]
            assert torch.equal(images[i, 0], expected) and torch.equal(images[i, 1], expected)
            assert float(expected.std()) >= 0.02                    # crops with detail only
    assert dataset.classes == list(SOURCES)


def test_each_seed_redraws_the_training_crops_and_keeps_the_validation_crops():
    a, b = textures("pool", per_class=5, seed=0), textures("pool", per_class=5, seed=1)
    assert a.positions != b.positions
    assert textures("pool", per_class=5, seed=0).positions == a.positions
    assert textures("val", per_class=5, seed=0).positions == textures("val", per_class=5, seed=1).positions


def test_bands_leave_a_crop_wide_gap():
    for width in (224 + 64 + 64, 384, 512, 640):
        b = bands(width, S)
        assert b["pool"][1] + S <= b["val"][0] and b["tune"][1] + S <= b["holdout"][0]
        assert b["holdout"][1] == b["pool"][1] and b["val"][1] == width
        assert all(hi - lo >= S for lo, hi in b.values())
    with pytest.raises(ValueError, match="an image 300 pixels wide is too narrow for crop_size 64"):
        bands(300, S)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "test"}, r"split must be one of \('pool', 'val', 'tune', 'holdout'\), got 'test'"),
    ({"per_class": 0}, r"per_class must be an int >= 1, got 0"),
    ({"names": ("brick", "moon")}, r"name must be one of .* got 'moon'"),
    ({"names": ("brick", "brick")}, r"names must list distinct sources"),
    ({"split": "val", "per_class": 1000}, r"found \d+ crops of 64 pixels with detail"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        textures(**kwargs)


def test_every_source_is_local():
    # Nothing is downloaded: each source is a file inside scikit-image or scikit-learn.
    for name in SOURCES:
        image = source(name)
        assert image.ndim == 2 and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert not set(itertools.chain(SOURCES)) & {"moon", "retina", "hubble_deep_field"}
