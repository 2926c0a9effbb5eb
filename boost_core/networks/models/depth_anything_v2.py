"""Depth Anything V2 (Small / Base / Large): a DINOv2 ViT/14 encoder and a DPT head.

Written in-project from the official checkpoints' key layout and the architecture's published facts
(github.com/DepthAnything/Depth-Anything-V2, commit a561b84): use_bn=False, use_clstoken=False.

State-dict (plain, loaded strictly): ``pretrained.*`` (the encoder, see ``dinov2``) and ``depth_head.*``:
``projects.{0..3}`` (1x1 convs), ``resize_layers.{0,1,3}`` (index 2 is an identity and has no keys),
``scratch.layer{1..4}_rn`` (3x3, no bias), ``scratch.refinenet{1..4}.{out_conv, resConfUnit{1,2}.conv{1,2}}``,
``scratch.output_conv1``, ``scratch.output_conv2.{0,2}``. No buffers.

Forward: (1, 3, H, W) float32 ImageNet-normalised RGB, H and W multiples of 14 -> (1, H, W) float32
relative inverse depth (affine-invariant disparity, larger = nearer), >= 0, not normalised.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import dinov2
from ..layers.dpt_fusion import FeatureFusionBlock


@dataclass(frozen=True)
class Variant:
    """One model size: encoder name, DPT feature width and the channels of the 4 projected encoder layers."""

    encoder: str
    features: int
    out_channels: tuple[int, int, int, int]


VARIANTS: dict[str, Variant] = {
    "small": Variant("vits", 64, (48, 96, 192, 384)),
    "base": Variant("vitb", 128, (96, 192, 384, 768)),
    "large": Variant("vitl", 256, (256, 512, 1024, 1024)),
}

#: hidden width of the last two output convolutions
HEAD_HIDDEN = 32


class DPTHead(nn.Module):
    """Reassembles 4 encoder layers at 4x, 2x, 1x, 1/2x the patch grid and fuses them into a depth map."""

    def __init__(self, embed_dim: int, features: int, out_channels: tuple[int, int, int, int]):
        super().__init__()
        c1, c2, c3, c4 = out_channels
        self.projects = nn.ModuleList(nn.Conv2d(embed_dim, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c1, c1, kernel_size=4, stride=4),  # x4
            nn.ConvTranspose2d(c2, c2, kernel_size=2, stride=2),  # x2
            nn.Identity(),  # x1
            nn.Conv2d(c4, c4, kernel_size=3, stride=2, padding=1),  # /2
        ])
        scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(scratch, f"refinenet{i}", FeatureFusionBlock(features))
        scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, HEAD_HIDDEN, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(HEAD_HIDDEN, 1, 1),
            nn.ReLU(),
        )
        self.scratch = scratch

    def forward(self, layers: list[tuple[torch.Tensor, torch.Tensor]], ph: int, pw: int) -> torch.Tensor:
        """layers: 4 x (patch tokens (B, ph*pw, C), class token) -> (B, 1, 14*ph, 14*pw)."""
        maps = []
        for i, (tokens, _cls) in enumerate(layers):
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], ph, pw)
            maps.append(self.resize_layers[i](self.projects[i](x)))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(m) for i, m in enumerate(maps, start=1))
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        out = s.output_conv1(path)
        out = F.interpolate(out, size=(ph * dinov2.PATCH_SIZE, pw * dinov2.PATCH_SIZE), mode="bilinear",
                            align_corners=True)
        return s.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """The depth model: ``pretrained`` (DINOv2 encoder) + ``depth_head`` (DPT)."""

    def __init__(self, variant: Variant):
        super().__init__()
        self.variant = variant
        self.pretrained = dinov2.build(variant.encoder)
        self.depth_head = DPTHead(self.pretrained.config.embed_dim, variant.features, variant.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W), H and W multiples of 14 -> (B, H, W) relative inverse depth >= 0."""
        ph, pw = x.shape[-2] // dinov2.PATCH_SIZE, x.shape[-1] // dinov2.PATCH_SIZE
        layers = self.pretrained.get_intermediate_layers(x)
        return F.relu(self.depth_head(layers, ph, pw)).squeeze(1)


def build(variant: str = "small") -> DepthAnythingV2:
    """Architecture only (random init) of Depth Anything V2 ``variant`` in {"small", "base", "large"}."""
    try:
        spec = VARIANTS[variant]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ValueError(f"unknown Depth Anything V2 variant {variant!r}; known: {known}") from None
    return DepthAnythingV2(spec)
