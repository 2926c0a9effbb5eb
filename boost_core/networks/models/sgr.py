"""SGR (Structure-Guided Ranking loss) ``DepthNet``: ResNet-50 encoder + fusion decoder (SPEC part two §D).

State_dict layout of the official ``model.pth.tar`` entry ``state_dict`` (406 entries): every key is
``module.encoder.*`` or ``module.decoder.*`` (the model was saved inside DataParallel); after the
``module.`` prefix is stripped they are this module's ``encoder.*`` / ``decoder.*``. The reference's
synchronised BatchNorm is plain ``nn.BatchNorm2d`` in eval mode (same names, same arithmetic; §D.4).

Forward: (N, 3, H, W) float32, ImageNet-normalised RGB, H and W multiples of 32 ->
(N, 1, H, W) float32 raw relative inverse depth (no activation: any sign).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.fusion_decoder import Decoder
from ..layers.resnext import resnet50


class DepthNet(nn.Module):
    """``encoder`` (ResNet-50, torchvision layout, no avgpool/fc) then ``decoder``."""

    def __init__(self):
        super().__init__()
        self.encoder = resnet50()
        self.decoder = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def build() -> DepthNet:
    """SGR DepthNet architecture with untrained weights (load a checkpoint into it)."""
    return DepthNet()
