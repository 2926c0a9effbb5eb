"""The feature-fusion decoder shared by LeReS (lib/network_auxi.py) and SGR (structuredrl/models/networks.py).

Both projects use the same decoder with the same parameter names (SPEC §10c, part two §D.2):

* ``conv = FTB(2048 -> 512)`` on the stride-32 features, ``conv1`` 3x3 512 -> 256 (bias), bilinear x2;
* ``ffm2 = FFM(1024, 256, 256)``, ``ffm1 = FFM(512, 256, 256)``, ``ffm0 = FFM(256, 256, 256)`` fusing the
  stride-16, 8 and 4 features, each ending with a bilinear x2;
* ``outconv = AO(256 -> 1)``: 3x3 256 -> 128, BN, ReLU, 3x3 128 -> 1, bilinear x2.

Every upsampling is bilinear with align_corners=True. The output (N, 1, H, W) float32 has no
activation (it can be negative). Input H and W must be multiples of 32.

In-place ReLU quirk kept (SPEC part two §F): the branch's first ReLU also rectifies the skip term,
so FTB computes ``relu(relu(c) + branch(relu(c)))`` with ``c = conv1(x)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class FTB(nn.Module):
    """Feature transfer block: ``c = conv1(x); relu(relu(c) + conv_branch[1:](relu(c)))``.

    ``conv_branch`` = [ReLU, conv3x3 (bias), BatchNorm, ReLU, conv3x3 (bias)], as in the official names.
    """

    def __init__(self, inchannels: int, midchannels: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(inchannels, midchannels, 3, padding=1, bias=True)
        self.conv_branch = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(midchannels, midchannels, 3, padding=1, bias=True),
            nn.BatchNorm2d(midchannels),
            nn.ReLU(),
            nn.Conv2d(midchannels, midchannels, 3, padding=1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(self.conv1(x))
        b = r
        for layer in list(self.conv_branch)[1:]:
            b = layer(b)
        return F.relu(r + b)


class FFM(nn.Module):
    """Feature fusion module: ``up2(ftb2(ftb1(low) + high))``."""

    def __init__(self, inchannels: int, midchannels: int, outchannels: int):
        super().__init__()
        self.ftb1 = FTB(inchannels, midchannels)
        self.ftb2 = FTB(midchannels, outchannels)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return _up2(self.ftb2(self.ftb1(low) + high))


class AO(nn.Module):
    """Adaptive output: ``adapt_conv`` = [conv3x3 in -> in/2, BN, ReLU, conv3x3 in/2 -> out, bilinear x2]."""

    def __init__(self, inchannels: int, outchannels: int):
        super().__init__()
        self.adapt_conv = nn.Sequential(
            nn.Conv2d(inchannels, inchannels // 2, 3, padding=1, bias=True),
            nn.BatchNorm2d(inchannels // 2),
            nn.ReLU(),
            nn.Conv2d(inchannels // 2, outchannels, 3, padding=1, bias=True),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapt_conv(x)


class Decoder(nn.Module):
    """Encoder outputs [l1, l2, l3, l4] (256/512/1024/2048 channels, strides 4/8/16/32) -> (N, 1, H, W)."""

    def __init__(self):
        super().__init__()
        self.conv = FTB(2048, 512)
        self.conv1 = nn.Conv2d(512, 256, 3, padding=1, bias=True)
        self.ffm2 = FFM(1024, 256, 256)
        self.ffm1 = FFM(512, 256, 256)
        self.ffm0 = FFM(256, 256, 256)
        self.outconv = AO(256, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        l1, l2, l3, l4 = features
        x = _up2(self.conv1(self.conv(l4)))  # stride 16
        x = self.ffm2(l3, x)  # stride 8
        x = self.ffm1(l2, x)  # stride 4
        x = self.ffm0(l1, x)  # stride 2
        return self.outconv(x)  # stride 1
