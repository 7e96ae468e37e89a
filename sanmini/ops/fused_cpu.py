"""The fused pairwise weight branch on the CPU: Numba kernels, ``numba.njit(parallel=True)``.

From phi(x), psi(x), the position encoding p and beta(x) to the output y of pairwise attention
(Zhao et al., CVPR 2020, Eq. 2 and 3; subtraction or summation relation, gamma = BN-ReLU-1x1-BN-
ReLU-1x1, softmax over the footprint, aggregation), without writing any ``(N, *, K*K, L)`` tensor:
gamma's tensors exist for one tile of ``TILE`` output pixels at a time, in small buffers of the
thread that computes it, and are dropped when it moves on.

Batch norm in training normalises with statistics over the whole batch, every pixel and every
tap, so what one pixel needs depends on all the others: the work is split in passes, each a loop
over the images of the batch (in parallel) and, within one, over its tiles and their taps.

=======================  ==========================================================================
forward, training        1. sums of gamma's input z0 = [delta(x_i, x_j), p_i - p_j] and of z0^2
                         2. the same of its hidden layer z1 = W1 relu(bn0(z0))
                         3. logits z2 = W2 relu(bn1(z1)) + b2, the softmax over the taps, the
                            aggregation with beta; keeps the log-sum-exp of every (pixel, weight
                            channel), (N, Cw, L), and nothing else
forward, evaluation      3 only, with the running statistics
backward, training       1. recompute up to alpha; the softmax and aggregation backward: gradients
                            of beta, W2, b2, the two sums batch norm 1's backward needs, and the
                            parts of the two sums batch norm 0's backward needs (below)
                         3. recompute; the gradient of z1, of W1, and of z0, added onto phi, psi
                            and p
backward, evaluation     all in one pass (batch norm with running statistics is affine)
=======================  ==========================================================================

Backward pass 2 (what batch norm 0's backward needs: the sums of the gradient G0 of its output
and of G0 times its normalised input) is folded into pass 1; the second pass keeps the number 3.
Batch norm 1's backward is affine in what pass 1 has, G1' = s1 (G1 - a - b z1hat) at the valid
pixels, with a, b its two sums over the batch divided by the count (known only once pass 1 is
over), so G0 = relu'(U0) W1^T G1' splits into three parts whose sums pass 1 can add up without a
and b: with M = relu'(U0) * valid and z0hat the normalised input of batch norm 0,

    sum G0        = sum M W1^T (s1 G1) - (W1^T s1 a) sum M - sum_o W1[o] s1[o] b[o] sum M z1hat[o]
    sum G0 z0hat  = the same with M z0hat in place of M

Pass 1 keeps, per image, ``fold_part`` (4, C0): sum M W1^T(s1 G1), its z0hat-weighted sum, sum M
and sum M z0hat, and ``cross_part`` (2, C0, Rh): sum M z1hat^T and sum M z0hat z1hat^T; the caller
(:func:`fold`) combines them with a and b. This costs pass 1 one more product through W1 and two
products of gamma's input and hidden layer per tile, and saves a whole pass (gamma recomputed,
the softmax and aggregation backward again). The CUDA kernels (:mod:`.fused_cuda`) keep three
passes.

A tile is ``TILE`` consecutive output pixels of one image (row-major, across row ends). Gamma's
tensors for a tile hold every tap of every pixel as columns, (channels, K*K * TILE), column
j * TILE + t for tap j of pixel t, so that each 1x1 map is a matrix product whose innermost loop
runs over K*K * TILE contiguous columns, which LLVM vectorises whatever the image width and the
channel counts (2 to 130 in a SAN10). Where each tap of each pixel reads is computed once per
call (:func:`plan`): the flat index into an input plane of H * W values with one zero appended,
which zero padding and the pixels past the last one of a short final tile read. The softmax's
exponentials, in the forward and again in the backward, are :func:`_exp_row`'s, which LLVM
vectorises (``math.exp`` compiles to a call per value here).

Shapes: x1 = phi(x), x2 = psi(x) (N, R, H*W + 1); x3 = beta(x) (N, V, H*W + 1); p (1, P, H*W + 1)
with P = 2 position channels, or P = 0 (the planes flattened, the zero appended); gamma's input
has C0 = R + P channels, its hidden layer Rh, its output Cw = V / share weight channels (value
channel c uses weight channel c % Cw). Batch norm is given as y = z * s + t per channel
(s = weight / sqrt(var + eps), t = bias - mean * s), with ``mean``, ``istd`` = 1 / sqrt(var + eps)
for the backward. Sums are accumulated in float64, one row per image (``*_part`` arrays), added
up by the caller.
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


TILE = 16
# Sums may be reordered (so that LLVM vectorises them) and multiply-adds fused; nothing else of
# fast-math (infinities and NaNs keep their meaning).
FAST = {"reassoc", "contract"}


@numba.njit(cache=CACHE)
def plan(H, W, Ho, Wo, K, stride, padding, dilation, reflect):
    """src (K*K, Lt) int64: the flat input index that tap j (row-major in the footprint) of output
    pixel l reads, H * W (the appended zero) where it reads zero padding or l >= L = Ho * Wo;
    Lt = L rounded up to a whole number of tiles."""
    L = Ho * Wo
    Lt = (L + TILE - 1) // TILE * TILE
    src = np.full((K * K, Lt), H * W, np.int64)
    for ki in range(K):
        for kj in range(K):
            for ho in range(Ho):
                h = source(ho * stride - padding + ki * dilation, H, reflect)
                for wo in range(Wo):
                    w = source(wo * stride - padding + kj * dilation, W, reflect)
                    if h >= 0 and w >= 0:
                        src[ki * K + kj, ho * Wo + wo] = h * W + w
    return src


@numba.njit(inline="always", fastmath=FAST)
def _inputs(n, l0, x1, x2, p, src, sign, centre, Z0):
    """Gamma's input at every tap j of the tile's pixels t: Z0 (C0, K*K * TILE), column
    j * TILE + t, z0 = [x1_i - sign * x2_j, p_i - p_j] (sign 1: subtraction; -1: summation);
    ``centre`` (C0, TILE) is left holding [x1_i, p_i]."""
    R, KK = x1.shape[1], src.shape[0]
    jc = KK // 2
    for c in range(Z0.shape[0]):
        if c < R:
            for t in range(TILE):
                centre[c, t] = x1[n, c, src[jc, l0 + t]]
            for j in range(KK):
                for t in range(TILE):
                    Z0[c, j * TILE + t] = centre[c, t] - sign * x2[n, c, src[j, l0 + t]]
        else:
            for t in range(TILE):
                centre[c, t] = p[0, c - R, src[jc, l0 + t]]
            for j in range(KK):
                for t in range(TILE):
                    Z0[c, j * TILE + t] = centre[c, t] - p[0, c - R, src[j, l0 + t]]


@numba.njit(inline="always", fastmath=FAST)
def _relu_affine(Z, s, t, U, zero):
    """U = relu(Z * s + t), s and t per channel (axis 0), at every column."""
    for c in range(Z.shape[0]):
        for q in range(Z.shape[1]):
            v = Z[c, q] * s[c] + t[c]
            U[c, q] = v if v > zero else zero


@numba.njit(inline="always", fastmath=FAST)
def _matmul(W, U, Z, transpose, zero):
    """Z = W U, or W^T U where ``transpose`` (back through a 1x1 map): U (C, Q) columns -> Z (O, Q),
    a row of Z at a time; the innermost loop runs over the K*K * TILE columns, contiguous, which
    LLVM vectorises."""
    for o in range(Z.shape[0]):
        for q in range(Z.shape[1]):
            Z[o, q] = zero
        for c in range(U.shape[0]):
            w = W[c, o] if transpose else W[o, c]
            for q in range(Z.shape[1]):
                Z[o, q] += w * U[c, q]


@numba.njit(inline="always", fastmath=FAST)
def _gamma(n, l0, x1, x2, p, src, sign, s0, t0, W1, s1, t1, W2, b2, centre, Z0, U0, Z1, U1, A, zero):
    """Gamma on the tile, every tap at once: Z0 = z0, Z1 = z1 = W1 U0 (before their batch norms),
    U0, U1 = relu(bn(.)), and A (Cw, K*K * TILE) the logits W2 U1 + b2."""
    _inputs(n, l0, x1, x2, p, src, sign, centre, Z0)
    _relu_affine(Z0, s0, t0, U0, zero)
    _matmul(W1, U0, Z1, False, zero)
    _relu_affine(Z1, s1, t1, U1, zero)
    _matmul(W2, U1, A, False, zero)
    for cw in range(A.shape[0]):
        for q in range(A.shape[1]):
            A[cw, q] += b2[cw]


def exp_constants(dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`_exp_row` needs for float32 or float64 (``dtype``): ``fl`` = log2(e), ln 2's
    leading part, the least x whose exp is kept (below it, where float32 or float64 would hold at
    most a subnormal, exp(x) is taken as 0), the least and greatest power of two k, 1/2 and ln 2's
    trailing part, in ``dtype``; ``coef`` = 1/13!, 1/12!, ..., 1/1!, 1/0! (Taylor's polynomial
    of exp, for |r| <= ln(2)/2); ``ints`` = the exponent's bias and the mantissa's width, as
    integers of ``dtype``'s width."""
    single = np.dtype(dtype) == np.float32
    # ln 2 = hi + lo, hi with trailing zero bits so that k * hi is exact (Cody and Waite's reduction;
    # the two parts are Cephes's for float32, fdlibm's for float64)
    hi, lo = (0.693359375, -2.12194440e-4) if single else (6.93147180369123816490e-01, 1.90821492927058770002e-10)
    fl = np.array([1.4426950408889634, hi, -87.3 if single else -708.3,
                   -126 if single else -1022, 127 if single else 1023, 0.5, lo], dtype)
    coef = np.array([1.0 / math.factorial(i) for i in range(13, -1, -1)], dtype)
    ints = np.array([127, 23] if single else [1023, 52], np.int32 if single else np.int64)
    return fl, coef, ints


@numba.njit(inline="always", fastmath=FAST)
def _exp_row(X, top, fl, coef, ints, bits):
    """X (K*K * TILE,) <- exp(X - top[t]) at column j * TILE + t; top (TILE,); bits: an integer
    buffer of X's length and width (the dtype of ``ints``).

    exp(x) = 2^k e^r with k = round(x / ln 2), clamped to the dtype's normal exponents, and
    r = x - k ln 2 (ln 2 in two parts, so that r is exact enough for any k): e^r by Taylor's
    polynomial of degree 13, 2^k built from its bits; within a unit in the last place of numpy's
    exp in float32 and in float64 (tests/test_fused.py). Each step is one that LLVM vectorises,
    where ``math.exp`` is a call per value. x below ``fl[2]`` gives 0 (the dtype's exp would be
    subnormal or 0 there); NaN stays NaN, +inf gives inf."""
    log2e, ln2_hi, lowest, kmin, kmax, half, ln2_lo = fl[0], fl[1], fl[2], fl[3], fl[4], fl[5], fl[6]
    bias, width = ints[0], ints[1]
    zero = half - half
    for j in range(X.shape[0] // TILE):
        for t in range(TILE):
            q = j * TILE + t
            x = X[q] - top[t]
            k = np.floor(x * log2e + half)
            k = k if k > kmin else kmin            # a NaN k becomes kmin: its r stays NaN
            k = k if k < kmax else kmax
            r = (x - k * ln2_hi) - k * ln2_lo
            e = coef[0]
            e = e * r + coef[1]
            e = e * r + coef[2]
            e = e * r + coef[3]
            e = e * r + coef[4]
            e = e * r + coef[5]
            e = e * r + coef[6]
            e = e * r + coef[7]
            e = e * r + coef[8]
            e = e * r + coef[9]
            e = e * r + coef[10]
            e = e * r + coef[11]
            e = e * r + coef[12]
            e = e * r + coef[13]
            X[q] = zero if x < lowest else e
            bits[q] = (ints.dtype.type(k) + bias) << width
    scale = bits.view(X.dtype)                      # 2^k
    for q in range(X.shape[0]):
        X[q] *= scale[q]


@numba.njit(inline="always", fastmath=FAST)
def _softmax(A, top, total, lse, l0, nv, fl, coef, ints, bits, zero):
    """The softmax over the taps, in place: A (Cw, K*K * TILE) logits -> alpha; lse (Cw, L) of
    the image gets the log-sum-exp of the tile's nv valid pixels. top, total: (TILE,) buffers;
    fl, coef, ints, bits: :func:`_exp_row`'s."""
    KK = A.shape[1] // TILE
    for cw in range(A.shape[0]):
        for t in range(TILE):
            top[t] = A[cw, t]
            total[t] = zero
        for j in range(1, KK):
            for t in range(TILE):
                top[t] = max(top[t], A[cw, j * TILE + t])
        _exp_row(A[cw], top, fl, coef, ints, bits)
        for j in range(KK):
            for t in range(TILE):
                total[t] += A[cw, j * TILE + t]
        for j in range(KK):
            for t in range(TILE):
                A[cw, j * TILE + t] /= total[t]
        for t in range(nv):
            lse[cw, l0 + t] = top[t] + math.log(total[t])


@numba.njit(inline="always", fastmath=FAST)
def _aggregate(A, x3, src, l0, nv, out, y, zero):
    """The aggregation, Eq. (2), for the tile: y[c, l0 + t] = sum_j alpha[c % Cw, j, t] *
    x3[c, src[j, l0 + t]] for the nv valid pixels; x3 (V, H*W + 1), y (V, L) of the image; out:
    a (TILE,) buffer."""
    Cw, KK = A.shape[0], A.shape[1] // TILE
    for c in range(x3.shape[0]):
        cw = c % Cw
        for t in range(TILE):
            out[t] = zero
        for j in range(KK):
            for t in range(TILE):
                out[t] += A[cw, j * TILE + t] * x3[c, src[j, l0 + t]]
        for t in range(nv):
            y[c, l0 + t] = out[t]


@numba.njit(inline="always", fastmath=FAST)
def _sums(Z, valid, sums):
    """sums[0, c] += the sum of Z[c] over the tile's valid pixels, sums[1, c] += that of Z[c]^2 (float64)."""
    for c in range(Z.shape[0]):
        a, b = 0.0, 0.0
        for j in range(Z.shape[1] // TILE):
            for t in range(TILE):
                v = Z[c, j * TILE + t] * valid[t]
                a += v
                b += v * Z[c, j * TILE + t]
        sums[0, c] += a
        sums[1, c] += b


@numba.njit(inline="always", fastmath=FAST)
def _norm_sums(G, Z, mean, istd, sums, row):
    """Per channel c: sums[row, c] += the sum of G (the gradient into a batch norm's output) and
    sums[row + 1, c] += the sum of G times the normalised input (Z - mean) * istd."""
    for c in range(G.shape[0]):
        a, b = 0.0, 0.0
        for q in range(G.shape[1]):
            a += G[c, q]
            b += G[c, q] * (Z[c, q] - mean[c]) * istd[c]
        sums[row, c] += a
        sums[row + 1, c] += b


@numba.njit(inline="always", fastmath=FAST)
def _relu_mask(G, U, zero):
    """G = 0 where the ReLU that made U did not pass (U <= 0): back through a ReLU."""
    for c in range(G.shape[0]):
        for q in range(G.shape[1]):
            if U[c, q] <= zero:
                G[c, q] = zero


@numba.njit(inline="always", fastmath=FAST)
def _norm_backward(G, Z, s, mean, istd, sums, row, count, training, valid):
    """G: the gradient into a batch norm's output -> into its input, in place. In training,
    s * (G - (sums[row] + xhat * sums[row + 1]) / count), xhat = (Z - mean) * istd, and zero at
    the pixels past the image's last (``valid`` 0); else s * G."""
    for c in range(G.shape[0]):
        if training:
            a, b = sums[row, c] / count, sums[row + 1, c] / count
            for j in range(G.shape[1] // TILE):
                for t in range(TILE):
                    q = j * TILE + t
                    xhat = (Z[c, q] - mean[c]) * istd[c]
                    G[c, q] = s[c] * (G[c, q] - (a + xhat * b)) * valid[t]
        else:
            for q in range(G.shape[1]):
                G[c, q] = s[c] * G[c, q]


@numba.njit(inline="always", fastmath=FAST)
def _dot(G, o, U, i, zero):
    """The sum over the tile's columns of G[o] * U[i], in the tiles' dtype."""
    acc = zero
    for q in range(G.shape[1]):
        acc += G[o, q] * U[i, q]
    return acc


@numba.njit(inline="always", fastmath=FAST)
def _add_outer(G, U, target, zero):
    """target[o, i] += the sum over the tile's columns of G[o] * U[i]: a 1x1 map's weight
    gradient. Each tile's sums are taken in the tiles' dtype, two rows of G by four of U at a time
    (eight sums in registers, each column read once per block), and added to ``target`` in
    float64."""
    O, I, Q = G.shape[0], U.shape[0], G.shape[1]
    for o in range(0, O - 1, 2):
        for i in range(0, I - 3, 4):
            a0, a1, a2, a3, b0, b1, b2, b3 = zero, zero, zero, zero, zero, zero, zero, zero
            for q in range(Q):
                g, h = G[o, q], G[o + 1, q]
                u0, u1, u2, u3 = U[i, q], U[i + 1, q], U[i + 2, q], U[i + 3, q]
                a0 += g * u0
                a1 += g * u1
                a2 += g * u2
                a3 += g * u3
                b0 += h * u0
                b1 += h * u1
                b2 += h * u2
                b3 += h * u3
            target[o, i] += a0
            target[o, i + 1] += a1
            target[o, i + 2] += a2
            target[o, i + 3] += a3
            target[o + 1, i] += b0
            target[o + 1, i + 1] += b1
            target[o + 1, i + 2] += b2
            target[o + 1, i + 3] += b3
        for i in range(I - I % 4, I):                # the last columns of U, fewer than four
            target[o, i] += _dot(G, o, U, i, zero)
            target[o + 1, i] += _dot(G, o + 1, U, i, zero)
    if O % 2:                                        # the last row of G
        for i in range(I):
            target[O - 1, i] += _dot(G, O - 1, U, i, zero)


@numba.njit(inline="always", fastmath=FAST)
def _fold(G1, Z0, U0, Z1, H, s1, W1, mean0, istd0, mean1, istd1, valid, fold, cross, zero):
    """Pass 1's parts of batch norm 0's two backward sums (the module docstring): fold (4, C0)
    += sum M H, sum M H z0hat, sum M, sum M z0hat with H = W1^T (s1 G1), M = relu'(U0) * valid;
    cross (2, C0, Rh) += sum M z1hat^T, sum M z0hat z1hat^T (float64). Overwrites G1, Z0, U0, Z1
    and H (the tile's buffers, which pass 1 needs no more)."""
    for o in range(G1.shape[0]):                     # G1 <- s1 G1, Z1 <- z1hat
        for q in range(G1.shape[1]):
            G1[o, q] = s1[o] * G1[o, q]
            Z1[o, q] = (Z1[o, q] - mean1[o]) * istd1[o]
    _matmul(W1, G1, H, True, zero)
    for i in range(H.shape[0]):                      # U0 <- M, Z0 <- M z0hat
        a, b, c, d = 0.0, 0.0, 0.0, 0.0
        for j in range(H.shape[1] // TILE):
            for t in range(TILE):
                q = j * TILE + t
                m = valid[t] if U0[i, q] > zero else zero
                xhat = (Z0[i, q] - mean0[i]) * istd0[i]
                U0[i, q] = m
                Z0[i, q] = m * xhat
                a += m * H[i, q]
                b += m * xhat * H[i, q]
                c += m
                d += m * xhat
        fold[0, i] += a
        fold[1, i] += b
        fold[2, i] += c
        fold[3, i] += d
    _add_outer(U0, Z1, cross[0], zero)
    _add_outer(Z0, Z1, cross[1], zero)


def fold(sums, fold_total, cross_total, W1, s1, count):
    """Rows 2 and 3 of ``sums`` (batch norm 0's backward sums: of the gradient into its output,
    and of that times its normalised input) from pass 1's parts summed over the images:
    fold_total (4, C0), cross_total (2, C0, Rh), float64; rows 0 and 1 (batch norm 1's) are
    complete. W1 (Rh, C0) and s1 (Rh,) as in the passes."""
    rh, c0 = W1.shape
    w1 = W1.astype(np.float64)
    a = s1.astype(np.float64) * sums[0, :rh] / count     # s1 a and s1 b, per hidden channel
    b = s1.astype(np.float64) * sums[1, :rh] / count
    wa = w1.T @ a                                        # (C0,)
    wb = w1.T * b                                        # (C0, Rh)
    for row in (0, 1):
        sums[2 + row, :c0] = (fold_total[row] - wa * fold_total[2 + row]
                              - (cross_total[row] * wb).sum(axis=1))


@numba.njit(parallel=True, cache=CACHE, fastmath=FAST)
def forward(stage, x1, x2, x3, p, src, sign, s0, t0, W1, s1, t1, W2, b2, sums_part, y, lse, fl, coef,
            ints, zero):
    """stage 1: sums_part[n, :, :C0] = sums of z0 and of z0^2 over image n's pixels and taps;
    stage 2: sums_part[n, :, :Rh], the same of z1; stage 3: y (N, V, L) and lse (N, Cw, L)."""
    N, V, L = y.shape
    KK, Lt = src.shape
    C0, Rh, Cw, Q = s0.shape[0], W1.shape[0], W2.shape[0], KK * TILE
    dtype = s0.dtype
    for n in prange(N):
        Z0, U0 = np.empty((C0, Q), dtype), np.empty((C0, Q), dtype)
        Z1, U1 = np.empty((Rh, Q), dtype), np.empty((Rh, Q), dtype)
        A = np.empty((Cw, Q), dtype)
        centre, out = np.empty((C0, TILE), dtype), np.empty(TILE, dtype)
        top, total, valid = np.empty(TILE, dtype), np.empty(TILE, dtype), np.empty(TILE, dtype)
        bits = np.empty(Q, ints.dtype)
        for l0 in range(0, Lt, TILE):
            nv = min(TILE, L - l0)
            for t in range(TILE):
                valid[t] = 1 if t < nv else 0
            if stage == 1:
                _inputs(n, l0, x1, x2, p, src, sign, centre, Z0)
                _sums(Z0, valid, sums_part[n])
                continue
            if stage == 2:
                _inputs(n, l0, x1, x2, p, src, sign, centre, Z0)
                _relu_affine(Z0, s0, t0, U0, zero)
                _matmul(W1, U0, Z1, False, zero)
                _sums(Z1, valid, sums_part[n])
                continue
            _gamma(n, l0, x1, x2, p, src, sign, s0, t0, W1, s1, t1, W2, b2, centre, Z0, U0, Z1, U1, A, zero)
            _softmax(A, top, total, lse[n], l0, nv, fl, coef, ints, bits, zero)
            _aggregate(A, x3[n], src, l0, nv, out, y[n], zero)


@numba.njit(parallel=True, cache=CACHE, fastmath=FAST)
def backward(stage, training, count, gy, x1, x2, x3, p, src, sign, s0, t0, mean0, istd0, W1,
             s1, t1, mean1, istd1, W2, b2, lse, sums, gx1, gx2, gx3, gp_part, gW1_part, gW2_part,
             gb2_part, sums_part, fold_part, cross_part, fl, coef, ints, zero):
    """One pass of the backward (the module docstring's table); ``stage`` 0 is both at once
    (evaluation only). ``sums`` (4, max(C0, Rh)) holds, from pass 1 (and :func:`fold`), the sums
    of the gradient into each batch norm's output and of that times its normalised input: rows 0,
    1 for batch norm 1, rows 2, 3 for batch norm 0 (``count`` = N * K*K * L elements each).

    gy (N, V, L); the gradients gx1, gx2, gx3, gp_part are shaped as their inputs (the appended
    element collects what the zero padding would get). Writes: stage 1 (or 0): gx3, gW2_part,
    gb2_part, sums_part rows 0, 1; stage 1: fold_part (N, 4, C0), cross_part (N, 2, C0, Rh) (the
    module docstring); stage 0: sums_part rows 2, 3; stage 3 (or 0): gW1_part, gx1, gx2, gp_part.
    The caller zeroes them.
    """
    N, V, L = gy.shape
    KK, Lt = src.shape
    R = x1.shape[1]
    C0, Rh, Cw, Q = s0.shape[0], W1.shape[0], W2.shape[0], KK * TILE
    jc = KK // 2
    dtype = s0.dtype
    for n in prange(N):
        Z0, U0 = np.empty((C0, Q), dtype), np.empty((C0, Q), dtype)
        Z1, U1 = np.empty((Rh, Q), dtype), np.empty((Rh, Q), dtype)
        A = np.empty((Cw, Q), dtype)                    # alpha
        G = np.empty((Cw, Q), dtype)                    # gradient of alpha, then of the logits
        G1 = np.empty((Rh, Q), dtype)                   # gradient of batch norm 1's output, then of z1
        G0 = np.empty((C0, Q), dtype)                   # the same for batch norm 0 and z0
        centre, g = np.empty((C0, TILE), dtype), np.empty((V, TILE), dtype)
        top, dot, valid = np.empty((Cw, TILE), dtype), np.empty(TILE, dtype), np.empty(TILE, dtype)
        bits = np.empty(Q, ints.dtype)
        for l0 in range(0, Lt, TILE):
            nv = min(TILE, L - l0)
            for t in range(TILE):
                valid[t] = 1 if t < nv else 0
            for c in range(V):
                for t in range(TILE):
                    g[c, t] = gy[n, c, l0 + t] if t < nv else zero
            for cw in range(Cw):
                for t in range(TILE):
                    top[cw, t] = lse[n, cw, l0 + t] if t < nv else zero
            _gamma(n, l0, x1, x2, p, src, sign, s0, t0, W1, s1, t1, W2, b2, centre, Z0, U0, Z1, U1, A, zero)
            for cw in range(Cw):                        # alpha again, from the saved log-sum-exp
                _exp_row(A[cw], top[cw], fl, coef, ints, bits)
                for j in range(KK):
                    for t in range(TILE):
                        q = j * TILE + t
                        if t >= nv:
                            A[cw, q] = zero
                        G[cw, q] = zero
            for c in range(V):                          # the aggregation backward
                cw = c % Cw
                for j in range(KK):
                    for t in range(TILE):
                        G[cw, j * TILE + t] += g[c, t] * x3[n, c, src[j, l0 + t]]
                if stage <= 1:
                    for j in range(KK):
                        for t in range(TILE):
                            gx3[n, c, src[j, l0 + t]] += A[cw, j * TILE + t] * g[c, t]
            for cw in range(Cw):                        # the softmax backward
                for t in range(TILE):
                    dot[t] = zero
                for j in range(KK):
                    for t in range(TILE):
                        dot[t] += A[cw, j * TILE + t] * G[cw, j * TILE + t]
                for j in range(KK):
                    for t in range(TILE):
                        q = j * TILE + t
                        G[cw, q] = A[cw, q] * (G[cw, q] - dot[t])
            # the last 1x1 map: the gradients of W2, b2 and of batch norm 1's output (through the ReLU)
            _matmul(W2, G, G1, True, zero)
            _relu_mask(G1, U1, zero)
            if stage <= 1:
                for cw in range(Cw):
                    acc = 0.0
                    for q in range(Q):
                        acc += G[cw, q]
                    gb2_part[n, cw] += acc
                _add_outer(G, U1, gW2_part[n], zero)
                _norm_sums(G1, Z1, mean1, istd1, sums_part[n], 0)
                if stage == 1:
                    _fold(G1, Z0, U0, Z1, G0, s1, W1, mean0, istd0, mean1, istd1, valid,
                          fold_part[n], cross_part[n], zero)
                    continue
            # batch norm 1 backward: the gradient of z1; the first 1x1 map: of W1 and of batch norm 0's output
            _norm_backward(G1, Z1, s1, mean1, istd1, sums, 0, count, training, valid)
            _add_outer(G1, U0, gW1_part[n], zero)
            _matmul(W1, G1, G0, True, zero)
            _relu_mask(G0, U0, zero)
            if stage == 0:
                _norm_sums(G0, Z0, mean0, istd0, sums_part[n], 2)
            # batch norm 0 backward: the gradient of z0, added onto phi (centre), psi and p (taps)
            _norm_backward(G0, Z0, s0, mean0, istd0, sums, 2, count, training, valid)
            for c in range(C0):
                for j in range(KK):
                    for t in range(TILE):
                        q = j * TILE + t
                        if c < R:
                            gx1[n, c, src[jc, l0 + t]] += G0[c, q]
                            gx2[n, c, src[j, l0 + t]] -= sign * G0[c, q]
                        else:
                            gp_part[n, c - R, src[jc, l0 + t]] += G0[c, q]
                            gp_part[n, c - R, src[j, l0 + t]] -= G0[c, q]


numba.config.CACHE_DIR = _user_cache_dir
