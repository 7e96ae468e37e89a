"""A convolution written with the SAN aggregation operator: the same weights at every position.

A (depthwise) convolution aggregates each channel over the footprint R(i) with weights that do not
depend on the input or on i (Zhao et al., CVPR 2020, Sec. 1: aggregation with a fixed kernel).
:class:`FixedAggregation` is that, with one K x K kernel per weight channel shared by
``share_planes`` channels as in a SAN layer, so a SAN layer and a convolution can be compared with
everything else equal.
"""
from __future__ import annotations

import torch
from torch import nn

from ..ops import output_size
from .operators import Aggregation
from .checks import check_input
from .pairwise import check_footprint


class FixedAggregation(nn.Module):
    """x (N, in_planes, H, W) -> (N, out_planes, Ho, Wo): beta = 1x1 conv, then aggregation with a
    learned kernel (out_planes / share_planes, K*K) that is the same at every position."""

    def __init__(self, in_planes: int, out_planes: int, share_planes: int = 8, kernel_size: int = 7,
                 stride: int = 1, dilation: int = 1, pad_mode: str = "reflect", backend: str = "auto"):
        super().__init__()
        check_footprint(kernel_size, out_planes, share_planes)
        self.conv3 = nn.Conv2d(in_planes, out_planes, kernel_size=1)     # beta
        self.kernel = nn.Parameter(torch.full((out_planes // share_planes, kernel_size ** 2),
                                              1.0 / kernel_size ** 2))
        self.aggregation = Aggregation(kernel_size, stride=stride, dilation=dilation,
                                       pad_mode=pad_mode, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.conv3.in_channels)
        value = self.conv3(x)
        agg = self.aggregation
        ho, wo = (output_size(s, agg.kernel_size, agg.stride, agg.padding, agg.dilation)
                  for s in x.shape[-2:])
        alpha = self.kernel[None, :, :, None].expand(x.shape[0], -1, -1, ho * wo)  # (N, Cw, K*K, L)
        return agg(value, alpha.to(value.dtype))
