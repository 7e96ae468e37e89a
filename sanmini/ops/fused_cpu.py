"""The fused pairwise weight branch on the CPU: Numba kernels, ``numba.njit(parallel=True)``.

From phi(x), psi(x), the position encoding p and beta(x) to the output y of pairwise attention
(Zhao et al., CVPR 2020, Eq. 2 and 3; subtraction or summation relation, gamma = BN-ReLU-1x1-BN-
ReLU-1x1, softmax over the footprint, aggregation), without writing any (N, *, K*K, L) tensor:
gamma's tensors exist for one output pixel at a time, its K*K taps, in small buffers of the thread
that computes it, and are dropped when it moves on.

Batch norm in training normalises with statistics over the whole batch, every pixel and every
tap, so what one pixel needs depends on all the others: the work is split in passes, each a loop
over the images of the batch (in parallel) and, within one, over its output pixels and their taps.

=======================  ==========================================================================
forward, training        1. sums of gamma's input z0 = [delta(x_i, x_j), p_i - p_j] and of z0^2
                         2. the same of its hidden layer z1 = W1 relu(bn0(z0))
                         3. logits z2 = W2 relu(bn1(z1)) + b2, the softmax over the taps, the
                            aggregation with beta; keeps the log-sum-exp of every (pixel, weight
                            channel), (N, Cw, L), and nothing else
forward, evaluation      3 only, with the running statistics
backward, training       1. recompute up to alpha; the softmax and aggregation backward: gradients
                            of beta, W2, b2, and the two sums batch norm 1's backward needs
                         2. recompute; the gradient of z1, of W1, and the sums for batch norm 0
                         3. recompute; the gradient of z0, added onto phi, psi and p
backward, evaluation     the three in one pass (batch norm with running statistics is affine)
=======================  ==========================================================================

Every pass works on one output row at a time: the (K*K, channels, Wo) tensors of gamma for the
Wo pixels of the row live in buffers of the thread, and the innermost loops run over those Wo
pixels, contiguous, which LLVM vectorises (the channel counts of gamma, 2 to 16, are too short
for that).

Shapes: x1 = phi(x), x2 = psi(x) (N, R, H, W); x3 = beta(x) (N, V, H, W); p (1, P, H, W) with
P = 2 position channels, or P = 0; gamma's input has C0 = R + P channels, its hidden layer Rh, its
output Cw = V / share weight channels (value channel c uses weight channel c % Cw). Batch norm is
given as y = z * s + t per channel (s = weight / sqrt(var + eps), t = bias - mean * s), with
``mean``, ``istd`` = 1 / sqrt(var + eps) for the backward. Sums are accumulated in float64, one row
per image (``*_part`` arrays), added up by the caller. The padding of every read is decided by
``source`` (:mod:`.elementwise`), as in the other kernels.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .elementwise import build
from .numba_cache import kernel_cache_dir

_m = build(numba.njit)
source = _m.source

CACHE_DIR = kernel_cache_dir()
CACHE = CACHE_DIR is not None
_user_cache_dir = numba.config.CACHE_DIR
numba.config.CACHE_DIR = str(CACHE_DIR) if CACHE else _user_cache_dir


@numba.njit(cache=CACHE)
def _columns(W, Wo, K, stride, padding, dilation, reflect):
    """cols[kj, wo]: the input column that tap column kj of output column wo reads (-1: zero padding)."""
    cols = np.empty((K, Wo), np.int64)
    for kj in range(K):
        for wo in range(Wo):
            cols[kj, wo] = source(wo * stride - padding + kj * dilation, W, reflect)
    return cols


@numba.njit(inline="always")
def _gather(plane, row, cols, out, zero):
    """out[wo] = plane[row, cols[wo]], zero where row or column is -1 (zero padding)."""
    if row < 0:
        out[:] = zero
        return
    for wo in range(out.shape[0]):
        c = cols[wo]
        out[wo] = plane[row, c] if c >= 0 else zero


@numba.njit(inline="always")
def _taps(n, ho, x1, x2, p, sign, cols, Z0, rows, centre, K, stride, padding, dilation, reflect, zero):
    """Gamma's input at every tap j of every pixel of output row ho of image n: Z0 (K*K, C0, Wo),
    z0 = [x1_i - sign * x2_j, p_i - p_j]; rows[j], the input row tap j reads (-1: zero padding);
    ``centre`` (C0, Wo) is left holding [x1_i, p_i]. Returns the centre's input row."""
    H, R, Wo = x1.shape[2], x1.shape[1], Z0.shape[2]
    C0 = Z0.shape[1]
    m = (K - 1) // 2
    hc = source(ho * stride - padding + m * dilation, H, reflect)
    for c in range(C0):
        _gather(x1[n, c] if c < R else p[0, c - R], hc, cols[m], centre[c], zero)
    for ki in range(K):
        hj = source(ho * stride - padding + ki * dilation, H, reflect)
        for kj in range(K):
            j = ki * K + kj
            rows[j] = hj
            for c in range(C0):
                out = Z0[j, c]
                _gather(x2[n, c] if c < R else p[0, c - R], hj, cols[kj], out, zero)
                f = sign if c < R else 1               # subtraction: sign 1; summation: -1
                a = centre[c]
                for wo in range(Wo):
                    out[wo] = a[wo] - f * out[wo]
    return hc


@numba.njit(inline="always")
def _relu_affine(Z, s, t, U):
    """U = relu(Z * s + t), s and t per channel (axis 1), at every tap and pixel."""
    for j in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            z, u = Z[j, c], U[j, c]
            for wo in range(z.shape[0]):
                v = z[wo] * s[c] + t[c]
                u[wo] = v if v > 0 else 0.0


@numba.njit(inline="always")
def _matmul(Wt, U, bias, Zout, zero):
    """Zout[j, o] = sum_c Wt[o, c] U[j, c] (+ bias[o] where bias has elements), over the pixels."""
    for j in range(U.shape[0]):
        for o in range(Zout.shape[1]):
            out = Zout[j, o]
            out[:] = bias[o] if bias.shape[0] > 0 else zero
            for c in range(U.shape[1]):
                w, u = Wt[o, c], U[j, c]
                for wo in range(out.shape[0]):
                    out[wo] += w * u[wo]


@numba.njit(inline="always")
def _sums(Z, sums):
    """sums[0, c] += sum of Z[:, c], sums[1, c] += sum of Z[:, c]^2 (float64)."""
    for j in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            a, b = 0.0, 0.0
            z = Z[j, c]
            for wo in range(z.shape[0]):
                a += z[wo]
                b += z[wo] * z[wo]
            sums[0, c] += a
            sums[1, c] += b


@numba.njit(inline="always")
def _softmax(A, lse_row, zero):
    """A (K*K, Cw, Wo): logits -> softmax over the taps (axis 0); lse_row (Cw, Wo) = log-sum-exp."""
    KK, Cw, Wo = A.shape
    for cw in range(Cw):
        top = lse_row[cw]
        top[:] = A[0, cw]
        for j in range(1, KK):
            a = A[j, cw]
            for wo in range(Wo):
                top[wo] = max(top[wo], a[wo])
        total = np.zeros(Wo, dtype=A.dtype)
        for j in range(KK):
            a = A[j, cw]
            for wo in range(Wo):
                a[wo] = math.exp(a[wo] - top[wo])
                total[wo] += a[wo]
        for j in range(KK):
            a = A[j, cw]
            for wo in range(Wo):
                a[wo] /= total[wo]
        for wo in range(Wo):
            top[wo] += math.log(total[wo])


@numba.njit(inline="always")
def _outer_sum(G, U, j, target):
    """target[o, i] += the sum over the pixels of G[j, o] * U[j, i]: a 1x1 map's weight gradient at tap j."""
    for o in range(G.shape[1]):
        g = G[j, o]
        for i in range(U.shape[1]):
            u = U[j, i]
            acc = 0.0
            for wo in range(g.shape[0]):
                acc += g[wo] * u[wo]
            target[o, i] += acc


@numba.njit(inline="always")
def _norm_sums(G, Z, j, mean, istd, sums, row):
    """At tap j, per channel c: sums[row, c] += the sum of G (the gradient into a batch norm's
    output) and sums[row + 1, c] += the sum of G times the normalised input (Z - mean) * istd."""
    for c in range(G.shape[1]):
        g, z = G[j, c], Z[j, c]
        a, b = 0.0, 0.0
        for wo in range(g.shape[0]):
            a += g[wo]
            b += g[wo] * (z[wo] - mean[c]) * istd[c]
        sums[row, c] += a
        sums[row + 1, c] += b


@numba.njit(inline="always")
def _through_map(Wt, Gout, U, Gin, zero):
    """Back through a 1x1 map and the ReLU before it: Gin[j, i] = sum_o Wt[o, i] Gout[j, o] where
    the ReLU passed (U[j, i] > 0), else 0, at every tap and pixel."""
    for j in range(U.shape[0]):
        for i in range(U.shape[1]):
            g, u = Gin[j, i], U[j, i]
            g[:] = zero
            for o in range(Gout.shape[1]):
                w, go = Wt[o, i], Gout[j, o]
                for wo in range(g.shape[0]):
                    g[wo] += w * go[wo]
            for wo in range(g.shape[0]):
                if u[wo] <= 0:
                    g[wo] = zero


@numba.njit(inline="always")
def _norm_backward(G, Z, s, mean, istd, sums, row, count, training):
    """G: the gradient into a batch norm's output -> into its input, in place. In training,
    s * (G - (sums[row] + xhat * sums[row + 1]) / count), xhat = (Z - mean) * istd; else s * G."""
    for j in range(G.shape[0]):
        for c in range(G.shape[1]):
            g, z = G[j, c], Z[j, c]
            if training:
                for wo in range(g.shape[0]):
                    xhat = (z[wo] - mean[c]) * istd[c]
                    g[wo] = s[c] * (g[wo] - (sums[row, c] + xhat * sums[row + 1, c]) / count)
            else:
                for wo in range(g.shape[0]):
                    g[wo] = s[c] * g[wo]


@numba.njit(parallel=True, cache=CACHE)
def forward(stage, x1, x2, x3, p, sign, s0, t0, W1, s1, t1, W2, b2, sums_part, y, lse,
            K, stride, padding, dilation, reflect, zero):
    """stage 1: sums_part[n, :, :C0] = sums of z0 and of z0^2 over image n's pixels and taps;
    stage 2: sums_part[n, :, :Rh], the same of z1; stage 3: y (N, V, Ho, Wo) and lse (N, Cw, Ho * Wo)."""
    N, V = x3.shape[0], x3.shape[1]
    Ho, Wo = y.shape[2], y.shape[3]
    KK, C0, Rh, Cw = K * K, s0.shape[0], W1.shape[0], W2.shape[0]
    cols = _columns(x1.shape[3], Wo, K, stride, padding, dilation, reflect)
    none = np.empty(0, dtype=s0.dtype)
    for n in prange(N):
        Z0 = np.empty((KK, C0, Wo), dtype=s0.dtype)
        U0 = np.empty((KK, C0, Wo), dtype=s0.dtype)
        Z1 = np.empty((KK, Rh, Wo), dtype=s0.dtype)
        A = np.empty((KK, Cw, Wo), dtype=s0.dtype)
        centre = np.empty((C0, Wo), dtype=s0.dtype)
        value = np.empty(Wo, dtype=s0.dtype)
        rows = np.empty(KK, np.int64)
        for ho in range(Ho):
            _taps(n, ho, x1, x2, p, sign, cols, Z0, rows, centre, K, stride, padding, dilation, reflect, zero)
            if stage == 1:
                _sums(Z0, sums_part[n])
                continue
            _relu_affine(Z0, s0, t0, U0)
            _matmul(W1, U0, none, Z1, zero)
            if stage == 2:
                _sums(Z1, sums_part[n])
                continue
            _relu_affine(Z1, s1, t1, Z1)
            _matmul(W2, Z1, b2, A, zero)
            lse_row = lse[n].reshape(Cw, Ho, Wo)[:, ho]
            _softmax(A, lse_row, zero)
            for c in range(V):                          # the aggregation, Eq. (2)
                out = y[n, c, ho]
                out[:] = zero
                for j in range(KK):
                    _gather(x3[n, c], rows[j], cols[j % K], value, zero)
                    a = A[j, c % Cw]
                    for wo in range(Wo):
                        out[wo] += a[wo] * value[wo]


@numba.njit(parallel=True, cache=CACHE)
def backward(stage, training, count, gy, x1, x2, x3, p, sign, s0, t0, mean0, istd0, W1,
             s1, t1, mean1, istd1, W2, b2, lse, sums, gx1, gx2, gx3, gp_part, gW1_part, gW2_part,
             gb2_part, sums_part, K, stride, padding, dilation, reflect, zero):
    """One pass of the backward (the module docstring's table); ``stage`` 0 is all three at once
    (evaluation only). ``sums`` (4, max(C0, Rh)) holds, from the earlier passes, the sums of the
    gradient into each batch norm's output and of that times its normalised input: rows 0, 1 for
    batch norm 1, rows 2, 3 for batch norm 0 (``count`` = N * K*K * L elements each).

    Writes: stage 1 (or 0): gx3, gW2_part, gb2_part, sums_part rows 0, 1; stage 2 (or 0):
    gW1_part, sums_part rows 2, 3; stage 3 (or 0): gx1, gx2, gp_part. The caller zeroes them.
    """
    N, V = x3.shape[0], x3.shape[1]
    Ho, Wo = gy.shape[2], gy.shape[3]
    R = x1.shape[1]
    KK, C0, Rh, Cw = K * K, s0.shape[0], W1.shape[0], W2.shape[0]
    cols = _columns(x1.shape[3], Wo, K, stride, padding, dilation, reflect)
    none = np.empty(0, dtype=s0.dtype)
    m = (K - 1) // 2
    for n in prange(N):
        Z0 = np.empty((KK, C0, Wo), dtype=s0.dtype)
        U0 = np.empty((KK, C0, Wo), dtype=s0.dtype)
        Z1 = np.empty((KK, Rh, Wo), dtype=s0.dtype)
        U1 = np.empty((KK, Rh, Wo), dtype=s0.dtype)
        A = np.empty((KK, Cw, Wo), dtype=s0.dtype)      # alpha
        G = np.empty((KK, Cw, Wo), dtype=s0.dtype)      # gradient of alpha, then of the logits
        G1 = np.empty((KK, Rh, Wo), dtype=s0.dtype)     # gradient of batch norm 1's output, then of z1
        G0 = np.empty((KK, C0, Wo), dtype=s0.dtype)     # the same for batch norm 0 and z0
        centre = np.empty((C0, Wo), dtype=s0.dtype)
        value = np.empty(Wo, dtype=s0.dtype)
        dot = np.empty(Wo, dtype=s0.dtype)
        rows = np.empty(KK, np.int64)
        for ho in range(Ho):
            hc = _taps(n, ho, x1, x2, p, sign, cols, Z0, rows, centre, K, stride, padding, dilation,
                       reflect, zero)
            _relu_affine(Z0, s0, t0, U0)
            _matmul(W1, U0, none, Z1, zero)
            _relu_affine(Z1, s1, t1, U1)
            _matmul(W2, U1, b2, A, zero)
            lse_row = lse[n].reshape(Cw, Ho, Wo)[:, ho]
            for j in range(KK):                         # alpha again, from the saved log-sum-exp
                for cw in range(Cw):
                    a, top = A[j, cw], lse_row[cw]
                    for wo in range(Wo):
                        a[wo] = math.exp(a[wo] - top[wo])
            G[:] = zero
            for c in range(V):                          # the aggregation backward
                g = gy[n, c, ho]
                cw = c % Cw
                for j in range(KK):
                    hj, cj = rows[j], cols[j % K]
                    _gather(x3[n, c], hj, cj, value, zero)
                    ga, a = G[j, cw], A[j, cw]
                    for wo in range(Wo):
                        ga[wo] += g[wo] * value[wo]
                    if stage <= 1 and hj >= 0:
                        for wo in range(Wo):
                            if cj[wo] >= 0:
                                gx3[n, c, hj, cj[wo]] += a[wo] * g[wo]
            for cw in range(Cw):                        # the softmax backward
                dot[:] = zero
                for j in range(KK):
                    a, ga = A[j, cw], G[j, cw]
                    for wo in range(Wo):
                        dot[wo] += a[wo] * ga[wo]
                for j in range(KK):
                    a, ga = A[j, cw], G[j, cw]
                    for wo in range(Wo):
                        ga[wo] = a[wo] * (ga[wo] - dot[wo])
            # the last 1x1 map: the gradients of W2, b2 and of batch norm 1's output (through the ReLU)
            _through_map(W2, G, U1, G1, zero)
            if stage <= 1:
                for j in range(KK):
                    for cw in range(Cw):
                        gb2_part[n, cw] += G[j, cw].sum()
                    _outer_sum(G, U1, j, gW2_part[n])
                    _norm_sums(G1, Z1, j, mean1, istd1, sums_part[n], 0)
                if stage == 1:
                    continue
            # batch norm 1 backward: the gradient of z1
            _norm_backward(G1, Z1, s1, mean1, istd1, sums, 0, count, training)
            # the first 1x1 map: the gradients of W1 and of batch norm 0's output
            _through_map(W1, G1, U0, G0, zero)
            if stage != 3:
                for j in range(KK):
                    _outer_sum(G1, U0, j, gW1_part[n])
                    _norm_sums(G0, Z0, j, mean0, istd0, sums_part[n], 2)
                if stage == 2:
                    continue
            # batch norm 0 backward: the gradient of z0, added onto phi (centre), psi and p (taps)
            _norm_backward(G0, Z0, s0, mean0, istd0, sums, 2, count, training)
            for j in range(KK):
                hj, cj = rows[j], cols[j % K]
                for c in range(C0):
                    g0 = G0[j, c]
                    f = sign if c < R else 1
                    target = gx2[n, c] if c < R else gp_part[n, c - R]
                    centre_target = gx1[n, c] if c < R else gp_part[n, c - R]
                    if hc >= 0:
                        for wo in range(Wo):
                            if cols[m, wo] >= 0:
                                centre_target[hc, cols[m, wo]] += g0[wo]
                    if hj >= 0:
                        for wo in range(Wo):
                            if cj[wo] >= 0:
                                target[hj, cj[wo]] -= f * g0[wo]


numba.config.CACHE_DIR = _user_cache_dir
