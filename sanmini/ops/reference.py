"""The ``"torch"`` backend: the SAN operators in plain torch. This file is the specification.

Every operator first pads the input, then unfolds the K x K footprint of each output position p into
a column, so that ``x_unfold[n, c, j, p]`` is ``x[n, c, window_j(p)]`` (see :mod:`.geometry`).
Aggregation (Zhao et al., CVPR 2020, Eq. 2 and Eq. 4) is then a weighted sum over j; subtraction is
the centre column minus every column (the relation delta(x_i, x_j) = x_i - x_j of Eq. 3).

The backward passes are written out too (``fold`` is the adjoint of ``unfold``, and
``reflection_pad2d_backward`` the adjoint of reflection padding), so this backend has its own
backward like the compiled ones. It runs on any device and dtype and needs no compiler.
Shapes: N batch, C channels, Cw weight channels (C % Cw == 0), K*K taps, L = Ho*Wo positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .geometry import Window


def pad(x: torch.Tensor, win: Window) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H + 2*padding, W + 2*padding), zeros or mirror image."""
    p = win.padding
    if p == 0:
        return x
    return F.pad(x, (p, p, p, p), mode="reflect" if win.reflect else "constant")


def unpad_grad(grad_padded: torch.Tensor, x_shape, win: Window) -> torch.Tensor:
    """Adjoint of :func:`pad`: the gradient on the padded input back onto the input."""
    p = win.padding
    if p == 0:
        return grad_padded
    if win.reflect:
        dummy = grad_padded.new_empty(x_shape)
        return torch.ops.aten.reflection_pad2d_backward(grad_padded, dummy, [p, p, p, p])
    return grad_padded[:, :, p:-p, p:-p]


def unfold(x: torch.Tensor, win: Window) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, K*K, L): column j of position p holds x[n, c, window_j(p)]."""
    cols = F.unfold(pad(x, win), win.kernel_size, dilation=win.dilation, stride=win.stride)
    return rearrange(cols, "n (c j) l -> n c j l", j=win.taps)


def fold(cols: torch.Tensor, x_shape, win: Window) -> torch.Tensor:
    """Adjoint of :func:`unfold`: (N, C, K*K, L) -> (N, C, H, W), summing where footprints overlap."""
    p = win.padding
    padded_size = (win.height + 2 * p, win.width + 2 * p)
    grad_padded = F.fold(rearrange(cols, "n c j l -> n (c j) l"), padded_size, win.kernel_size,
                         dilation=win.dilation, stride=win.stride)
    return unpad_grad(grad_padded, x_shape, win)


def centre(x: torch.Tensor, win: Window) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, L): x at the centre tap of each footprint, x[centre(p)]."""
    start = win.centre * win.dilation
    stop_h = start + win.stride * (win.out_height - 1) + 1
    stop_w = start + win.stride * (win.out_width - 1) + 1
    picked = pad(x, win)[:, :, start:stop_h:win.stride, start:stop_w:win.stride]
    return picked.flatten(2)


def centre_grad(grad: torch.Tensor, x_shape, win: Window) -> torch.Tensor:
    """Adjoint of :func:`centre`: (N, C, L) -> (N, C, H, W)."""
    p = win.padding
    start = win.centre * win.dilation
    stop_h = start + win.stride * (win.out_height - 1) + 1
    stop_w = start + win.stride * (win.out_width - 1) + 1
    n, c = x_shape[:2]
    grad_padded = grad.new_zeros(n, c, win.height + 2 * p, win.width + 2 * p)
    grad_padded[:, :, start:stop_h:win.stride, start:stop_w:win.stride] = grad.view(
        n, c, win.out_height, win.out_width)
    return unpad_grad(grad_padded, x_shape, win)


# --- aggregation: y[n, c, p] = sum_j weight[n, c % Cw, j, p] * x[n, c, window_j(p)] -------------

def aggregation_forward(x: torch.Tensor, weight: torch.Tensor, win: Window) -> torch.Tensor:
    """x (N, C, H, W), weight (N, Cw, K*K, L) -> y (N, C, Ho, Wo)."""
    n, c = x.shape[:2]
    cw = weight.shape[1]
    # Channel c = g * Cw + (c % Cw): split C into C/Cw groups that all share the Cw weights.
    x_cols = rearrange(unfold(x, win), "n (g cw) j l -> n g cw j l", cw=cw)
    y = (x_cols * weight.unsqueeze(1)).sum(dim=3)                      # (N, G, Cw, L)
    return y.reshape(n, c, win.out_height, win.out_width)


def aggregation_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, win: Window):
    """grad_y (N, C, Ho, Wo) -> (grad_x (N, C, H, W), grad_weight (N, Cw, K*K, L))."""
    cw = weight.shape[1]
    g = rearrange(grad_y, "n (g cw) ho wo -> n g cw 1 (ho wo)", cw=cw)
    x_cols = rearrange(unfold(x, win), "n (g cw) j l -> n g cw j l", cw=cw)
    grad_weight = (x_cols * g).sum(dim=1)                             # (N, Cw, K*K, L)
    grad_cols = rearrange(weight.unsqueeze(1) * g, "n g cw j l -> n (g cw) j l")
    return fold(grad_cols, x.shape, win), grad_weight


# --- subtraction: y[n, c, j, p] = x1[n, c, centre(p)] - x2[n, c, window_j(p)] -----------------------

def subtraction2_forward(x1: torch.Tensor, x2: torch.Tensor, win: Window) -> torch.Tensor:
    """x1, x2 (N, C, H, W) -> (N, C, K*K, L)."""
    return centre(x1, win).unsqueeze(2) - unfold(x2, win)


def subtraction2_backward(grad: torch.Tensor, x_shape, win: Window):
    """grad (N, C, K*K, L) -> (grad_x1, grad_x2), each (N, C, H, W)."""
    return centre_grad(grad.sum(dim=2), x_shape, win), fold(-grad, x_shape, win)
