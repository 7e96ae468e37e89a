"""ResNet26, ResNet38, ResNet50 (He et al., 2016), the convolutional baselines of Zhao et al.,
CVPR 2020, Table 1, with the bottleneck block the SAN block replaces.

The layout and module names are torchvision's (stride on the 3x3 convolution), so ResNet50 has the
familiar 25,557,032 parameters and 4.1 G multiply-adds.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.checks import check_int, check_ints


class Bottleneck(nn.Module):
    """x (N, in_planes, H, W) -> (N, 4 * planes, H / stride, W / stride):
    relu(x' + bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))))  with 1x1, 3x3, 1x1 convolutions."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """7x7 stem, max-pool, four stages of bottlenecks (64, 128, 256, 512 planes), pool, fc."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, width: int = 64):
        super().__init__()
        layers = check_ints("layers", layers, 4, minimum=1)
        check_int("num_classes", num_classes)
        check_int("width", width)
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_planes = width
        for k, blocks in enumerate(layers):
            planes = width * 2 ** k
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(in_planes, planes, stride=2 if (b == 0 and k > 0) else 1))
                in_planes = planes * Bottleneck.expansion
            setattr(self, f"layer{k + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))       # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))   # (N, 2048, H/32, W/32)
        return self.fc(torch.flatten(self.avgpool(x), 1))           # (N, num_classes)
