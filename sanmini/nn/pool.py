"""The SAN's 2 x 2 max-pool as a layer: :func:`sanmini.ops.max_pool2x2` with a backend."""
from __future__ import annotations

import torch
from torch import nn

from .. import ops
from ..ops.geometry import BACKENDS
from .checks import check_choice


class MaxPool2x2(nn.MaxPool2d):
    """x (N, C, H, W) -> (N, C, H // 2, W // 2): ``nn.MaxPool2d(kernel_size=2, stride=2)`` computed
    by :func:`sanmini.ops.max_pool2x2` on ``backend`` (the same values and gradients; on a CPU,
    Numba kernels that keep one byte per output for the backward pass). :func:`set_backend` sets
    its backend with the SAN operators'."""

    def __init__(self, backend: str = "auto"):
        super().__init__(kernel_size=2, stride=2)
        check_choice("backend", backend, BACKENDS)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.max_pool2x2(x, backend=self.backend)

    def extra_repr(self) -> str:
        return f"kernel_size=2, stride=2, backend={self.backend!r}"
