"""The ``"cuda"`` backend: the SAN operators as Numba CUDA kernels, ``numba.cuda.jit``.

One thread per output element; consecutive threads take consecutive elements of the last (width)
axis, so the writes of a warp coalesce, and so do the reads of ``x`` at stride 1. The per-element
math is :mod:`.elementwise`, compiled as CUDA device functions. Tensors go to the kernels through
``__cuda_array_interface__`` (no copy) and the kernels run on torch's current stream, so no host
round trip is needed.

With no GPU, Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported) runs
these kernels in Python on CPU tensors: that is how the tests check them on a machine without a GPU.
Arguments of every kernel: the arrays, then ``K, stride, padding, dilation, reflect, acc``.
"""
from __future__ import annotations

import sys

import numba
import torch
from numba import cuda

from .elementwise import build
from .kernel_backend import KernelBackend

THREADS_PER_BLOCK = 256

_m = build(cuda.jit(device=True))
aggregation_at = _m.aggregation_at
aggregation_weight_grad_at = _m.aggregation_weight_grad_at
window_gather_at = _m.window_gather_at
subtraction_at = _m.subtraction_at
centre_gather_at = _m.centre_gather_at


@cuda.jit
def aggregation_forward(x, weight, y, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), weight (N, Cw, K*K, Ho, Wo) -> y (N, C, Ho, Wo)."""
    N, C, Ho, Wo = y.shape
    i = cuda.grid(1)
    if i < N * C * Ho * Wo:
        n, c, ho, wo = i // (C * Ho * Wo), (i // (Ho * Wo)) % C, (i // Wo) % Ho, i % Wo
        y[n, c, ho, wo] = aggregation_at(x, weight, n, c, ho, wo, K, stride, padding, dilation,
                                         reflect, acc)


@cuda.jit
def aggregation_input_grad(weight, grad_y, grad_x, K, stride, padding, dilation, reflect, acc):
    """weight (N, Cw, K*K, Ho, Wo), grad_y (N, C, Ho, Wo) -> grad_x (N, C, H, W)."""
    N, C, H, W = grad_x.shape
    i = cuda.grid(1)
    if i < N * C * H * W:
        n, c, h, w = i // (C * H * W), (i // (H * W)) % C, (i // W) % H, i % W
        grad_x[n, c, h, w] = window_gather_at(weight, grad_y, True, n, c, h, w, H, W, K, stride,
                                              padding, dilation, reflect, acc)


@cuda.jit
def aggregation_weight_grad(x, grad_y, grad_w, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), grad_y (N, C, Ho, Wo) -> grad_w (N, Cw, K*K, Ho, Wo)."""
    N, Cw, KK, Ho, Wo = grad_w.shape
    i = cuda.grid(1)
    if i < N * Cw * KK * Ho * Wo:
        n, cw, j = i // (Cw * KK * Ho * Wo), (i // (KK * Ho * Wo)) % Cw, (i // (Ho * Wo)) % KK
        ho, wo = (i // Wo) % Ho, i % Wo
        grad_w[n, cw, j, ho, wo] = aggregation_weight_grad_at(
            x, grad_y, n, cw, Cw, j // K, j % K, ho, wo, stride, padding, dilation, reflect, acc)


@cuda.jit
def subtraction_forward(x1, x2, y, K, stride, padding, dilation, reflect, acc):
    """x1, x2 (N, C, H, W) -> y (N, C, K*K, Ho, Wo); one thread per output position (n, c, ho, wo)."""
    N, C, KK, Ho, Wo = y.shape
    i = cuda.grid(1)
    if i < N * C * Ho * Wo:
        n, c, ho, wo = i // (C * Ho * Wo), (i // (Ho * Wo)) % C, (i // Wo) % Ho, i % Wo
        subtraction_at(x1, x2, y, n, c, ho, wo, K, stride, padding, dilation, reflect, acc)


@cuda.jit
def subtraction_backward(grad, grad_x1, grad_x2, K, stride, padding, dilation, reflect, acc):
    """grad (N, C, K*K, Ho, Wo) -> grad_x1, grad_x2 (N, C, H, W)."""
    N, C, H, W = grad_x1.shape
    i = cuda.grid(1)
    if i < N * C * H * W:
        n, c, h, w = i // (C * H * W), (i // (H * W)) % C, (i // W) % H, i % W
        grad_x1[n, c, h, w] = centre_gather_at(grad, n, c, h, w, H, W, K, stride, padding,
                                               dilation, reflect, acc)
        # b (here grad[:, :, 0]) is not read when use_b is False.
        grad_x2[n, c, h, w] = -window_gather_at(grad, grad[:, :, 0], False, n, c, h, w, H, W, K,
                                                stride, padding, dilation, reflect, acc)


# Array arguments of each kernel, by dimension: 5 marks a (N, C, K*K, Ho, Wo) view.
KERNEL_ARRAY_NDIMS = {
    "aggregation_forward": (4, 5, 4),
    "aggregation_input_grad": (5, 4, 4),
    "aggregation_weight_grad": (4, 4, 5),
    "subtraction_forward": (4, 4, 5),
    "subtraction_backward": (5, 4, 4),
}


def kernel_signature(name: str, dtype=numba.float32) -> tuple:
    """Numba argument types of kernel ``name`` for C-contiguous arrays of ``dtype``, e.g. for
    ``numba.cuda.compile_ptx(getattr(sanmini.ops.cuda, name).py_func, sig, cc=(9, 0))``."""
    arrays = tuple(numba.types.Array(dtype, ndim, "C") for ndim in KERNEL_ARRAY_NDIMS[name])
    return arrays + (numba.int64,) * 4 + (numba.boolean, dtype)


def simulated() -> bool:
    """True when Numba's CUDA simulator stands in for a GPU."""
    return bool(numba.config.ENABLE_CUDASIM)


def run(kernel, blocks: int, threads: int, tensors, scalars, shared_bytes: int = 0) -> None:
    """Launch ``kernel[blocks, threads]`` with ``shared_bytes`` of dynamic shared memory on torch's
    current stream, the tensors handed over without a copy; under the simulator, on CPU tensors."""
    if simulated():
        kernel[blocks, threads, 0, shared_bytes](*(t.numpy() for t in tensors), *scalars)
        return
    device = tensors[0].device
    stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
    # sync=False: the tensors are ready on torch's current stream, which is the one we launch on.
    arrays = [cuda.as_cuda_array(t, sync=False) for t in tensors]
    with cuda.gpus[device.index if device.index is not None else torch.cuda.current_device()]:
        kernel[blocks, threads, stream, shared_bytes](*arrays, *scalars)


def _launch(kernel, total, tensors, scalars):
    if total == 0:
        return
    threads = min(THREADS_PER_BLOCK, total)
    run(kernel, (total + threads - 1) // threads, threads, tensors, scalars)


backend = KernelBackend("cuda", sys.modules[__name__], _launch)
