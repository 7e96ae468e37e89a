"""The ``"cpu"`` backend: the SAN operators as Numba kernels, ``numba.njit(parallel=True)``.

The same sums as the ``"cuda"`` backend, in another loop order. A CUDA kernel runs one thread per
output element, and that thread calls the per-element function of :mod:`.elementwise` (a loop over
the K*K taps, with the padding decided tap by tap). On a CPU core that order is slow: the tap loop
is short and branchy, and its neighbouring iterations read memory K*K apart, so the compiler cannot
vectorise it. Here the loops are turned inside out:

* Each parallel iteration (``prange``) owns whole planes: one (n, c) of ``x`` for subtraction, or
  the channels c = cw mod Cw of one (n, cw) that share a weight plane, for aggregation.
* It first copies the input plane, padded, into a small buffer (:func:`_pad`). Which input element
  (or zero) each padded element holds is decided by ``source``, the per-element index map of
  :mod:`.elementwise` that the CUDA kernels use too, so both padding modes are that one function.
* With the padding in the buffer, tap j of output (ho, wo) reads the buffer at
  ``ho * Wq + wo + offsets[j]`` (:func:`_layout`), so each tap is one branch-free loop over a whole
  plane (outputs kept in rows of Wq >= Wo) or over a row: contiguous, vectorised by LLVM (packed
  ``vmulps``/``vaddps``/``vsubps`` on ymm/zmm registers), with the taps outside.
* The input gradients are the transposes: each tap adds into a padded gradient buffer at the same
  offsets, and :func:`_unpad` (the adjoint of :func:`_pad`, again by ``source``) adds each padded
  element back onto the input element it was read from. The CUDA kernels gather instead (one
  thread per input element, with ``preimage`` and ``output_of_tap``); here one iteration owns its
  planes, so no two threads write one element either way and no atomics are needed.

Each element therefore receives the terms of the per-element functions (``aggregation_at``,
``window_gather_at``, ...), plus exact zeros where those skip the padding. The aggregation forward
and weight gradient add them in the same order; the input gradients add them in another order
(equal up to rounding). Accumulation is in the data's type, as in :mod:`.elementwise`, with no
``fastmath`` (which would contract and reorder). Memory: a few scratch planes per parallel
iteration (for aggregation, one weight plane per tap in rows of Wq); nothing of size
(N, C, K*K, Ho*Wo) is allocated for aggregation. Arguments of every kernel: the arrays, then
``K, stride, padding, dilation, reflect, acc`` (``acc``: a zero of the data's type).
"""
from __future__ import annotations

import sys

import numba
import numpy as np
from numba import prange

from .elementwise import build
from .kernel_backend import KernelBackend

_m = build(numba.njit)
source = _m.source


@numba.njit
def _layout(H, W, K, stride, padding, dilation, reflect):
    """Where the padded input goes in a flat buffer, and where each tap reads it.

    The input padded by ``padding`` on every side, (Hp, Wp) = (H + 2 * padding, W + 2 * padding),
    is stored as stride x stride phases (padded row i in phase row i % stride, at row i // stride;
    likewise columns), each phase Hq x Wq with rows of Wq = ceil(Wp / stride), one after the
    other: a shift by one output row or column is then a shift by Wq or 1 in every phase. Output
    (ho, wo) is kept at t = ho * Wq + wo (a "wide" plane: rows of Wq, of which the first Wo are
    outputs), and its tap j = ki * K + kj reads the buffer at t + offsets[j].

    Returns (pads, offsets, Wq, size). ``pads`` = (src_row, at_row, src_col, at_col, lo, hi):
    padded row i is input row src_row[i] (``source``: the mirror image for reflection, -1 for
    zero padding) and starts at at_row[i] in the buffer; padded column j is input column
    src_col[j], at at_col[j] from the row's start; the padded columns [lo, hi) are the input
    columns [0, hi - lo), stored one after the other (at stride 1; none at other strides). The buffer has ``size`` elements: the phases and one spare row, read only by
    the columns wo >= Wo of the wide plane, which are never stored.
    """
    Hp, Wp = H + 2 * padding, W + 2 * padding
    Hq, Wq = -(-Hp // stride), -(-Wp // stride)
    src_row, at_row = np.empty(Hp, np.int64), np.empty(Hp, np.int64)
    src_col, at_col = np.empty(Wp, np.int64), np.empty(Wp, np.int64)
    for i in range(Hp):
        src_row[i] = source(i - padding, H, reflect)
        at_row[i] = ((i % stride) * stride * Hq + i // stride) * Wq
    for j in range(Wp):
        src_col[j] = source(j - padding, W, reflect)
        at_col[j] = (j % stride) * Hq * Wq + j // stride
    offsets = np.empty(K * K, np.int64)
    for ki in range(K):
        for kj in range(K):
            offsets[ki * K + kj] = at_row[ki * dilation] + at_col[kj * dilation]
    lo, hi = (padding, padding + W) if stride == 1 else (0, 0)
    pads = (src_row, at_row, src_col, at_col, lo, hi)
    return pads, offsets, Wq, stride * stride * Hq * Wq + Wq


@numba.njit(inline="always")
def _pad(buf, plane, pads, zero):
    """Write ``plane`` (H, W) padded into ``buf``, at the places of :func:`_layout`."""
    src_row, at_row, src_col, at_col, lo, hi = pads
    Wp = src_col.shape[0]
    for i in range(src_row.shape[0]):
        r, start = src_row[i], at_row[i]
        if r < 0:
            for j in range(Wp):
                buf[start + at_col[j]] = zero
            continue
        row = plane[r]
        _copy(buf[start + lo:start + hi], row[:hi - lo])
        for b in range(Wp - (hi - lo)):          # the other columns: [0, lo), then [hi, Wp)
            j = b if b < lo else b + hi - lo
            c = src_col[j]
            buf[start + at_col[j]] = row[c] if c >= 0 else zero


@numba.njit(inline="always")
def _unpad(plane, buf, pads, zero):
    """The adjoint of :func:`_pad`: ``plane`` (H, W) = at each input position, the sum of ``buf``
    over the padded positions that read it (itself, and its mirror images for reflection)."""
    src_row, at_row, src_col, at_col, lo, hi = pads
    Wp = src_col.shape[0]
    plane[:, :] = zero
    for i in range(src_row.shape[0]):
        r, start = src_row[i], at_row[i]
        if r < 0:
            continue
        row = plane[r]
        _add(row[:hi - lo], buf[start + lo:start + hi])
        for b in range(Wp - (hi - lo)):
            j = b if b < lo else b + hi - lo
            c = src_col[j]
            if c >= 0:
                row[c] += buf[start + at_col[j]]


@numba.njit(inline="always")
def _widen(wide, plane, Wq, zero):
    """wide[ho * Wq + wo] = plane[ho, wo], and 0 in the columns wo >= Wo."""
    Ho, Wo = plane.shape
    for ho in range(Ho):
        _copy(wide[ho * Wq:ho * Wq + Wo], plane[ho])
        wide[ho * Wq + Wo:(ho + 1) * Wq] = zero


@numba.njit(inline="always")
def _narrow(plane, wide, Wq):
    """plane[ho, wo] = wide[ho * Wq + wo], for wo < Wo: the inverse of :func:`_widen`."""
    Ho, Wo = plane.shape
    for ho in range(Ho):
        _copy(plane[ho], wide[ho * Wq:ho * Wq + Wo])


# Inner loops over 1-D arrays of one length, contiguous: LLVM vectorises them. inline="always"
# inlines them in Numba's IR, so that a call costs nothing even for the 7-element rows of the
# smallest stage (an ordinary Numba call would cost more than the loop).

@numba.njit(inline="always")
def _copy(out, a):
    for i in range(out.shape[0]):
        out[i] = a[i]


@numba.njit(inline="always")
def _add(out, a):
    for i in range(out.shape[0]):
        out[i] += a[i]


@numba.njit(inline="always")
def _subtract(out, a):
    for i in range(out.shape[0]):
        out[i] -= a[i]


@numba.njit(inline="always")
def _difference(out, a, b):
    for i in range(out.shape[0]):
        out[i] = a[i] - b[i]


@numba.njit(inline="always")
def _multiply_add(out, a, b):
    for i in range(out.shape[0]):
        out[i] += a[i] * b[i]


@numba.njit(parallel=True)
def aggregation_forward(x, weight, y, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), weight (N, Cw, K*K, Ho, Wo) -> y (N, C, Ho, Wo)."""
    N, C, Ho, Wo = y.shape
    Cw, KK = weight.shape[1], weight.shape[2]
    pads, offsets, Wq, size = _layout(
        x.shape[2], x.shape[3], K, stride, padding, dilation, reflect)
    L = Ho * Wq
    for group in prange(N * Cw):
        n, cw = group // Cw, group % Cw
        w_wide = np.empty((KK, L), dtype=y.dtype)
        for j in range(KK):
            _widen(w_wide[j], weight[n, cw, j], Wq, acc)
        x_pad = np.zeros(size, dtype=y.dtype)
        y_wide = np.empty(L, dtype=y.dtype)
        for c in range(cw, C, Cw):
            _pad(x_pad, x[n, c], pads, acc)
            y_wide[:] = acc
            for j in range(KK):
                _multiply_add(y_wide, w_wide[j], x_pad[offsets[j]:offsets[j] + L])
            _narrow(y[n, c], y_wide, Wq)


@numba.njit(parallel=True)
def aggregation_input_grad(weight, grad_y, grad_x, K, stride, padding, dilation, reflect, acc):
    """weight (N, Cw, K*K, Ho, Wo), grad_y (N, C, Ho, Wo) -> grad_x (N, C, H, W)."""
    N, C = grad_x.shape[0], grad_x.shape[1]
    Cw, KK, Ho = weight.shape[1], weight.shape[2], weight.shape[3]
    pads, offsets, Wq, size = _layout(
        grad_x.shape[2], grad_x.shape[3], K, stride, padding, dilation, reflect)
    L = Ho * Wq
    for group in prange(N * Cw):
        n, cw = group // Cw, group % Cw
        w_wide = np.empty((KK, L), dtype=grad_x.dtype)
        for j in range(KK):
            _widen(w_wide[j], weight[n, cw, j], Wq, acc)
        g_wide = np.empty(L, dtype=grad_x.dtype)
        g_pad = np.empty(size, dtype=grad_x.dtype)
        for c in range(cw, C, Cw):
            _widen(g_wide, grad_y[n, c], Wq, acc)
            g_pad[:] = acc
            for j in range(KK):
                _multiply_add(g_pad[offsets[j]:offsets[j] + L], w_wide[j], g_wide)
            _unpad(grad_x[n, c], g_pad, pads, acc)


@numba.njit(parallel=True)
def aggregation_weight_grad(x, grad_y, grad_w, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), grad_y (N, C, Ho, Wo) -> grad_w (N, Cw, K*K, Ho, Wo)."""
    N, Cw, KK, Ho, Wo = grad_w.shape
    C = x.shape[1]
    pads, offsets, Wq, size = _layout(
        x.shape[2], x.shape[3], K, stride, padding, dilation, reflect)
    L = Ho * Wq
    for group in prange(N * Cw):
        n, cw = group // Cw, group % Cw
        gw_wide = np.zeros((KK, L), dtype=grad_w.dtype)
        g_wide = np.empty(L, dtype=grad_w.dtype)
        x_pad = np.zeros(size, dtype=grad_w.dtype)
        for c in range(cw, C, Cw):
            _pad(x_pad, x[n, c], pads, acc)
            _widen(g_wide, grad_y[n, c], Wq, acc)
            for j in range(KK):
                _multiply_add(gw_wide[j], g_wide, x_pad[offsets[j]:offsets[j] + L])
        for j in range(KK):
            _narrow(grad_w[n, cw, j], gw_wide[j], Wq)


@numba.njit(parallel=True)
def subtraction_forward(x1, x2, y, K, stride, padding, dilation, reflect, acc):
    """x1, x2 (N, C, H, W) -> y (N, C, K*K, Ho, Wo)."""
    N, C, KK, Ho, Wo = y.shape
    pads, offsets, Wq, size = _layout(
        x1.shape[2], x1.shape[3], K, stride, padding, dilation, reflect)
    mid = (K - 1) // 2 * (K + 1)        # the centre tap: j = m * K + m, m = (K - 1) // 2
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        x1_pad = np.zeros(size, dtype=y.dtype)
        x2_pad = np.zeros(size, dtype=y.dtype)
        _pad(x1_pad, x1[n, c], pads, acc)
        _pad(x2_pad, x2[n, c], pads, acc)
        centre = x1_pad[offsets[mid]:]
        for j in range(KK):
            tap = x2_pad[offsets[j]:]
            out = y[n, c, j]
            for ho in range(Ho):
                t = ho * Wq
                _difference(out[ho], centre[t:t + Wo], tap[t:t + Wo])


@numba.njit(parallel=True)
def subtraction_backward(grad, grad_x1, grad_x2, K, stride, padding, dilation, reflect, acc):
    """grad (N, C, K*K, Ho, Wo) -> grad_x1, grad_x2 (N, C, H, W)."""
    N, C = grad_x1.shape[0], grad_x1.shape[1]
    KK, Ho, Wo = grad.shape[2], grad.shape[3], grad.shape[4]
    pads, offsets, Wq, size = _layout(
        grad_x1.shape[2], grad_x1.shape[3], K, stride, padding, dilation, reflect)
    mid = (K - 1) // 2 * (K + 1)
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        g_pad = np.zeros(size, dtype=grad.dtype)
        centre = np.zeros(Ho * Wo, dtype=grad.dtype)   # sum over the taps of each output
        for j in range(KK):
            for ho in range(Ho):
                row = grad[n, c, j, ho]
                _add(centre[ho * Wo:(ho + 1) * Wo], row)
                t = offsets[j] + ho * Wq
                _subtract(g_pad[t:t + Wo], row)
        _unpad(grad_x2[n, c], g_pad, pads, acc)
        g_pad[:] = acc
        for ho in range(Ho):
            t = offsets[mid] + ho * Wq
            _copy(g_pad[t:t + Wo], centre[ho * Wo:(ho + 1) * Wo])
        _unpad(grad_x1[n, c], g_pad, pads, acc)


def _launch(kernel, total, tensors, scalars):
    kernel(*(t.numpy() for t in tensors), *scalars)


backend = KernelBackend("cpu", sys.modules[__name__], _launch)
