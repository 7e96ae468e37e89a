"""A 1 x 1 convolution computed as a matrix product over channels.

gamma (:mod:`.gamma`) maps a relation tensor (N, C_in, K*K, L) to weights with 1 x 1 convolutions
of few channels (2 to 34 at the book's scale) over a large "image" of K*K x L positions. On a
CPU, torch's convolution (oneDNN, or its own kernels with oneDNN off) spends several times the
time of a matrix product on exactly these shapes, most of it in the backward pass: in a profile of
a SAN10 pairwise training step at the book's scale, the convolutions' backward alone took 41% of
it, most of that gamma's (``bench/book_scale.py`` measures a step with gamma as either, its mode
``ops-conv`` against ``ops``). :class:`Pointwise` is an ``nn.Conv2d`` of kernel size 1 (the
same parameters, the same ``state_dict``, released weights load) whose forward is
``y[n, o, ...] = sum_c W[o, c] x[n, c, ...] + b[o]``, one batched matrix product per image
(``torch.baddbmm``, the bias added in the same pass), so that autograd's backward is batched
matrix products as well. Every tensor it writes is contiguous, as the convolution's: a strided
output or gradient (which ``torch.matmul`` of a matrix and a batch makes, transposing the batch
behind the scenes) slows the batch norms and ReLUs around it more than the product saves.
Chosen by where it is used, never by a timing: every 1 x 1 map inside gamma is a
:class:`Pointwise`, on every device.
"""
from __future__ import annotations

import torch
from torch import nn


class Pointwise(nn.Conv2d):
    """x (N, C_in, A, B) -> (N, C_out, A, B): a 1 x 1 convolution, stride 1, no padding, as a
    matrix product over channels. Parameters as ``nn.Conv2d(in_channels, out_channels, 1,
    bias=bias)``: weight (C_out, C_in, 1, 1), bias (C_out,)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (N, {self.in_channels}, A, B), got {tuple(x.shape)}")
        n, _, a, b = x.shape
        weight = self.weight.view(1, self.out_channels, self.in_channels).expand(n, -1, -1)   # a view, no copy
        x = x.reshape(n, self.in_channels, a * b)
        if self.bias is None:
            y = torch.bmm(weight, x)
        else:
            y = torch.baddbmm(self.bias.view(1, -1, 1).expand(n, -1, a * b), weight, x)
        return y.view(n, self.out_channels, a, b)              # contiguous, as a convolution's output
