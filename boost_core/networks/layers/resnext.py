"""ResNet / ResNeXt encoders in torchvision's layout (parameter names and shapes), without avgpool/fc.

Used by MiDaS v2 and LeReS (ResNeXt-101 32x8d) and by SGR (ResNet-50). Written here so that no
torchvision import and no hub download is needed: the weights come only from the checkpoints.

Bottleneck "v1.5": 1x1 conv -> 3x3 conv carrying the stride (and the groups) -> 1x1 conv with x4
expansion, each followed by BatchNorm; ReLU after the first two and after the residual add. The
first block of a stage gets a ``downsample`` = (1x1 conv with the stride, BatchNorm).

``ResNet.forward`` takes (N, 3, H, W) float32 and returns the four stage outputs
[layer1, layer2, layer3, layer4] at strides 4, 8, 16, 32 with 256, 512, 1024, 2048 channels.
"""
from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride sits on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and four Bottleneck stages; no avgpool, no fc."""

    def __init__(self, layers: tuple[int, int, int, int], groups: int = 1, width_per_group: int = 64):
        super().__init__()
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, groups=self.groups, base_width=self.base_width)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return [l1, l2, l3, l4]


def resnext101_32x8d() -> ResNet:
    """ResNeXt-101 32x8d: [3, 4, 23, 3] blocks, 32 groups of width 8 (MiDaS v2 and LeReS encoders)."""
    return ResNet((3, 4, 23, 3), groups=32, width_per_group=8)


def resnet50() -> ResNet:
    """ResNet-50: [3, 4, 6, 3] blocks (SGR encoder)."""
    return ResNet((3, 4, 6, 3))
