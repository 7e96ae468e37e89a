"""The per-element math of the SAN operators, written once and compiled for two targets.

``build(compile_fn)`` returns the functions below compiled with ``compile_fn``: ``numba.njit`` for
the ``"cpu"`` backend (:mod:`.cpu`) and ``numba.cuda.jit(device=True)`` for the ``"cuda"`` backend
(:mod:`.cuda`). One Numba dispatcher cannot be called from the other target, so each target gets its
own compiled copy of the same Python source. The CUDA kernels only decide which element each thread
computes and call these. The CPU kernels compute the same sums in a loop order that vectorises
(taps outside, whole planes inside; see :mod:`.cpu`), with ``source`` deciding the padding.

Coordinates: ``i`` is a row (or column) of the padded input written in input coordinates, so it runs
from ``-padding`` to ``size - 1 + padding``; output ``o`` tap ``k`` reads
``i = o * stride - padding + k * dilation`` (see :mod:`.geometry`). Weights and gradients of shape
(N, Cw, K*K, Ho*Wo) are passed viewed as (N, Cw, K*K, Ho, Wo). ``acc`` is a zero of the type to
accumulate in (float32 for float32 data, float64 for float64 data).

The backward passes gather: each input pixel sums over the output windows that read it, so no two
threads write one element and no atomics are needed.
"""
from __future__ import annotations

from types import SimpleNamespace


def build(compile_fn) -> SimpleNamespace:
    """Compile the per-element functions with ``compile_fn`` and return them by name."""

    @compile_fn
    def source(i, size, reflect):
        """Input index read at padded coordinate i, or -1 where zero padding is read."""
        if i < 0:
            return -i if reflect else -1
        if i >= size:
            return 2 * (size - 1) - i if reflect else -1
        return i

    @compile_fn
    def preimage(h, size, padding, reflect, r):
        """The r-th (r = 0, 1, 2) padded coordinate that reads input index h; < -padding if none.

        r = 0 is h itself; with reflection padding, -h (the mirror at the top or left edge) and
        2 * (size - 1) - h (the mirror at the bottom or right edge) read h too, where they lie in
        the padded range.
        """
        if r == 0:
            return h
        if reflect:
            if r == 1 and 1 <= h and h <= padding:
                return -h
            mirror = 2 * (size - 1) - h
            if r == 2 and h < size - 1 and mirror <= size - 1 + padding:
                return mirror
        return -padding - 1

    @compile_fn
    def output_of_tap(i, k, stride, padding, dilation, out_size):
        """The output o whose tap k reads padded coordinate i, or -1 if there is none."""
        t = i + padding - k * dilation
        if stride == 1:   # no division: the common case, and the hot loop of the backward pass
            return t if 0 <= t and t < out_size else -1
        if t < 0 or t % stride != 0:
            return -1
        o = t // stride
        return o if o < out_size else -1

    @compile_fn
    def aggregation_at(x, weight, n, c, ho, wo, K, stride, padding, dilation, reflect, acc):
        """y[n, c, ho, wo] = sum_j weight[n, c % Cw, j, ho, wo] * x[n, c, window_j(ho, wo)]."""
        cw = c % weight.shape[1]
        for ki in range(K):
            hi = source(ho * stride - padding + ki * dilation, x.shape[2], reflect)
            if hi < 0:
                continue
            for kj in range(K):
                wi = source(wo * stride - padding + kj * dilation, x.shape[3], reflect)
                if wi >= 0:
                    acc += weight[n, cw, ki * K + kj, ho, wo] * x[n, c, hi, wi]
        return acc

    @compile_fn
    def aggregation_weight_grad_at(x, grad_y, n, cw, weight_channels, ki, kj, ho, wo, stride,
                                   padding, dilation, reflect, acc):
        """grad_weight[n, cw, j, ho, wo] = sum over c = cw mod Cw of grad_y[n, c, ho, wo] * x[n, c, window_j]."""
        hi = source(ho * stride - padding + ki * dilation, x.shape[2], reflect)
        wi = source(wo * stride - padding + kj * dilation, x.shape[3], reflect)
        if hi < 0 or wi < 0:
            return acc
        for c in range(cw, x.shape[1], weight_channels):
            acc += grad_y[n, c, ho, wo] * x[n, c, hi, wi]
        return acc

    @compile_fn
    def window_gather_at(a, b, use_b, n, c, h, w, height, width, K, stride, padding, dilation,
                         reflect, acc):
        """Sum, over every (j, ho, wo) whose footprint tap j reads input pixel (h, w), of
        a[n, c % Ca, j, ho, wo] (times b[n, c, ho, wo] if use_b).

        With a = weight and b = grad_y this is grad_x of aggregation; with a = grad and use_b False
        it is minus grad_x2 of subtraction (b is then not read, but must still be a 4-D array).
        """
        ca = c % a.shape[1]
        for rh in range(3):
            ih = preimage(h, height, padding, reflect, rh)
            if ih < -padding:
                continue
            for rw in range(3):
                iw = preimage(w, width, padding, reflect, rw)
                if iw < -padding:
                    continue
                for ki in range(K):
                    ho = output_of_tap(ih, ki, stride, padding, dilation, a.shape[3])
                    if ho < 0:
                        continue
                    for kj in range(K):
                        wo = output_of_tap(iw, kj, stride, padding, dilation, a.shape[4])
                        if wo < 0:
                            continue
                        if use_b:
                            acc += a[n, ca, ki * K + kj, ho, wo] * b[n, c, ho, wo]
                        else:
                            acc += a[n, ca, ki * K + kj, ho, wo]
        return acc

    @compile_fn
    def subtraction_at(x1, x2, y, n, c, ho, wo, K, stride, padding, dilation, reflect, zero):
        """y[n, c, j, ho, wo] = x1[n, c, centre(ho, wo)] - x2[n, c, window_j(ho, wo)] for every j."""
        mid = (K - 1) // 2
        hc = source(ho * stride - padding + mid * dilation, x1.shape[2], reflect)
        wc = source(wo * stride - padding + mid * dilation, x1.shape[3], reflect)
        centre = zero
        if hc >= 0 and wc >= 0:
            centre += x1[n, c, hc, wc]
        for ki in range(K):
            hi = source(ho * stride - padding + ki * dilation, x2.shape[2], reflect)
            for kj in range(K):
                wi = source(wo * stride - padding + kj * dilation, x2.shape[3], reflect)
                if hi >= 0 and wi >= 0:
                    y[n, c, ki * K + kj, ho, wo] = centre - x2[n, c, hi, wi]
                else:
                    y[n, c, ki * K + kj, ho, wo] = centre

    @compile_fn
    def centre_gather_at(grad, n, c, h, w, height, width, K, stride, padding, dilation, reflect,
                         acc):
        """grad_x1 of subtraction at (h, w): sum over the outputs whose centre reads (h, w) of
        sum_j grad[n, c, j, ho, wo]."""
        mid = (K - 1) // 2
        for rh in range(3):
            ih = preimage(h, height, padding, reflect, rh)
            if ih < -padding:
                continue
            ho = output_of_tap(ih, mid, stride, padding, dilation, grad.shape[3])
            if ho < 0:
                continue
            for rw in range(3):
                iw = preimage(w, width, padding, reflect, rw)
                if iw < -padding:
                    continue
                wo = output_of_tap(iw, mid, stride, padding, dilation, grad.shape[4])
                if wo < 0:
                    continue
                for j in range(K * K):
                    acc += grad[n, c, j, ho, wo]
        return acc

    return SimpleNamespace(
        source=source, preimage=preimage, output_of_tap=output_of_tap,
        aggregation_at=aggregation_at, aggregation_weight_grad_at=aggregation_weight_grad_at,
        window_gather_at=window_gather_at, subtraction_at=subtraction_at,
        centre_gather_at=centre_gather_at,
    )
