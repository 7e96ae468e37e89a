"""``python -m sanmini.data {digits,photos,imagenette} DIR``: write a dataset as an image folder.

    python -m sanmini.data digits data/digits       # 1,437 + 360 PNGs, 64 x 64, 10 classes
    python -m sanmini.data photos data/photos       # 6 photos x 64 crops each split, 6 classes
    python -m sanmini.data imagenette data          # downloads data/imagenette2-160

then ``python -m sanmini.train data/digits --image-size 64 ...``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import run_command
from .folders import save_image_folder
from .imagenette import download_imagenette
from .small import digits, photo_crops


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m sanmini.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["digits", "photos", "imagenette"])
    parser.add_argument("dir", type=Path, help="output folder (the parent folder for imagenette)")
    parser.add_argument("--image-size", type=int, default=64, help="digits: side after upsampling; "
                        "photos: crop side (default 64)")
    parser.add_argument("--crops-per-photo", type=int, default=64, help="photos: crops per photo and split")
    parser.add_argument("--size", default="160px", help="imagenette: 160px, 320px or full")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)

    if args.dataset == "imagenette":
        folder = download_imagenette(args.dir, size=args.size)
    else:
        for split in ("train", "val"):
            if args.dataset == "digits":
                dataset = digits(split, image_size=args.image_size, normalize=False)
            else:
                dataset = photo_crops(split, crop_size=args.image_size,
                                      crops_per_photo=args.crops_per_photo, normalize=False)
            save_image_folder(dataset, args.dir, split, dataset.classes)
        folder = args.dir
    print(f"wrote {folder}: train/ and val/, one folder per class")
    return folder


def cli(argv=None) -> int:
    """:func:`main` as a command: one line and exit 2 for a user error such as no network or a bad
    folder (``--debug``: the traceback)."""
    return run_command("sanmini.data", main, argv)


if __name__ == "__main__":
    sys.exit(cli())
