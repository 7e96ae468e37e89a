"""Test setup: with no GPU, the "cuda" backend runs in Numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported, so it is set here, before any
test module imports sanmini's kernels. On a machine with a GPU the "cuda" tests use the GPU.
"""
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

if not torch.cuda.is_available():
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def cuda_test_device() -> torch.device:
    """Where the "cuda" backend's tensors live in this test run: the GPU, or the CPU (simulator)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def write_class_folders(root: Path, classes, counts: dict, size=(72, 80), name="{k}.JPEG") -> Path:
    """ImageNet's layout, ``root/SPLIT/CLASS/IMAGE``, with ``counts[split]`` JPEGs per class of
    random pixels around a mean colour of each class's own (so a model can learn something)."""
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        for c, label in enumerate(classes):
            (root / split / label).mkdir(parents=True)
            for k in range(count):
                pixels = rng.normal(60 + 60 * c, 40, (*size, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / label / name.format(k=k))
    return root
