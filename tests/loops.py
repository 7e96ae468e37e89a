"""Independent float64 references for the SAN operators: explicit loops over outputs and taps.

Written from the operator definitions in the issue text, not from sanmini: padding is an explicit
index map, and the backward passes *scatter* (each output adds into the inputs it read), where the
kernels gather and the torch backend folds. Arrays are numpy float64; loops run over
(ho, wo, ki, kj), vectorised over batch and channel.
"""
import numpy as np


def out_size(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def read_index(i, size, pad_mode):
    """Index of the input read at coordinate i of the padded input (i from -padding); None = zero."""
    if 0 <= i < size:
        return i
    if pad_mode == "zeros":
        return None
    return -i if i < 0 else 2 * (size - 1) - i


def taps(H, W, k, stride, padding, dilation, pad_mode):
    """Yield (ho, wo, j, (hi, wi) or None, (hc, wc) or None) for every output position and tap."""
    Ho, Wo = out_size(H, k, stride, padding, dilation), out_size(W, k, stride, padding, dilation)
    mid = (k - 1) // 2
    for ho in range(Ho):
        for wo in range(Wo):
            hc = read_index(ho * stride - padding + mid * dilation, H, pad_mode)
            wc = read_index(wo * stride - padding + mid * dilation, W, pad_mode)
            centre = None if hc is None or wc is None else (hc, wc)
            for ki in range(k):
                for kj in range(k):
                    hi = read_index(ho * stride - padding + ki * dilation, H, pad_mode)
                    wi = read_index(wo * stride - padding + kj * dilation, W, pad_mode)
                    src = None if hi is None or wi is None else (hi, wi)
                    yield ho, wo, ki * k + kj, src, centre


def aggregation(x, w, k, stride, padding, dilation, pad_mode):
    N, C, H, W = x.shape
    Ho, Wo = out_size(H, k, stride, padding, dilation), out_size(W, k, stride, padding, dilation)
    wf = w[:, np.arange(C) % w.shape[1]]                       # (N, C, K*K, L): weight per channel
    y = np.zeros((N, C, Ho, Wo))
    for ho, wo, j, src, _ in taps(H, W, k, stride, padding, dilation, pad_mode):
        if src is not None:
            y[:, :, ho, wo] += wf[:, :, j, ho * Wo + wo] * x[:, :, src[0], src[1]]
    return y


def aggregation_grads(x, w, gy, k, stride, padding, dilation, pad_mode):
    N, C, H, W = x.shape
    Cw = w.shape[1]
    Wo = gy.shape[3]
    wf = w[:, np.arange(C) % Cw]
    gx = np.zeros_like(x)
    gwf = np.zeros_like(wf)
    for ho, wo, j, src, _ in taps(H, W, k, stride, padding, dilation, pad_mode):
        if src is not None:
            l = ho * Wo + wo
            gx[:, :, src[0], src[1]] += wf[:, :, j, l] * gy[:, :, ho, wo]
            gwf[:, :, j, l] += x[:, :, src[0], src[1]] * gy[:, :, ho, wo]
    gw = gwf.reshape(N, C // Cw, Cw, *gwf.shape[2:]).sum(axis=1)
    return gx, gw


def subtraction2(x1, x2, k, stride, padding, dilation, pad_mode):
    N, C, H, W = x1.shape
    Ho, Wo = out_size(H, k, stride, padding, dilation), out_size(W, k, stride, padding, dilation)
    y = np.zeros((N, C, k * k, Ho * Wo))
    for ho, wo, j, src, centre in taps(H, W, k, stride, padding, dilation, pad_mode):
        l = ho * Wo + wo
        if centre is not None:
            y[:, :, j, l] += x1[:, :, centre[0], centre[1]]
        if src is not None:
            y[:, :, j, l] -= x2[:, :, src[0], src[1]]
    return y


def subtraction2_grads(x_shape, g, k, stride, padding, dilation, pad_mode):
    N, C, H, W = x_shape
    Wo = out_size(W, k, stride, padding, dilation)
    g1 = np.zeros(x_shape)
    g2 = np.zeros(x_shape)
    for ho, wo, j, src, centre in taps(H, W, k, stride, padding, dilation, pad_mode):
        l = ho * Wo + wo
        if centre is not None:
            g1[:, :, centre[0], centre[1]] += g[:, :, j, l]
        if src is not None:
            g2[:, :, src[0], src[1]] -= g[:, :, j, l]
    return g1, g2
