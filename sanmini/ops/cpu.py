"""The ``"cpu"`` backend: the SAN operators as Numba kernels, ``numba.njit(parallel=True)``.

The same sums as the ``"cuda"`` backend, in another loop order. A CUDA kernel runs one thread per
output element, and that thread calls the per-element function of :mod:`.elementwise`: a loop over
the K*K taps, deciding the padding tap by tap. On a CPU core that order is slow: the tap loop is
short and branchy, and neighbouring iterations read memory far apart, so the compiler cannot
vectorise it. Here the loops are turned inside out, taps outside and whole planes inside:

* Each parallel iteration (``prange``) owns whole planes: one (n, c) of ``x``, or for the weight
  gradient one (n, cw) of ``weight`` with the channels c = cw mod Cw that share it.
* It first makes K "shifted copies" of its input plane (:func:`_shift`, :func:`_layout`): copy kj
  holds, for every padded row and every output column wo, the element that tap kj of column wo
  reads. Which input element that is (or a zero) is decided by ``source``, the per-element index
  map of :mod:`.elementwise` that the CUDA kernels use too, so both padding modes are that one
  function, and it is applied once per copied element instead of once per tap and output.
* Tap (ki, kj) of every output (ho, wo), flat index t = ho * Wo + wo, then reads copy kj at
  t + row_offsets[ki]: each tap is one contiguous, branch-free loop over the Ho * Wo outputs,
  which LLVM vectorises (packed ``vmulps``/``vaddps``/``vsubps`` on ymm/zmm registers).
* The input gradients are the transposes: each tap adds into K shifted copies of the gradient at
  the same places, and :func:`_unshift`, the adjoint of :func:`_shift` (again by ``source``), adds
  each copied element back onto the input element it was read from. (The CUDA kernels gather
  instead, one thread per input element with ``preimage`` and ``output_of_tap``.) An iteration
  owns the planes it writes, so no two threads write one element and no atomics are needed.

Each element thus receives the terms of the per-element functions (``aggregation_at``,
``window_gather_at``, ...), plus exact zeros where those skip the padding. The aggregation forward
and weight gradient add them in the same order; the input gradients add them in another order
(equal up to rounding). Accumulation is in the data's type, as in :mod:`.elementwise`, with no
``fastmath`` (which would contract and reorder). Memory: K shifted copies of one plane per parallel
iteration (K * (H + 2 * padding) * Wo elements); nothing of size (N, C, K*K, Ho*Wo) is allocated for
aggregation. Inputs of any layout are made contiguous first (no copy when they are); outputs must
be contiguous, as :class:`.KernelBackend` allocates them. Arguments of every kernel: the arrays,
then ``K, stride, padding, dilation, reflect, acc`` (``acc``: a zero of the data's type).
"""
from __future__ import annotations

import sys

import numba
import numpy as np
from numba import prange

from .elementwise import build
from .kernel_backend import KernelBackend
from .numba_cache import kernel_cache_dir

_m = build(numba.njit)

# Compiling these kernels takes 6 to 20 s per process; they are kept on disk in a folder named
# after this version of sanmini.ops (:mod:`.numba_cache`), and later processes load them.
# Numba's cache locator reads numba.config.CACHE_DIR when a kernel is decorated: it is set to that
# folder for the decorators below and restored at the end of this module.
CACHE_DIR = kernel_cache_dir()
CACHE = CACHE_DIR is not None
_user_cache_dir = numba.config.CACHE_DIR
numba.config.CACHE_DIR = str(CACHE_DIR) if CACHE else _user_cache_dir
source = _m.source


@numba.njit(cache=CACHE)
def _layout(H, W, Wo, K, stride, padding, dilation, reflect):
    """Index tables for :func:`_shift` and :func:`_unshift`, computed once per kernel call.

    For each kj, the "shifted copy" kj of an input plane is a (R, Wo) array, R = stride * Hq, whose
    row for padded row i (rows -padding .. H - 1 + padding of the input, as i = 0 .. Hp - 1) holds
    at column wo the padded element (i, wo * stride + kj * dilation): the column that tap kj of
    output column wo reads. Padded row i is stored at row at_row[i] = (i % stride) * Hq +
    i // stride (one block of rows per phase, so that at every stride one output row further is
    one row further). Tap j = ki * K + kj of output t = ho * Wo + wo then reads copy kj, flat, at
    t + row_offsets[ki]: over all outputs, one contiguous range of Ho * Wo elements.

    Returns (tables, row_offsets, R): tables = (src_row, at_row, src_col, lo, hi). Padded row i is
    input row src_row[i]; column wo of copy kj is input column src_col[kj, wo] (both by
    ``source``: the mirror image for reflection, -1 for zero padding); at stride 1, the columns
    wo in [lo[kj], hi[kj]) read input columns wo + kj * dilation - padding, inside the input.
    """
    Hp = H + 2 * padding
    Hq = -(-Hp // stride)
    src_row, at_row = np.empty(Hp, np.int64), np.empty(Hp, np.int64)
    for i in range(Hp):
        src_row[i] = source(i - padding, H, reflect)
        at_row[i] = (i % stride) * Hq + i // stride
    src_col = np.empty((K, Wo), np.int64)
    lo, hi = np.zeros(K, np.int64), np.zeros(K, np.int64)
    row_offsets = np.empty(K, np.int64)
    for k in range(K):
        offset = k * dilation - padding
        for wo in range(Wo):
            src_col[k, wo] = source(wo * stride + offset, W, reflect)
        if stride == 1:
            lo[k] = min(max(-offset, 0), Wo)
            hi[k] = max(min(W - offset, Wo), lo[k])
        row_offsets[k] = at_row[k * dilation] * Wo
    return (src_row, at_row, src_col, lo, hi), row_offsets, stride * Hq


@numba.njit(inline="always")
def _shift(copy, plane, kj, tables, zero):
    """Write shifted copy kj (R * Wo elements, flat) of ``plane`` (H, W); see :func:`_layout`."""
    src_row, at_row, src_col, lo, hi = tables
    Wo = src_col.shape[1]
    a, b = lo[kj], hi[kj]
    offset = a - src_col[kj, a] if a < b else 0     # input column = wo - offset inside
    for i in range(src_row.shape[0]):
        r, start = src_row[i], at_row[i] * Wo
        out = copy[start:start + Wo]
        if r < 0:
            out[:] = zero
            continue
        row = plane[r]
        _copy(out[a:b], row[a - offset:b - offset])
        for e in range(Wo - (b - a)):               # the other columns: [0, a), then [b, Wo)
            wo = e if e < a else e + b - a
            c = src_col[kj, wo]
            out[wo] = row[c] if c >= 0 else zero


@numba.njit(inline="always")
def _unshift(plane, copy, kj, tables):
    """The adjoint of :func:`_shift`: add each element of shifted copy kj onto the element of
    ``plane`` (H, W) it was read from (none for zero padding; mirror images add up)."""
    src_row, at_row, src_col, lo, hi = tables
    Wo = src_col.shape[1]
    a, b = lo[kj], hi[kj]
    offset = a - src_col[kj, a] if a < b else 0
    for i in range(src_row.shape[0]):
        r, start = src_row[i], at_row[i] * Wo
        if r < 0:
            continue
        row, src = plane[r], copy[start:start + Wo]
        _add(row[a - offset:b - offset], src[a:b])
        for e in range(Wo - (b - a)):
            wo = e if e < a else e + b - a
            c = src_col[kj, wo]
            if c >= 0:
                row[c] += src[wo]


# The inner loops: over 1-D arrays of one length, contiguous, so that LLVM vectorises them.
# inline="always" inlines them in Numba's IR: an ordinary call would cost more than a short loop.

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


@numba.njit(parallel=True, cache=CACHE)
def aggregation_forward(x, weight, y, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), weight (N, Cw, K*K, Ho, Wo) -> y (N, C, Ho, Wo)."""
    N, C, Ho, Wo = y.shape
    L = Ho * Wo
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight).reshape(N, weight.shape[1], K * K, L)
    tables, row_offsets, R = _layout(x.shape[2], x.shape[3], Wo, K, stride, padding, dilation,
                                     reflect)
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        w = weight[n, c % weight.shape[1]]
        copies = np.empty((K, R * Wo), dtype=y.dtype)
        for kj in range(K):
            _shift(copies[kj], x[n, c], kj, tables, acc)
        out = y[n, c].reshape(L)
        out[:] = acc
        for ki in range(K):
            t = row_offsets[ki]
            for kj in range(K):
                _multiply_add(out, w[ki * K + kj], copies[kj, t:t + L])


@numba.njit(parallel=True, cache=CACHE)
def aggregation_input_grad(weight, grad_y, grad_x, K, stride, padding, dilation, reflect, acc):
    """weight (N, Cw, K*K, Ho, Wo), grad_y (N, C, Ho, Wo) -> grad_x (N, C, H, W)."""
    N, C = grad_x.shape[0], grad_x.shape[1]
    Ho, Wo = grad_y.shape[2], grad_y.shape[3]
    L = Ho * Wo
    weight = np.ascontiguousarray(weight).reshape(N, weight.shape[1], K * K, L)
    grad_y = np.ascontiguousarray(grad_y).reshape(N, C, L)
    tables, row_offsets, R = _layout(grad_x.shape[2], grad_x.shape[3], Wo, K, stride, padding,
                                     dilation, reflect)
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        w, g = weight[n, c % weight.shape[1]], grad_y[n, c]
        copies = np.zeros((K, R * Wo), dtype=grad_x.dtype)
        for ki in range(K):
            t = row_offsets[ki]
            for kj in range(K):
                _multiply_add(copies[kj, t:t + L], w[ki * K + kj], g)
        grad_x[n, c] = acc
        for kj in range(K):
            _unshift(grad_x[n, c], copies[kj], kj, tables)


@numba.njit(parallel=True, cache=CACHE)
def aggregation_weight_grad(x, grad_y, grad_w, K, stride, padding, dilation, reflect, acc):
    """x (N, C, H, W), grad_y (N, C, Ho, Wo) -> grad_w (N, Cw, K*K, Ho, Wo)."""
    N, Cw, KK, Ho, Wo = grad_w.shape
    C, L = x.shape[1], Ho * Wo
    x = np.ascontiguousarray(x)
    grad_y = np.ascontiguousarray(grad_y).reshape(N, C, L)
    tables, row_offsets, R = _layout(x.shape[2], x.shape[3], Wo, K, stride, padding, dilation,
                                     reflect)
    for group in prange(N * Cw):
        n, cw = group // Cw, group % Cw
        out = grad_w[n, cw].reshape(KK, L)
        out[:] = acc
        copies = np.empty((K, R * Wo), dtype=grad_w.dtype)
        for c in range(cw, C, Cw):
            for kj in range(K):
                _shift(copies[kj], x[n, c], kj, tables, acc)
            for ki in range(K):
                t = row_offsets[ki]
                for kj in range(K):
                    _multiply_add(out[ki * K + kj], grad_y[n, c], copies[kj, t:t + L])


@numba.njit(parallel=True, cache=CACHE)
def subtraction_forward(x1, x2, y, K, stride, padding, dilation, reflect, acc):
    """x1, x2 (N, C, H, W) -> y (N, C, K*K, Ho, Wo)."""
    N, C, KK, Ho, Wo = y.shape
    L = Ho * Wo
    x1, x2 = np.ascontiguousarray(x1), np.ascontiguousarray(x2)
    tables, row_offsets, R = _layout(x1.shape[2], x1.shape[3], Wo, K, stride, padding,
                                     dilation, reflect)
    m = (K - 1) // 2                                  # the centre tap is (m, m)
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        centre = np.empty(R * Wo, dtype=y.dtype)
        _shift(centre, x1[n, c], m, tables, acc)
        copies = np.empty((K, R * Wo), dtype=y.dtype)
        for kj in range(K):
            _shift(copies[kj], x2[n, c], kj, tables, acc)
        out = y[n, c].reshape(KK, L)
        centre = centre[row_offsets[m]:row_offsets[m] + L]
        for ki in range(K):
            t = row_offsets[ki]
            for kj in range(K):
                _difference(out[ki * K + kj], centre, copies[kj, t:t + L])


@numba.njit(parallel=True, cache=CACHE)
def subtraction_backward(grad, grad_x1, grad_x2, K, stride, padding, dilation, reflect, acc):
    """grad (N, C, K*K, Ho, Wo) -> grad_x1, grad_x2 (N, C, H, W)."""
    N, C, KK, Ho, Wo = grad.shape
    L = Ho * Wo
    grad = np.ascontiguousarray(grad).reshape(N, C, KK, L)
    tables, row_offsets, R = _layout(grad_x1.shape[2], grad_x1.shape[3], Wo, K, stride,
                                     padding, dilation, reflect)
    m = (K - 1) // 2
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        g = grad[n, c]
        copies = np.zeros((K, R * Wo), dtype=grad.dtype)
        centre = np.zeros(R * Wo, dtype=grad.dtype)
        total = centre[row_offsets[m]:row_offsets[m] + L]    # the sum over the taps
        for ki in range(K):
            t = row_offsets[ki]
            for kj in range(K):
                _add(total, g[ki * K + kj])
                _subtract(copies[kj, t:t + L], g[ki * K + kj])
        grad_x1[n, c] = acc
        _unshift(grad_x1[n, c], centre, m, tables)
        grad_x2[n, c] = acc
        for kj in range(K):
            _unshift(grad_x2[n, c], copies[kj], kj, tables)


numba.config.CACHE_DIR = _user_cache_dir


def _launch(kernel, total, tensors, scalars):
    kernel(*(t.numpy() for t in tensors), *scalars)


backend = KernelBackend("cpu", sys.modules[__name__], _launch)
