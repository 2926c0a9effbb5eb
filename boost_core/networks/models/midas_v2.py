"""MiDaS v2 / v2.1 (``MidasNet``, features 256, non_negative): ResNeXt-101 32x8d encoder + RefineNet decoder.

State_dict layout of the official ``model.pt`` (666 entries, SPEC §10b):

* ``pretrained.layer1.{0,1,4}.*`` = the encoder stem (conv1, bn1) and its layer1, held in one
  Sequential(conv1, bn1, relu, maxpool, layer1); ``pretrained.layer{2,3,4}.*`` = its later stages;
* ``scratch.layer{1-4}_rn.weight``: 3x3 convs (no bias) taking 256/512/1024/2048 channels to 256;
* ``scratch.refinenet{1-4}.resConfUnit{1,2}.conv{1,2}.{weight,bias}``;
* ``scratch.output_conv.{0,2,4}.{weight,bias}``.

Forward: (N, 3, H, W) float32, ImageNet-normalised RGB, H and W multiples of 32 ->
(N, H, W) float32 relative inverse depth, >= 0 (final ReLU).

The reference's in-place ReLUs matter (SPEC part two §F): a residual conv unit computes
``conv2(relu(conv1(relu(x)))) + relu(x)``, the skip term being rectified too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.resnext import resnext101_32x8d


class ResidualConvUnit(nn.Module):
    """``conv2(relu(conv1(relu(x)))) + relu(x)``, 3x3 convs with bias, channels unchanged."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """``up2(RCU2(x + RCU1(skip)))`` (or ``up2(RCU2(x))`` without a skip); bilinear x2, align_corners=True."""

    def __init__(self, features: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Interpolate(nn.Module):
    """Bilinear x2 upsampling, align_corners=False (slot 1 of ``scratch.output_conv``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class MidasNet(nn.Module):
    """MiDaS v2: ``pretrained`` (encoder pieces) and ``scratch`` (decoder), as in the official file."""

    def __init__(self, features: int = 256):
        super().__init__()
        resnet = resnext101_32x8d()
        self.pretrained = nn.Module()
        self.pretrained.layer1 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                                               resnet.layer1)
        self.pretrained.layer2 = resnet.layer2
        self.pretrained.layer3 = resnet.layer3
        self.pretrained.layer4 = resnet.layer4

        self.scratch = nn.Module()
        for i, channels in enumerate((256, 512, 1024, 2048), start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
        for i in (4, 3, 2, 1):  # the official state_dict order
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features))
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(features, 128, 3, padding=1),
            Interpolate(),
            nn.Conv2d(128, 32, 3, padding=1),
            nn.ReLU(inplace=True),  # in place on the map the convolution just made (as in the reference)
            nn.Conv2d(32, 1, 1),
            nn.ReLU(inplace=True),  # non_negative=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, s = self.pretrained, self.scratch
        l1 = p.layer1(x)
        l2 = p.layer2(l1)
        l3 = p.layer3(l2)
        l4 = p.layer4(l3)
        path = s.refinenet4(s.layer4_rn(l4))
        path = s.refinenet3(path, s.layer3_rn(l3))
        path = s.refinenet2(path, s.layer2_rn(l2))
        path = s.refinenet1(path, s.layer1_rn(l1))
        return torch.squeeze(s.output_conv(path), dim=1)


def build() -> MidasNet:
    """MiDaS v2 architecture with untrained weights (load a checkpoint into it)."""
    return MidasNet()
