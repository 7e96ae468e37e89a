"""The SAN's 2 x 2 max-pool between stages, ``max_pool2x2``, on two backends.

A SAN downsamples with a max-pool of 2 x 2 windows at stride 2 before each of its five stages
(Zhao et al., CVPR 2020, Table 1; :class:`sanmini.models.SAN`). In training, torch's CPU max-pool of
an NCHW tensor returns a 64-bit index of each window's maximum as well; in one profiled SAN10 step
at the book's scale (batch 32, 64 x 64, one thread, 2026-12-06) the five pools took 7% of the
operator time. This module computes the same function:

    y[n, c, i, j] = max(x[n, c, 2i, 2j], x[n, c, 2i, 2j+1], x[n, c, 2i+1, 2j], x[n, c, 2i+1, 2j+1])

with the gradient going, as torch's does, to the first position of the window (in that order)
holding the maximum, or holding a NaN (a NaN is the maximum of a window that has one). A last row
or column of odd size is left out, as torch's does (floor); its gradient is zero.

Backends (``backend=``):

- ``"torch"``: ``torch.nn.functional.max_pool2d(x, 2, 2)``, the specification; any device and dtype;
- ``"cpu"``: two Numba kernels (``max_pool_forward``, ``max_pool_backward``) for CPU
  tensors of float32 and float64, which keep the window's position (0 to 3, one byte) for the
  backward pass instead of a 64-bit index. Their inner loops are branch-free (a comparison picks a
  value, never a jump), so LLVM vectorises them;
- ``"auto"``: ``"cpu"`` for float32 and float64 CPU tensors where Numba is installed, else
  ``"torch"``; ``"cuda"``: ``"torch"`` (a GPU's own max-pool is fast; there is no Numba CUDA
  kernel for it). ``"cpu"`` on a CPU tensor of another dtype (float16, bfloat16: a SAN trained
  under ``torch.autocast``) is torch's max-pool too, which computes the same values.

Outputs and gradients of the two backends are equal, bit for bit: a maximum is exact, and the
gradient is copied, never summed.
"""
# No `from __future__ import annotations` in this module: torch 2.4's custom_op reads the
# operators' type hints as objects and refuses them as strings (ValueError: infer_schema).
import torch
import torch.nn.functional as F
from torch import Tensor

from .functional import NUMBA_INSTALLED
from .geometry import BACKENDS, check_tensor

__all__ = ["max_pool2x2"]

_KERNEL_DTYPES = (torch.float32, torch.float64)

if NUMBA_INSTALLED:
    import numba
    import numpy as np
    from numba import prange

    from .numba_cache import kernel_cache_dir

    CACHE_DIR = kernel_cache_dir()
    _user_cache_dir = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(CACHE_DIR) if CACHE_DIR is not None else _user_cache_dir

    @numba.njit(inline="always")
    def _pool_row(y, position, top, bottom):
        """One output row: y[j] = the maximum of window j of rows ``top`` and ``bottom``,
        position[j] its place in the window (0 = top left, 1 = top right, 2, 3 below)."""
        for j in range(y.shape[0]):
            m, k = top[2 * j], np.uint8(0)
            v = top[2 * j + 1]
            larger = (v > m) | (v != v)              # a NaN wins, as in torch's max-pool
            m, k = (v, np.uint8(1)) if larger else (m, k)
            v = bottom[2 * j]
            larger = (v > m) | (v != v)
            m, k = (v, np.uint8(2)) if larger else (m, k)
            v = bottom[2 * j + 1]
            larger = (v > m) | (v != v)
            m, k = (v, np.uint8(3)) if larger else (m, k)
            y[j] = m
            position[j] = k

    @numba.njit(inline="always")
    def _unpool_row(top, bottom, grad_y, position, zero):
        """The adjoint of ``_pool_row``: grad_y[j] to its window's maximum, zero elsewhere,
        over every column of the two input rows (an odd last column reads no window)."""
        cols = 2 * grad_y.shape[0]
        for w in range(cols):
            j = w >> 1
            k, g = position[j], grad_y[j]
            top[w] = g if k == (w & 1) else zero
            bottom[w] = g if k == (w & 1) + 2 else zero
        for w in range(cols, top.shape[0]):
            top[w] = zero
            bottom[w] = zero

    @numba.njit(parallel=True, cache=CACHE_DIR is not None)
    def max_pool_forward(x, y, position):
        """x (N, C, H, W) -> y (N, C, H // 2, W // 2) and position (N, C, H // 2, W // 2), uint8."""
        N, C, Ho = y.shape[0], y.shape[1], y.shape[2]
        for plane in prange(N * C):
            n, c = plane // C, plane % C
            for i in range(Ho):
                _pool_row(y[n, c, i], position[n, c, i], x[n, c, 2 * i], x[n, c, 2 * i + 1])

    @numba.njit(parallel=True, cache=CACHE_DIR is not None)
    def max_pool_backward(grad_y, position, grad_x, zero):
        """grad_y, position (N, C, Ho, Wo) -> grad_x (N, C, H, W), every element written."""
        N, C, Ho = grad_y.shape[0], grad_y.shape[1], grad_y.shape[2]
        H = grad_x.shape[2]
        for plane in prange(N * C):
            n, c = plane // C, plane % C
            for i in range(Ho):
                _unpool_row(grad_x[n, c, 2 * i], grad_x[n, c, 2 * i + 1], grad_y[n, c, i],
                            position[n, c, i], zero)
            for i in range(2 * Ho, H):                # an odd last row reads no window
                grad_x[n, c, i] = zero

    numba.config.CACHE_DIR = _user_cache_dir


# --- custom operators --------------------------------------------------------------------------

@torch.library.custom_op("sanmini::max_pool2x2", mutates_args=())
def _max_pool_op(x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.contiguous()
    n, c, h, w = x.shape
    y = x.new_empty(n, c, h // 2, w // 2)
    position = torch.empty(n, c, h // 2, w // 2, dtype=torch.uint8)
    max_pool_forward(x.numpy(), y.numpy(), position.numpy())
    return y, position


@_max_pool_op.register_fake
def _(x):
    n, c, h, w = x.shape
    return x.new_empty(n, c, h // 2, w // 2), x.new_empty(n, c, h // 2, w // 2, dtype=torch.uint8)


@torch.library.custom_op("sanmini::max_pool2x2_backward", mutates_args=())
def _max_pool_backward_op(grad_y: Tensor, position: Tensor, height: int, width: int) -> Tensor:
    grad_y = grad_y.contiguous()
    grad_x = grad_y.new_empty(grad_y.shape[0], grad_y.shape[1], height, width)
    zero = np.float64(0) if grad_y.dtype == torch.float64 else np.float32(0)
    max_pool_backward(grad_y.numpy(), position.numpy(), grad_x.numpy(), zero)
    return grad_x


@_max_pool_backward_op.register_fake
def _(grad_y, position, height, width):
    return grad_y.new_empty(grad_y.shape[0], grad_y.shape[1], height, width)


def _setup(ctx, inputs, output):
    ctx.size = tuple(inputs[0].shape[-2:])
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _grad(ctx, grad_y, _grad_position):
    (position,) = ctx.saved_tensors
    return torch.ops.sanmini.max_pool2x2_backward(grad_y, position, *ctx.size)


_max_pool_op.register_autograd(_grad, setup_context=_setup)


# --- public API ----------------------------------------------------------------------------------

def resolve_pool_backend(backend: str, x: Tensor) -> str:
    """``"cpu"`` or ``"torch"``: which implementation of :func:`max_pool2x2` runs ``x``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    on_cpu = x.device.type == "cpu"
    if backend == "cpu":
        if not NUMBA_INSTALLED:
            raise ValueError("backend='cpu' needs numba (pip install numba); backend='torch' needs nothing")
        if not on_cpu:
            raise ValueError(f"backend='cpu' needs CPU tensors, got a tensor on {x.device}; use "
                             "backend='auto', 'cuda' or 'torch'")
    if backend in ("cpu", "auto") and on_cpu and x.dtype in _KERNEL_DTYPES and NUMBA_INSTALLED:
        return "cpu"
    return "torch"


def max_pool2x2(x: Tensor, backend: str = "auto") -> Tensor:
    """x (N, C, H, W) -> (N, C, H // 2, W // 2): the maximum of each 2 x 2 window, stride 2;
    ``torch.nn.functional.max_pool2d(x, 2, 2)`` in value and gradient (see the module's text)."""
    check_tensor("x", x, 4)
    if min(x.shape[-2:]) < 2:
        raise ValueError(f"x must be at least 2 x 2 pixels to pool 2 x 2 windows, got {tuple(x.shape)}")
    if resolve_pool_backend(backend, x) == "torch":
        return F.max_pool2d(x, 2, 2)
    return torch.ops.sanmini.max_pool2x2(x)[0]

