"""ImageNet-style image folders, checked, read with torchvision, with the paper's transforms.

The layout is ImageNet's::

    DATA/train/CLASS/*.JPEG      one folder per class; the class index is the folder's rank in
    DATA/val/CLASS/*.JPEG        sorted order, so train and val must have the same class folders

:func:`check_image_folder` walks the tree first, so that a missing folder, a folder without
classes, a class without images or a val split whose classes differ from train's gives an error
naming the path, not an obscure failure later. :func:`image_folder` then returns torchvision's
``ImageFolder`` with a loader whose error names an unreadable file, and :func:`check_images` reads
every image's header before training starts, so that a file that is no image is found before the
first epoch rather than hours into it.

Transforms (Zhao et al., CVPR 2020, as for ResNets): training takes a ``RandomResizedCrop`` of
``image_size`` and a horizontal flip; evaluation resizes the short side to ``image_size * 256 / 224``
and takes the central ``image_size`` square. Both normalise with ImageNet's mean and std.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets, transforms
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val")


def _has_image(folder: Path) -> bool:
    """True as soon as one file under ``folder`` (recursively, as ImageFolder reads) is an image."""
    return any(has_file_allowed_extension(name, IMG_EXTENSIONS)
               for _, _, files in os.walk(folder, followlinks=True) for name in files)


def check_split(root, split: str) -> list[str]:
    """The sorted class names of ``root/split``, or an error naming the path that is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist or is not a folder; expected "
                                f"the ImageNet layout {root}/train/CLASS/IMAGE and {root}/val/CLASS/IMAGE")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no {split} folder {folder}: expected the ImageNet layout "
                                f"{folder}/CLASS/IMAGE, one folder per class")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise ValueError(f"{folder} has no class folders: expected {folder}/CLASS/IMAGE, "
                         f"one folder per class")
    for name in classes:
        if not _has_image(folder / name):
            raise ValueError(f"class folder {folder / name} has no images: expected files ending in "
                             f"{', '.join(IMG_EXTENSIONS)}")
    return classes


def check_image_folder(root, splits=SPLITS) -> list[str]:
    """Check ``root/train`` and ``root/val`` (or the given ``splits``) and return their class names.

    Raises FileNotFoundError or ValueError naming the path for: a missing data folder or split,
    a split with no class folders, a class folder with no images, and splits whose class folders
    differ (the labels would silently disagree).
    """
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    classes = {split: check_split(root, split) for split in splits}
    first = splits[0]
    for split in splits[1:]:
        if classes[split] != classes[first]:
            only_first = sorted(set(classes[first]) - set(classes[split]))
            only_this = sorted(set(classes[split]) - set(classes[first]))
            raise ValueError(f"{Path(root) / split} and {Path(root) / first} have different class "
                             f"folders (only in {first}: {only_first[:5]}; only in {split}: "
                             f"{only_this[:5]}); both splits need the same classes")
    return classes[first]


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")   # what PIL opens 16-bit PNG, TIFF, PGM as


def _to_rgb(image: Image.Image, path) -> Image.Image:
    """An opened image -> 8-bit RGB. PIL's ``convert("RGB")`` clips integer pixels of more than 8
    bits at 255 (a 16-bit image turns almost white), so those are scaled to 0-255 here first."""
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.int64)
        low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(f"cannot read the image {path}: its mode {image.mode} pixels run from {low} to "
                             f"{high}, outside the 16-bit range 0..65535 it is read in; save it as 8 or 16 bit")
        return Image.fromarray(np.rint(pixels / 257).astype(np.uint8)).convert("RGB")   # L -> RGB
    if image.mode == "F":
        raise ValueError(f"cannot read the image {path}: its pixels are floating-point numbers (mode F), "
                         f"which have no fixed range to scale to 0-255; save it as 8 or 16 bit")
    try:
        return image.convert("RGB")
    except ValueError as err:        # a mode PIL opens but cannot convert
        raise ValueError(f"cannot read the image {path}: PIL cannot convert its mode {image.mode} to RGB "
                         f"({err})") from err


def read_image(path: str) -> Image.Image:
    """Open an image as 8-bit RGB; an unreadable or truncated file raises a ValueError naming it.

    Every mode PIL opens is read: 1, L, LA, P, RGB, RGBA, CMYK and the rest through PIL's
    ``convert("RGB")`` (alpha dropped); 16-bit greyscale (modes I;16 and I, as PIL opens 16-bit
    PNG, TIFF and PGM files) scaled from 0..65535 to 0..255 (``round(v / 257)``), where
    ``convert`` would clip every value above 255. Refused, naming the file: floating-point pixels
    (mode F), whose range is unknown, and mode I pixels outside 0..65535.
    """
    try:
        with open(path, "rb") as f:
            return _to_rgb(Image.open(f), path)
    except OSError as err:   # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"cannot read the image {path}: {err}") from err


def _header_error(path: str) -> str | None:
    """None if PIL recognises the file's header (format, size, mode), else why not."""
    try:
        with Image.open(path) as image:                          # reads the header, decodes nothing
            image.size
            if image.mode == "F":                                # read_image refuses it: say so now
                return "floating-point pixels (mode F), which have no fixed range to scale to 0-255"
    except Exception as err:                                     # noqa: BLE001 - any reason is reported
        return f"{type(err).__name__}: {err}"
    return None


def check_images(paths, threads: int = 8) -> int:
    """Read the header of every image in ``paths`` (PIL's ``Image.open``, which decodes no pixels)
    and return how many there are; raise a ValueError naming the files that are no image.

    This finds, before any training, the files that would stop a run when their turn comes: empty
    files, text or HTML saved under an image's name, formats PIL does not read, files cut inside
    their header. A file cut inside its pixel data passes (finding it needs a full decode, as
    costly as an epoch); :func:`read_image` names it when it is read. The cost is one open and a
    read of the first few KiB per file, on ``threads`` threads (which overlap the waits of a slow
    disk; the parsing holds Python's lock): 0.15 to 0.25 ms per file on a warm local disk, measured
    on 2 CPU cores, so 3 to 6 minutes for ImageNet's 1.33 million in one process and an eighth of
    that in each of 8; more on a cold or network disk.
    """
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        errors = [(p, e) for p, e in zip(paths, pool.map(_header_error, paths, chunksize=256)) if e]
    if errors:
        listed = "; ".join(f"{p} ({e})" for p, e in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise ValueError(f"{len(errors)} of {len(paths)} image files cannot be read as images: "
                         f"{listed}{more}. Remove or replace them")
    return len(paths)


def train_transform(image_size: int = 224, min_scale: float = 0.08, flip: bool = True) -> transforms.Compose:
    """PIL image -> (3, image_size, image_size) float tensor: a random crop of ``min_scale`` to all
    of the image's area (aspect 3/4 to 4/3) resized to ``image_size``, a random horizontal flip,
    normalisation. The defaults are ImageNet's; digits, say, want a larger ``min_scale``, no flip."""
    steps = [transforms.RandomResizedCrop(image_size, scale=(min_scale, 1.0))]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def eval_resize(image_size: int) -> int:
    """The short side evaluation resizes to: 256 for 224, in the same ratio for other sizes."""
    return round(image_size * 256 / 224)


def eval_transform(image_size: int = 224, resize: int | None = None) -> transforms.Compose:
    """PIL image -> (3, image_size, image_size): resize the short side, centre crop, normalise."""
    return transforms.Compose([
        transforms.Resize(resize or eval_resize(image_size)),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def image_folder(root, split: str, transform=None) -> datasets.ImageFolder:
    """torchvision's ``ImageFolder`` of ``root/split``, checked first (see :func:`check_split`).

    Items are ``(transform(image), class_index)``; with the transforms above, image is
    (3, S, S) float32. The loader is :func:`read_image`, so a bad file fails naming its path.
    """
    check_split(root, split)
    return datasets.ImageFolder(str(Path(root) / split), transform=transform, loader=read_image)


def save_image_folder(dataset, root, split: str, classes, mean=None, std=None) -> Path:
    """Write a dataset of ``(image, label)`` pairs as PNG files ``root/split/CLASS/00000.png``.

    ``image`` is a (3, H, W) or (1, H, W) float tensor in [0, 1], or normalised with ``mean`` and
    ``std`` (then un-normalised first). ``classes`` names the class folders by label. This turns the
    small datasets of :mod:`sanmini.data.small` into folders that ``python -m sanmini.train`` reads.
    """
    folder = Path(root) / split
    counts = [0] * len(classes)
    for image, label in dataset:
        label = int(label)
        if mean is not None:
            image = image * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
        pixels = np.rint(image.numpy().clip(0, 1) * 255).astype(np.uint8)   # (C, H, W)
        pixels = pixels.transpose(1, 2, 0)                                  # (H, W, C)
        if pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]                                        # (H, W): grey
        target = folder / str(classes[label])
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target / f"{counts[label]:05d}.png")
        counts[label] += 1
    return folder
