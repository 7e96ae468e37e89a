"""The fused pairwise weight branch as Numba CUDA kernels, ``numba.cuda.jit``: the passes of
:mod:`.fused_cpu` (its table says what each pass computes), laid out for a GPU, with the
backward's pass 2 (batch norm 0's sums) still a pass of its own: the CPU kernels fold it into pass
1, these make three backward passes in training (stages 1, 2, 3).

A thread block takes a tile of ``P`` consecutive output pixels of one image, then the next tile
``gridDim.x`` further on (the tiles of all images numbered one after the other), until none is
left. Its threads share each tile's work element by element: thread t computes elements
t, t + T, t + 2T, ... of each (channels, P) array, and those arrays live in the block's shared
memory (dynamic shared memory, carved by :func:`layout`).

The taps of the footprint are visited one at a time. For tap j the block computes, for the tile's
P pixels, gamma's input z0 = [x1_i - sign * x2_j, p_i - p_j], its hidden layer z1 = W1 relu(bn0(z0))
and the logits W2 relu(bn1(z1)) + b2. The forward then folds the tap into a running softmax and the
running weighted sum of beta (each (weight channel, pixel) keeps its running maximum and sum of
exponentials, and the sum is rescaled when the maximum moves), as fused attention kernels fold
keys. So no K*K values per pixel exist anywhere, not even in shared memory. The backward needs the
softmax's inner product sum_j alpha_j dL/dalpha_j before its first tap; it is sum_c dL/dy_c y_c over
the weight channel's value channels (alpha sums beta into y), so the forward's output y is an input
of the backward.

Sums over the whole batch (the batch norms' statistics, the two sums of each batch norm's
backward, the weight gradients of gamma's 1x1 maps) go, per block, in float64, into that block's
own row of an array the caller adds up over blocks (``torch.sum``). Each element of a row is
written by one thread only, so those sums need no atomics and come out the same in every run.
The gradients of x1, x2, x3 and p are scattered with atomic adds, because the taps of neighbouring
pixels read the same input.

Arrays: x1, x2 (N, R, H*W + 1), x3 (N, V, H*W + 1) and p (1, R0, H*W + 1) are the input planes
flattened with one zero appended, which zero padding reads (as in :mod:`.fused_cpu`); y and the
gradient of y (N, V, L), lse (N, Cw, L), L = Ho * Wo. Batch norm is passed as z * s + t per channel.
Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels run on NumPy arrays.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numba
from numba import cuda

from .elementwise import build

KERNELS = ("fused_forward", "fused_backward")     # names for sanmini.ops.ptx.compile_kernel
THREADS = 128            # per block
MAX_BLOCKS = 1024        # blocks; each then loops over tiles
MAX_TILE = 32            # output pixels per tile, at most
# Dynamic shared memory per block: the 48 KB a block gets without opting in, static and dynamic
# together, less 1 KB: for sm_90 the assembler gives both kernels 1024 bytes of static shared
# memory of its own (0 for sm_75 to sm_89), which a launch of 48 KB would exceed (see
# sanmini.ops.ptx.limits_exceeded and tests/test_ptx.py, for each target).
SHARED_BYTES = 47 * 1024

_source = build(cuda.jit(device=True)).source


def layout(backward: bool, c0: int, rh: int, cw: int, v: int, tile: int) -> dict[str, int]:
    """Offsets (in elements) of the per-tile arrays in a block's shared memory, and "total".

    Forward: Z (C0, P) gamma's input (stage 1) or relu(bn0(z0)); H (Rh, P) z1 (stage 2) or
    relu(bn1(z1)); then for the softmax and the aggregation E, F, M, S (Cw, P): exp(logit - max),
    the factor the running sums are rescaled by, the running maximum and sum of exponentials;
    O (V, P) the running weighted sum of beta.
    Backward: Z0, U0, G0 (C0, P) z0, relu(bn0(z0)) and the gradient into z0's batch norm output;
    Z1, U1, G1 (Rh, P) the same one layer up; AL, GA, DOT, LSE (Cw, P) alpha, the gradient of the
    logits, sum_j alpha_j dL/dalpha_j and the log-sum-exp; GY (V, P) the gradient of y.
    """
    names = ((("Z0", c0), ("U0", c0), ("G0", c0), ("Z1", rh), ("U1", rh), ("G1", rh), ("AL", cw),
              ("GA", cw), ("DOT", cw), ("LSE", cw), ("GY", v)) if backward else
             (("Z", c0), ("H", rh), ("E", cw), ("F", cw), ("M", cw), ("S", cw), ("O", v)))
    offsets, at = {}, 0
    for name, rows in names:
        offsets[name] = at
        at += rows * tile
    offsets["total"] = at
    return offsets


def tile_size(backward: bool, c0: int, rh: int, cw: int, v: int, itemsize: int) -> int:
    """The largest tile (a power of two, at most MAX_TILE pixels) whose arrays fit in SHARED_BYTES."""
    tile = MAX_TILE
    while tile > 1 and layout(backward, c0, rh, cw, v, tile)["total"] * itemsize > SHARED_BYTES:
        tile //= 2
    if layout(backward, c0, rh, cw, v, tile)["total"] * itemsize > SHARED_BYTES:
        raise ValueError(f"the fused CUDA kernels need {layout(backward, c0, rh, cw, v, 1)['total']} "
                         f"values of shared memory per pixel for C0={c0}, Rh={rh}, Cw={cw}, V={v}; "
                         f"more than {SHARED_BYTES} bytes")
    return tile


@cuda.jit(device=True, inline=True)
def tap_index(l, j, geo):
    """The flat input index tap j (row-major in the footprint) of output pixel l reads; H * W (the
    appended zero) where it reads zero padding or l >= L (a tile's pixels past the image's last).
    geo = (L, H, W, Wo, K, stride, padding, dilation, reflect)."""
    L, H, W, Wo, K, stride, padding, dilation, reflect = geo
    if l >= L:
        return H * W
    h = _source((l // Wo) * stride - padding + (j // K) * dilation, H, reflect)
    w = _source((l % Wo) * stride - padding + (j % K) * dilation, W, reflect)
    if h < 0 or w < 0:
        return H * W
    return h * W + w


@cuda.jit(device=True, inline=True)
def gamma_input(sh, raw, out, x1, x2, p, n, l0, j, geo, sign, s0, t0, P, zero):
    """Gamma's input at tap j for the tile's P pixels from l0: z0 = [x1_i - sign * x2_j, p_i - p_j]
    (C0, P) into sh[raw:] and relu(z0 * s0 + t0) into sh[out:]; an offset < 0 is not written."""
    R, C0 = x1.shape[1], s0.shape[0]
    jc = (geo[4] * geo[4]) // 2                                   # the centre tap, K*K // 2
    for e in range(cuda.threadIdx.x, C0 * P, cuda.blockDim.x):
        c, q = e // P, e % P
        centre, src = tap_index(l0 + q, jc, geo), tap_index(l0 + q, j, geo)
        if c < R:
            z = x1[n, c, centre] - sign * x2[n, c, src]
        else:
            z = p[0, c - R, centre] - p[0, c - R, src]
        if raw >= 0:
            sh[raw + e] = z
        if out >= 0:
            sh[out + e] = max(z * s0[c] + t0[c], zero)


@cuda.jit(device=True, inline=True)
def hidden_layer(sh, u0, raw, out, W1, s1, t1, P, zero):
    """z1 = W1 sh[u0:] (Rh, P) into sh[raw:] and relu(z1 * s1 + t1) into sh[out:]; an offset < 0
    is not written."""
    Rh, C0 = W1.shape
    for e in range(cuda.threadIdx.x, Rh * P, cuda.blockDim.x):
        o, q = e // P, e % P
        z = zero
        for c in range(C0):
            z += W1[o, c] * sh[u0 + c * P + q]
        if raw >= 0:
            sh[raw + e] = z
        if out >= 0:
            sh[out + e] = max(z * s1[o] + t1[o], zero)


@cuda.jit(device=True, inline=True)
def back_through_map(sh, g_in, u, g_out, Wm, P, zero):
    """sh[g_out:] (I, P) = Wm^T sh[g_in:] where the ReLU that made sh[u:] passed, 0 where not: the
    gradient back through a 1x1 map Wm (O, I) and the ReLU before it."""
    O, I = Wm.shape
    for e in range(cuda.threadIdx.x, I * P, cuda.blockDim.x):
        i, q = e // P, e % P
        g = zero
        if sh[u + e] > zero:
            for o in range(O):
                g += Wm[o, i] * sh[g_in + o * P + q]
        sh[g_out + e] = g


@cuda.jit(device=True, inline=True)
def channel_sums(sh, base, C, P, nv, acc, row):
    """acc[block, row, c] += the sum over the tile's nv valid pixels of sh[base + c*P + q], and
    acc[block, row + 1, c] += that of its square (float64); one thread per channel."""
    b = cuda.blockIdx.x
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        s, s2 = 0.0, 0.0
        for q in range(nv):
            v = sh[base + c * P + q]
            s += v
            s2 += v * v
        acc[b, row, c] += s
        acc[b, row + 1, c] += s2


@cuda.jit(device=True, inline=True)
def norm_sums(sh, g_base, z_base, C, P, mean, istd, acc, row):
    """acc[block, row, c] += sum_q G[c, q] and acc[block, row + 1, c] += sum_q G[c, q] * xhat[c, q],
    xhat = (Z - mean) * istd: the two sums of a batch norm's backward (G is zero past nv)."""
    b = cuda.blockIdx.x
    for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
        s, s2 = 0.0, 0.0
        for q in range(P):
            g = sh[g_base + c * P + q]
            s += g
            s2 += g * (sh[z_base + c * P + q] - mean[c]) * istd[c]
        acc[b, row, c] += s
        acc[b, row + 1, c] += s2


@cuda.jit(device=True, inline=True)
def outer_sums(sh, g_base, u_base, O, I, P, target):
    """target[block, o, i] += sum_q G[o, q] * U[i, q] (float64): a 1x1 map's weight gradient."""
    b = cuda.blockIdx.x
    for e in range(cuda.threadIdx.x, O * I, cuda.blockDim.x):
        o, i = e // I, e % I
        s = 0.0
        for q in range(P):
            s += sh[g_base + o * P + q] * sh[u_base + i * P + q]
        target[b, o, i] += s


@lru_cache(maxsize=None)
def kernels(dtype):
    """The forward and backward kernels computing in ``dtype`` (numba.float32 or numba.float64),
    as a namespace; shared memory is an array of that type, so each type has its own kernels."""

    @cuda.jit
    def forward(x1, x2, x3, p, s0, t0, W1, s1, t1, W2, b2, acc, y, lse, stage,
                H, W, Wo, K, stride, padding, dilation, reflect, sign, P, zero):
        """stage 1: acc[b, 0:2, :C0] += sums of z0 and z0^2; stage 2: acc[b, 0:2, :Rh], the same
        of z1; stage 3: y (N, V, L) and lse (N, Cw, L)."""
        N, V, L = y.shape
        C0, Rh, Cw = s0.shape[0], W1.shape[0], W2.shape[0]
        KK = K * K
        T, tid = cuda.blockDim.x, cuda.threadIdx.x
        tiles = (L + P - 1) // P
        geo = (L, H, W, Wo, K, stride, padding, dilation, reflect)
        sh = cuda.shared.array(0, dtype)
        Z, Hd = 0, C0 * P                                         # layout(False, ...)
        E = Hd + Rh * P
        F, M, S = E + Cw * P, E + 2 * Cw * P, E + 3 * Cw * P
        O = E + 4 * Cw * P
        for tile in range(cuda.blockIdx.x, N * tiles, cuda.gridDim.x):
            n, l0 = tile // tiles, (tile % tiles) * P
            nv = min(P, L - l0)
            for j in range(KK):
                if stage == 1:                                    # z0, and its sums
                    gamma_input(sh, Z, -1, x1, x2, p, n, l0, j, geo, sign, s0, t0, P, zero)
                    cuda.syncthreads()
                    channel_sums(sh, Z, C0, P, nv, acc, 0)
                    cuda.syncthreads()
                    continue
                gamma_input(sh, -1, Z, x1, x2, p, n, l0, j, geo, sign, s0, t0, P, zero)
                cuda.syncthreads()
                if stage == 2:                                    # z1, and its sums
                    hidden_layer(sh, Z, Hd, -1, W1, s1, t1, P, zero)
                    cuda.syncthreads()
                    channel_sums(sh, Hd, Rh, P, nv, acc, 0)
                    cuda.syncthreads()
                    continue
                hidden_layer(sh, Z, -1, Hd, W1, s1, t1, P, zero)
                cuda.syncthreads()
                for e in range(tid, Cw * P, T):                   # logits, into the running softmax
                    cw, q = e // P, e % P
                    a = b2[cw]
                    for o in range(Rh):
                        a += W2[cw, o] * sh[Hd + o * P + q]
                    if j == 0:
                        sh[M + e], sh[S + e], sh[E + e] = a, zero + 1, zero + 1
                    else:
                        m = max(sh[M + e], a)
                        f, x = math.exp(sh[M + e] - m), math.exp(a - m)
                        sh[M + e], sh[S + e], sh[E + e], sh[F + e] = m, sh[S + e] * f + x, x, f
                cuda.syncthreads()
                for e in range(tid, V * P, T):                    # the aggregation, Eq. (2)
                    c, q = e // P, e % P
                    w = (c % Cw) * P + q
                    src = tap_index(l0 + q, j, geo)
                    term = sh[E + w] * x3[n, c, src]
                    sh[O + e] = term if j == 0 else sh[O + e] * sh[F + w] + term
                cuda.syncthreads()
            if stage == 3:
                for e in range(tid, V * P, T):
                    c, q = e // P, e % P
                    if q < nv:
                        y[n, c, l0 + q] = sh[O + e] / sh[S + (c % Cw) * P + q]
                for e in range(tid, Cw * P, T):
                    cw, q = e // P, e % P
                    if q < nv:
                        lse[n, cw, l0 + q] = sh[M + e] + math.log(sh[S + e])
                cuda.syncthreads()

    @cuda.jit
    def backward(gy, y, x1, x2, x3, p, s0, t0, mean0, istd0, W1, s1, t1, mean1, istd1, W2, b2,
                 lse, sums, gx1, gx2, gx3, gp, acc, gW1, gW2, gb2, stage, training,
                 H, W, Wo, K, stride, padding, dilation, reflect, sign, P, zero):
        """One pass of the backward (:mod:`.fused_cpu`'s table, where pass 2, here a pass of its
        own, is folded into pass 1: it recomputes the branch for the gradient of z1, of W1 and
        batch norm 0's two sums; ``stage`` 0 is all three, in evaluation). ``sums`` (4, *) holds the earlier passes' totals divided by the count of
        elements, N * K*K * L: rows 0, 1 for batch norm 1, rows 2, 3 for batch norm 0. Writes: stage 1 (or 0) gx3, gW2[b], gb2[b], acc[b, 0:2];
        stage 2 (or 0) gW1[b], acc[b, 2:4]; stage 3 (or 0) gx1, gx2, gp."""
        N, V, L = gy.shape
        R, C0, Rh, Cw = x1.shape[1], s0.shape[0], W1.shape[0], W2.shape[0]
        KK, jc = K * K, (K * K) // 2
        T, tid, b = cuda.blockDim.x, cuda.threadIdx.x, cuda.blockIdx.x
        tiles = (L + P - 1) // P
        geo = (L, H, W, Wo, K, stride, padding, dilation, reflect)
        sh = cuda.shared.array(0, dtype)
        Z0, U0, G0 = 0, C0 * P, 2 * C0 * P                      # layout(True, ...)
        Z1, U1, G1 = 3 * C0 * P, 3 * C0 * P + Rh * P, 3 * C0 * P + 2 * Rh * P
        AL = 3 * (C0 + Rh) * P
        GA, DOT, LSE, GY = AL + Cw * P, AL + 2 * Cw * P, AL + 3 * Cw * P, AL + 4 * Cw * P
        for tile in range(b, N * tiles, cuda.gridDim.x):
            n, l0 = tile // tiles, (tile % tiles) * P
            nv = min(P, L - l0)
            for e in range(tid, V * P, T):
                c, q = e // P, e % P
                sh[GY + e] = gy[n, c, l0 + q] if q < nv else zero
            for e in range(tid, Cw * P, T):
                cw, q = e // P, e % P
                sh[LSE + e] = lse[n, cw, l0 + q] if q < nv else zero
                d = zero
                if q < nv:
                    for c in range(cw, V, Cw):                  # sum_j alpha_j dL/dalpha_j
                        d += gy[n, c, l0 + q] * y[n, c, l0 + q]
                sh[DOT + e] = d
            cuda.syncthreads()
            for j in range(KK):                                   # recompute gamma at tap j
                gamma_input(sh, Z0, U0, x1, x2, p, n, l0, j, geo, sign, s0, t0, P, zero)
                cuda.syncthreads()
                hidden_layer(sh, U0, Z1, U1, W1, s1, t1, P, zero)
                cuda.syncthreads()
                for e in range(tid, Cw * P, T):                   # alpha from the log-sum-exp
                    cw, q = e // P, e % P
                    al, g = zero, zero
                    if q < nv:
                        a = b2[cw]
                        for o in range(Rh):
                            a += W2[cw, o] * sh[U1 + o * P + q]
                        al = math.exp(a - sh[LSE + e])
                        src = tap_index(l0 + q, j, geo)
                        for c in range(cw, V, Cw):              # dL/dalpha_j, aggregation backward
                            g += sh[GY + c * P + q] * x3[n, c, src]
                    sh[AL + e], sh[GA + e] = al, al * (g - sh[DOT + e])   # softmax backward
                cuda.syncthreads()
                if stage <= 1:
                    for e in range(tid, V * P, T):                # beta's gradient
                        c, q = e // P, e % P
                        if q < nv:
                            src = tap_index(l0 + q, j, geo)
                            cuda.atomic.add(gx3, (n, c, src), sh[AL + (c % Cw) * P + q] * sh[GY + e])
                    for cw in range(tid, Cw, T):
                        s = 0.0
                        for q in range(P):
                            s += sh[GA + cw * P + q]
                        gb2[b, cw] += s
                    outer_sums(sh, GA, U1, Cw, Rh, P, gW2)
                back_through_map(sh, GA, U1, G1, W2, P, zero)     # back through W2 and the ReLU
                cuda.syncthreads()
                if stage <= 1:
                    norm_sums(sh, G1, Z1, Rh, P, mean1, istd1, acc, 0)
                    if stage == 1:
                        cuda.syncthreads()
                        continue
                cuda.syncthreads()
                for e in range(tid, Rh * P, T):                   # batch norm 1 backward
                    o, q = e // P, e % P
                    g = sh[G1 + e] * s1[o]
                    if training:
                        xhat = (sh[Z1 + e] - mean1[o]) * istd1[o]
                        g = s1[o] * (sh[G1 + e] - (sums[0, o] + xhat * sums[1, o])) if q < nv else zero
                    sh[G1 + e] = g
                cuda.syncthreads()
                back_through_map(sh, G1, U0, G0, W1, P, zero)     # back through W1 and the ReLU
                cuda.syncthreads()
                if stage != 3:
                    outer_sums(sh, G1, U0, Rh, C0, P, gW1)
                    norm_sums(sh, G0, Z0, C0, P, mean0, istd0, acc, 2)
                    if stage == 2:
                        cuda.syncthreads()
                        continue
                for e in range(tid, C0 * P, T):                   # batch norm 0 backward, scattered
                    c, q = e // P, e % P
                    if q < nv:
                        g = sh[G0 + e] * s0[c]
                        if training:
                            xhat = (sh[Z0 + e] - mean0[c]) * istd0[c]
                            g = s0[c] * (sh[G0 + e] - (sums[2, c] + xhat * sums[3, c]))
                        centre = tap_index(l0 + q, jc, geo)
                        src = tap_index(l0 + q, j, geo)
                        if c < R:
                            cuda.atomic.add(gx1, (n, c, centre), g)
                            cuda.atomic.add(gx2, (n, c, src), -sign * g)
                        else:
                            cuda.atomic.add(gp, (0, c - R, centre), g)
                            cuda.atomic.add(gp, (0, c - R, src), -g)
                cuda.syncthreads()

    return _Kernels(forward, backward)


class _Kernels:
    def __init__(self, forward, backward):
        self.forward, self.backward = forward, backward


def kernel_signature(name: str, dtype=numba.float32) -> tuple:
    """Numba argument types of ``"fused_forward"`` or ``"fused_backward"`` for C-contiguous arrays
    of ``dtype``, e.g. for ``numba.cuda.compile_ptx(kernels(dtype).forward.py_func, sig, cc=(9, 0))``."""
    def a(ndim, t=dtype):
        return numba.types.Array(t, ndim, "C")
    i64, f64 = numba.int64, numba.float64
    geometry = (i64,) * 7 + (numba.boolean, dtype, i64, dtype)  # H .. dilation, reflect, sign, P, zero
    if name == "fused_forward":
        return (a(3), a(3), a(3), a(3), *[a(1)] * 2, a(2), *[a(1)] * 2, a(2), a(1), a(3, f64),
                a(3), a(3), i64) + geometry
    if name == "fused_backward":
        return (a(3), a(3), a(3), a(3), a(3), a(3), *[a(1)] * 4, a(2), *[a(1)] * 4, a(2), a(1), a(3),
                a(2), a(3), a(3), a(3), a(3), a(3, f64), a(3, f64), a(3, f64), a(2, f64),
                i64, numba.boolean) + geometry
    raise ValueError(f"no fused kernel {name!r}; there are 'fused_forward' and 'fused_backward'")
