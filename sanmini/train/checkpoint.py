"""Checkpoints that survive a crash, and everything a run needs to continue exactly.

A checkpoint is one ``torch.save``'d dict::

    state_dict    the model's weights, unwrapped (no ``module.`` prefix), in the layout of the
                  released SAN checkpoints, so sanmini.models.load_pretrained reads it
    optimizer, scheduler, scaler       their state_dicts
    epoch, step   epochs and iterations completed
    rng           one entry per process: torch (CPU and CUDA), numpy and python generator states
    config        the run's TrainConfig as a dict;  best_top1, metrics: validation results

:func:`atomic_save` writes to a temporary file in the same folder, flushes it to disk, then
renames it over the target: a rename within a file system is atomic, so ``last.pt`` is always
either the previous complete checkpoint or the new complete one, whenever the process dies.
Everything in a checkpoint is a tensor or a plain Python value, so it loads with
``torch.load(weights_only=True)``, which runs no code from the file.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..models.pretrained import read_checkpoint


def atomic_save(obj, path) -> Path:
    """``torch.save(obj, path)`` such that ``path`` never holds a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:   # make the rename itself durable (POSIX); not possible everywhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load(path, map_location="cpu") -> dict:
    """A checkpoint written by :func:`atomic_save` (read with ``weights_only=True``)."""
    return read_checkpoint(path, map_location)


def rng_state(device: torch.device) -> dict:
    """The state of every random generator this process draws from."""
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"key": torch.from_numpy(state[1].astype(np.int64)), "pos": int(state[2]),
                  "has_gauss": int(state[3]), "gauss": float(state[4])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["key"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
