"""``python -m sanmini.train DATA --model NAME ...``, or the same under ``torchrun``.

    python -m sanmini.train data/digits --model san10_pairwise --image-size 64 --epochs 5 \
        --batch-size 32 --model-arg width=16 --model-arg kernel_size=3 --model-arg backend=torch
    torchrun --nproc_per_node=8 -m sanmini.train /data/imagenet --model san10_pairwise --amp
    python -m sanmini.train /data/imagenet --evaluate --weights san10_pairwise.pth
"""
import sys

from .runner import main

USER_ERRORS = (ValueError, OSError)   # a wrong flag, file or folder: the message says which


def cli(argv=None) -> int:
    """Run :func:`main`; a user error prints one line, ``sanmini.train: error: ...``, and exits 2
    (``--debug``: the traceback instead)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        main(argv)
    except USER_ERRORS as err:
        if "--debug" in argv:
            raise
        print(f"sanmini.train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
