"""``python -m sanmini.train DATA --model NAME ...``, or the same under ``torchrun``.

    python -m sanmini.train data/digits --model san10_pairwise --image-size 64 --epochs 5 \
        --batch-size 32 --model-arg width=16 --model-arg kernel_size=3 --model-arg backend=torch
    torchrun --nproc_per_node=8 -m sanmini.train /data/imagenet --model san10_pairwise --amp
    python -m sanmini.train /data/imagenet --evaluate --weights san10_pairwise.pth
"""
import sys

from ..cli import run_command
from .runner import main


def cli(argv=None) -> int:
    """:func:`main` as a command: one line and exit 2 for a user error (``--debug``: the traceback)."""
    return run_command("sanmini.train", main, argv)


if __name__ == "__main__":
    sys.exit(cli())
