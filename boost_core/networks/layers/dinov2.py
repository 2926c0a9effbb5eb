"""DINOv2 vision transformers (ViT-S/14, ViT-B/14, ViT-L/14), as the encoder of Depth Anything V2.

Written in-project from the architecture's published facts (parameter names and shapes of the official
Depth Anything V2 checkpoints, the pos-embed interpolation rule, the layer indices the DPT head reads).
timm is not used: it imports torchvision at module level (timm/layers/create_norm.py, norm_act.py), and no
torchvision build imports beside this project's torch.

State-dict keys (under the ``pretrained.`` prefix of the depth model): ``cls_token`` (1, 1, C),
``pos_embed`` (1, 1 + 37*37, C), ``mask_token`` (1, C) (unused at inference, kept for strict loading),
``patch_embed.proj.{weight,bias}``, ``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1,
mlp.fc2, ls2.gamma}``, ``norm``. No buffers.

Shapes: the input is (B, 3, H, W) float32 with H and W multiples of 14; tokens are (B, 1 + ph*pw, C),
(ph, pw) = (H // 14, W // 14), the class token first.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vit_blocks import Mlp, SelfAttention

PATCH_SIZE = 14
#: side of the pretraining patch grid the pos_embed was learnt for (518 px / 14)
POS_GRID = 37
#: added to the target grid size before computing the interpolation scale factor (DINOv2's rule)
INTERPOLATE_OFFSET = 0.1
LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class ViTConfig:
    """Size of a DINOv2 ViT: embedding width, number of blocks and heads, and the 4 blocks read by DPT."""

    embed_dim: int
    depth: int
    num_heads: int
    intermediate_layers: tuple[int, int, int, int]
    mlp_ratio: int = 4


CONFIGS: dict[str, ViTConfig] = {
    "vits": ViTConfig(embed_dim=384, depth=12, num_heads=6, intermediate_layers=(2, 5, 8, 11)),
    "vitb": ViTConfig(embed_dim=768, depth=12, num_heads=12, intermediate_layers=(2, 5, 8, 11)),
    "vitl": ViTConfig(embed_dim=1024, depth=24, num_heads=16, intermediate_layers=(4, 11, 17, 23)),
}


class PatchEmbed(nn.Module):
    """14x14 stride-14 convolution: (B, 3, H, W) -> (B, (H/14)*(W/14), C) tokens, row-major over the grid."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % PATCH_SIZE or width % PATCH_SIZE:
            raise ValueError(f"DINOv2 input {height}x{width} is not a multiple of the {PATCH_SIZE}-px patch")
        return self.proj(x).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    """Per-channel scale ``x * gamma``."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(dim, num_heads, scale_first=True)  # DINOv2: q scaled before the product
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT/14 with a class token, no register tokens, learnt 37x37 pos_embed (img_size 518)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        dim = config.embed_dim
        self.config = config
        # parameter creation order = the official state_dict key order
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + POS_GRID * POS_GRID, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # masked pretraining only; unused here
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def interpolated_pos_embed(self, height: int, width: int, tokens: int) -> torch.Tensor:
        """pos_embed for an input of ``height`` x ``width`` px: (1, 1 + ph*pw, C), in float32.

        The 37x37 patch part is resized bicubically (align_corners=False, no antialias) with
        ``scale_factor = ((ph + 0.1) / 37, (pw + 0.1) / 37)``: the output is (ph, pw) and the source
        coordinates follow from the scale factor, not from the sizes. A square 518x518 input uses the
        table as it is.
        """
        table = self.pos_embed
        if tokens - 1 == POS_GRID * POS_GRID and height == width:
            return table
        dim = table.shape[-1]
        ph, pw = height // PATCH_SIZE, width // PATCH_SIZE
        grid = table[:, 1:].float().reshape(1, POS_GRID, POS_GRID, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid,
            scale_factor=((ph + INTERPOLATE_OFFSET) / POS_GRID, (pw + INTERPOLATE_OFFSET) / POS_GRID),
            mode="bicubic",
            align_corners=False,
            antialias=False,
        )
        if tuple(grid.shape[-2:]) != (ph, pw):  # cannot happen for the 0.1 offset; guards a future change
            raise RuntimeError(f"pos_embed interpolated to {tuple(grid.shape[-2:])}, expected {(ph, pw)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, ph * pw, dim)
        return torch.cat((table[:, :1].float(), grid), dim=1).to(table.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> (B, 1 + ph*pw, C) tokens with position embedding added."""
        height, width = x.shape[-2:]
        patches = self.patch_embed(x)
        t = torch.cat((self.cls_token.expand(patches.shape[0], -1, -1), patches), dim=1)
        return t + self.interpolated_pos_embed(height, width, t.shape[1])

    def get_intermediate_layers(self, x: torch.Tensor,
                                layers=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Outputs of the blocks ``layers`` (0-based; default the config's 4), each through the final norm.

        Returns, per layer, (patch tokens (B, ph*pw, C), class token (B, C)).
        """
        layers = tuple(self.config.intermediate_layers if layers is None else layers)
        t = self.tokens(x)
        out = []
        for index, block in enumerate(self.blocks[:max(layers) + 1]):
            t = block(t)
            if index in layers:
                normed = self.norm(t)
                out.append((normed[:, 1:], normed[:, 0]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final normed tokens (B, 1 + ph*pw, C)."""
        t = self.tokens(x)
        for block in self.blocks:
            t = block(t)
        return self.norm(t)


def build(variant: str) -> DinoVisionTransformer:
    """DINOv2 encoder ``variant`` in {"vits", "vitb", "vitl"}."""
    try:
        config = CONFIGS[variant]
    except KeyError:
        raise ValueError(f"unknown DINOv2 variant {variant!r}; known: {', '.join(CONFIGS)}") from None
    return DinoVisionTransformer(config)

