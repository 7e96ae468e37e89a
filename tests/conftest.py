"""Test setup: with no GPU, the "cuda" backend runs in Numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported, so it is set here, before any
test module imports sanmini's kernels. On a machine with a GPU the "cuda" tests use the GPU.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def cuda_test_device() -> torch.device:
    """Where the "cuda" backend's tensors live in this test run: the GPU, or the CPU (simulator)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
