"""LeReS depth model (``RelDepthModel(backbone='resnext101')``): ResNeXt-101 32x8d encoder + fusion decoder.

State_dict layout of the official ``res101.pth`` entry ``depth_model`` (712 entries, SPEC §10c):
``depth_model.encoder_modules.encoder.*`` (torchvision-style ResNeXt, no avgpool/fc) and
``depth_model.decoder_modules.{conv,conv1,ffm2,ffm1,ffm0,outconv}.*``.

Forward: (N, 3, H, W) float32, ImageNet-normalised, channels in **BGR** order as the reference feeds
them (SPEC §2b), H and W multiples of 32 -> (N, 1, H, W) float32 raw **depth** (no activation: any sign).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.fusion_decoder import Decoder
from ..layers.resnext import resnext101_32x8d


class _Encoder(nn.Module):
    """``encoder_modules``: holds the backbone as ``encoder`` and returns its four stage outputs."""

    def __init__(self):
        super().__init__()
        self.encoder = resnext101_32x8d()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(x)


class DepthModel(nn.Module):
    """``depth_model``: ``encoder_modules`` then ``decoder_modules``."""

    def __init__(self):
        super().__init__()
        self.encoder_modules = _Encoder()
        self.decoder_modules = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder_modules(self.encoder_modules(x))


class RelDepthModel(nn.Module):
    """The LeReS model as saved: only ``depth_model``; forward = ``depth_model`` (as run.py calls it)."""

    def __init__(self):
        super().__init__()
        self.depth_model = DepthModel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.depth_model(x)


def build() -> RelDepthModel:
    """LeReS ResNeXt-101 architecture with untrained weights (load a checkpoint into it)."""
    return RelDepthModel()
