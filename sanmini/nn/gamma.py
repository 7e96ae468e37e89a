"""gamma, the mapping from a relation to attention weights (Zhao et al., CVPR 2020, Eq. 2 and 4).

BN-ReLU-1x1 conv-BN-ReLU-1x1 conv, applied to relation tensors of shape (N, C_in, K*K, L) (or
(N, C_in, 1, L) for patchwise) as if K*K x L were an image. The last layer outputs C_out weight
channels, each shared by ``share_planes`` value channels in the aggregation. The layer indices
(0, 2, 3, 5) are those of the reference implementation's ``conv_w``, so released weights load.
Each 1 x 1 convolution is a :class:`.pointwise.Pointwise` (an ``nn.Conv2d`` computed as a matrix
product: on these shapes, few channels over K*K x L positions, a CPU's convolution is several times
slower).

``layers`` sets the depth of gamma for the paper's ablation of the mapping function: that many
BN-ReLU-1x1 conv steps, the inner ones ``mid_channels`` wide (1: one conv from the relation to the
weights; 2, the default: the reference's; 3: one more step of ``mid_channels``).
"""
from __future__ import annotations

from torch import nn

from .checks import check_int
from .pointwise import Pointwise


def gamma(in_channels: int, mid_channels: int, out_channels: int, layers: int = 2) -> nn.Sequential:
    """(N, in_channels, A, L) -> (N, out_channels, A, L): ``layers`` x (BN, ReLU, 1x1 conv)."""
    check_int("gamma_layers", layers)
    widths = [in_channels] + [mid_channels] * (layers - 1) + [out_channels]
    steps = []
    for k, (a, b) in enumerate(zip(widths, widths[1:])):
        last = k == layers - 1               # only the last conv has a bias (a BN follows the others)
        steps += [nn.BatchNorm2d(a), nn.ReLU(inplace=True), Pointwise(a, b, bias=last)]
    return nn.Sequential(*steps)
