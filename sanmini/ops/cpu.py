"""The ``"cpu"`` backend: the SAN operators as Numba kernels, ``numba.njit(parallel=True)``.

Each kernel runs its outer loop over rows of the output in parallel (``prange``) and calls the
per-element math of :mod:`.elementwise` for each element of the row. Nothing of size
(N, C, K*K, Ho*Wo) is allocated for aggregation: memory is that of the inputs and outputs.
Arguments of every kernel: the arrays, then ``K, stride, padding, dilation, reflect, acc``.
"""
from __future__ import annotations

import sys

import numba
from numba import prange

from .elementwise import build
from .kernel_backend import KernelBackend

_m = build(numba.njit)
aggregation_at = _m.aggregation_at
aggregation_weight_grad_at = _m.aggregation_weight_grad_at
window_gather_at = _m.window_gather_at
subtraction_at = _m.subtraction_at
centre_gather_at = _m.centre_gather_at


@numba.njit(parallel=True)
def aggregation_forward(x, weight, y, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), weight (N, Cw, K*K, Ho, Wo) -> y (N, C, Ho, Wo)."""
    N, C, Ho, Wo = y.shape
    for row in prange(N * C * Ho):
        n, c, ho = row // (C * Ho), (row // Ho) % C, row % Ho
        for wo in range(Wo):
            y[n, c, ho, wo] = aggregation_at(x, weight, n, c, ho, wo, K, stride, padding,
                                             dilation, reflect, acc)


@numba.njit(parallel=True)
def aggregation_input_grad(weight, grad_y, grad_x, K, stride, padding, dilation, reflect, acc):
    """weight (N, Cw, K*K, Ho, Wo), grad_y (N, C, Ho, Wo) -> grad_x (N, C, H, W)."""
    N, C, H, W = grad_x.shape
    for row in prange(N * C * H):
        n, c, h = row // (C * H), (row // H) % C, row % H
        for w in range(W):
            grad_x[n, c, h, w] = window_gather_at(weight, grad_y, True, n, c, h, w, H, W, K,
                                                  stride, padding, dilation, reflect, acc)


@numba.njit(parallel=True)
def aggregation_weight_grad(x, grad_y, grad_w, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), grad_y (N, C, Ho, Wo) -> grad_w (N, Cw, K*K, Ho, Wo)."""
    N, Cw, KK, Ho, Wo = grad_w.shape
    for row in prange(N * Cw * KK * Ho):
        n, cw, j, ho = row // (Cw * KK * Ho), (row // (KK * Ho)) % Cw, (row // Ho) % KK, row % Ho
        for wo in range(Wo):
            grad_w[n, cw, j, ho, wo] = aggregation_weight_grad_at(
                x, grad_y, n, cw, Cw, j // K, j % K, ho, wo, stride, padding, dilation, reflect, acc)


@numba.njit(parallel=True)
def subtraction_forward(x1, x2, y, K, stride, padding, dilation, reflect, acc):
    """x1, x2 (N, C, H, W) -> y (N, C, K*K, Ho, Wo)."""
    N, C, KK, Ho, Wo = y.shape
    for row in prange(N * C * Ho):
        n, c, ho = row // (C * Ho), (row // Ho) % C, row % Ho
        for wo in range(Wo):
            subtraction_at(x1, x2, y, n, c, ho, wo, K, stride, padding, dilation, reflect, acc)


@numba.njit(parallel=True)
def subtraction_backward(grad, grad_x1, grad_x2, K, stride, padding, dilation, reflect, acc):
    """grad (N, C, K*K, Ho, Wo) -> grad_x1, grad_x2 (N, C, H, W)."""
    N, C, H, W = grad_x1.shape
    unread = grad[:, :, 0]  # window_gather_at's b, of the right type; not read when use_b is False
    for row in prange(N * C * H):
        n, c, h = row // (C * H), (row // H) % C, row % H
        for w in range(W):
            grad_x1[n, c, h, w] = centre_gather_at(grad, n, c, h, w, H, W, K, stride, padding,
                                                   dilation, reflect, acc)
            grad_x2[n, c, h, w] = -window_gather_at(grad, unread, False, n, c, h, w, H, W, K,
                                                    stride, padding, dilation, reflect, acc)


def _launch(kernel, total, tensors, scalars):
    kernel(*(t.numpy() for t in tensors), *scalars)


backend = KernelBackend("cpu", sys.modules[__name__], _launch)
