"""The SAN bottleneck block (Zhao et al., CVPR 2020, Sec. 4, Fig. 2).

Where a ResNet bottleneck has 1x1 conv, 3x3 conv, 1x1 conv, the SAN block has BN-ReLU, a
self-attention layer (pairwise or patchwise; its 1x1 maps phi, psi, beta take the place of the
first 1x1 conv), BN-ReLU, a 1x1 linear layer, and the residual connection:

    y = x + conv(relu(bn2(sam(relu(bn1(x))))))
"""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_int
from .pairwise import PairwiseAttention
from .patchwise import PatchwiseAttention

ATTENTIONS = {"pairwise": PairwiseAttention, "patchwise": PatchwiseAttention}


class SANBlock(nn.Module):
    """x (N, planes, H, W) -> (N, planes, H, W): one self-attention bottleneck block.

    The attention layer has relation width ``planes // 16`` and value width ``planes // 4`` (the
    reference implementation's widths); ``attention_kwargs`` go to it (relation, share_planes,
    kernel_size, position_encoding, pad_mode, backend, recompute, gamma_layers, and for pairwise
    share and fused).
    """

    def __init__(self, planes: int, attention: str = "pairwise", **attention_kwargs):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {tuple(ATTENTIONS)}, got {attention!r}")
        check_int("planes", planes)
        if attention_kwargs.get("stride", 1) != 1:
            raise ValueError(f"SANBlock keeps the resolution (its output is added to its input), so "
                             f"stride must be 1, got {attention_kwargs['stride']!r}; the SAN models "
                             f"downsample with max-pools between stages")
        rel_planes, mid_planes = planes // 16, planes // 4
        if rel_planes < 1:
            raise ValueError(f"planes={planes} is too narrow: the relation width planes // 16 "
                             "must be at least 1")
        self.bn1 = nn.BatchNorm2d(planes)
        self.sam = ATTENTIONS[attention](planes, rel_planes, mid_planes, **attention_kwargs)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv = nn.Conv2d(mid_planes, planes, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.sam(out)))
        return self.conv(out) + x
