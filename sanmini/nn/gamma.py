"""gamma, the mapping from a relation to attention weights (Zhao et al., CVPR 2020, Eq. 2 and 4).

BN-ReLU-1x1 conv-BN-ReLU-1x1 conv, applied to relation tensors of shape (N, C_in, K*K, L) (or
(N, C_in, 1, L) for patchwise) as if K*K x L were an image. The last layer outputs C_out weight
channels, each shared by ``share_planes`` value channels in the aggregation. The layer indices
(0, 2, 3, 5) are those of the reference implementation's ``conv_w``, so released weights load.
"""
from __future__ import annotations

from torch import nn


def gamma(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """(N, in_channels, A, L) -> (N, out_channels, A, L)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, out_channels, kernel_size=1),
    )
