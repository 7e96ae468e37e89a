"""phi, psi and beta, the three 1 x 1 maps that start a self-attention layer, as one convolution.

Pairwise and patchwise attention (Zhao et al., CVPR 2020, Eq. 2 to 5) map their input x three
times with 1 x 1 convolutions: phi(x) and psi(x) for the relation, beta(x) for the values. All
three read the same x, so :func:`one_pass` computes them as one convolution whose weight is the
three weights stacked, and splits its output: x is read once instead of three times, and the
backward pass is one convolution's backward instead of three, whose input gradients autograd would
then add up. At the book's scale the three maps are narrow (2 to 64 output channels for phi and
psi), where a CPU's convolution spends most of its time on the call rather than the arithmetic
(``bench/book_scale.py`` times a SAN10 step with the maps computed either way, mode ``ops-before``).

The layers keep the three maps as the ``nn.Conv2d`` modules ``conv1``, ``conv2``, ``conv3`` (the
reference implementation's names, so released weights load, and each keeps its own parameters
and gradients); the stacking happens at every call and costs a copy of the weights. A map that
appears twice (``share="phi_psi"``: psi is phi) is computed twice, as the separate calls did.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stackable(convs) -> bool:
    """Whether the convolutions are 1 x 1 maps of one input that :func:`one_pass` can stack: plain
    ``nn.Conv2d`` (not a subclass, whose forward may differ) of kernel 1, stride 1, no padding or
    dilation, one group, the same input width, all with a bias or none."""
    first = convs[0]
    return all(type(c) is nn.Conv2d and c.kernel_size == (1, 1) and c.stride == (1, 1)
               and c.padding == (0, 0) and c.dilation == (1, 1) and c.groups == 1
               and c.in_channels == first.in_channels and (c.bias is None) == (first.bias is None)
               and c.padding_mode == "zeros" for c in convs)


def one_pass(x: torch.Tensor, convs) -> list[torch.Tensor]:
    """x (N, C, H, W) -> ``[conv(x) for conv in convs]``, each (N, C_k, H, W) and contiguous,
    computed as one convolution with the weights (and biases) of ``convs`` stacked. Convolutions
    that :func:`stackable` refuses are called one by one."""
    if len(convs) < 2 or not stackable(convs):
        return [conv(x) for conv in convs]
    weight = torch.cat([c.weight for c in convs])                  # (sum C_k, C, 1, 1)
    bias = None if convs[0].bias is None else torch.cat([c.bias for c in convs])
    out = F.conv2d(x, weight, bias)                                 # (N, sum C_k, H, W)
    return [part.contiguous() for part in out.split([c.out_channels for c in convs], dim=1)]
