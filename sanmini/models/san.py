"""SAN10, SAN15, SAN19 (Zhao et al., CVPR 2020, Table 1): a ResNet layout whose convolutions are
replaced by self-attention blocks.

    x (N, 3, 224, 224)
    conv_in 1x1, bn_in, relu                                   (N, 64, 224, 224)
    stage k = 0..4: max-pool 2x2, conv_k 1x1 (transition),     (N, C_k, 224 / 2^(k+1), ...)
                    layer_k (SAN blocks), bn_k, relu           C_k = 64, 256, 512, 1024, 2048
    global average pool, fc                                    (N, num_classes)

The module names are those of the reference implementation, so its released checkpoints load
(:func:`sanmini.models.load_pretrained`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import MaxPool2x2, SANBlock
from ..nn.checks import check_int, check_ints

STAGE_WIDTHS = (1, 4, 8, 16, 32)   # times the stem width: 64, 256, 512, 1024, 2048


class SAN(nn.Module):
    """A self-attention network: ``layers`` blocks per stage, footprint ``kernels`` per stage;
    ``attention_kwargs`` go to every attention layer (:class:`sanmini.nn.SANBlock`), e.g.
    ``recompute=True``."""

    def __init__(self, attention: str = "pairwise", layers=(2, 1, 2, 4, 1), kernels=(3, 7, 7, 7, 7),
                 num_classes: int = 1000, width: int = 64, **attention_kwargs):
        super().__init__()
        layers, kernels = check_ints("layers", layers, 5, minimum=0), check_ints("kernels", kernels, 5)
        check_int("num_classes", num_classes)
        check_int("width", width)
        self.conv_in = nn.Conv2d(3, width, kernel_size=1, bias=False)
        self.bn_in = nn.BatchNorm2d(width)
        in_planes = width
        for k, (blocks, kernel_size, mult) in enumerate(zip(layers, kernels, STAGE_WIDTHS)):
            planes = width * mult
            setattr(self, f"conv{k}", nn.Conv2d(in_planes, planes, kernel_size=1, bias=False))
            setattr(self, f"bn{k}", nn.BatchNorm2d(planes))
            setattr(self, f"layer{k}", nn.Sequential(*[
                SANBlock(planes, attention, kernel_size=kernel_size, **attention_kwargs)
                for _ in range(blocks)]))
            in_planes = planes
        self.relu = nn.ReLU(inplace=True)
        self.pool = MaxPool2x2(backend=attention_kwargs.get("backend", "auto"))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_planes, num_classes)
        self.min_input_size = self._smallest_input()

    def _smallest_input(self) -> int:
        """The smallest input height and width: stage k works at 1/2^(k+1) of the input (max-pools
        that round down), and a reflection-padded footprint needs more pixels than its padding."""
        size = 1
        for k in range(5):
            for block in getattr(self, f"layer{k}"):
                window = block.sam.aggregation
                need = window.padding + 1 if window.pad_mode == "reflect" else 1
                size = max(size, need * 2 ** (k + 1))
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_input_size:
            kernels = [getattr(self, f"layer{k}")[0].sam.aggregation.kernel_size for k in range(5)]
            raise ValueError(f"this SAN (footprints {kernels} per stage, "
                             f"{getattr(self, 'layer0')[0].sam.aggregation.pad_mode} padding) needs inputs of at "
                             f"least {self.min_input_size} x {self.min_input_size} pixels: its last stage works at "
                             f"1/32 of the input; got {tuple(x.shape[-2:])}")
        x = self.relu(self.bn_in(self.conv_in(x)))                   # (N, 64, H, W)
        for k in range(5):
            transition, bn, layer = (getattr(self, f"{name}{k}") for name in ("conv", "bn", "layer"))
            x = self.relu(bn(layer(transition(self.pool(x)))))      # (N, C_k, H / 2^(k+1), ...)
        return self.fc(torch.flatten(self.avgpool(x), 1))           # (N, num_classes)
