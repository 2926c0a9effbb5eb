"""MiDaS 3.0 / 3.1 DPT depth models: DPT-Hybrid (R50 + ViT-B/16), DPT-Large (ViT-L/16), DPT BEiT-L/16 512.

Written in-project from the architecture's published facts: the official checkpoints' key layout (MiDaS 3.1,
github.com/isl-org/MiDaS, whose DPTDepthModel wraps timm 0.6.12 backbones), the hooks, readout and
reassembly of ``midas/backbones``, and timm 0.6.12's layer definitions. timm itself is not used (it
imports torchvision, which does not import beside this project's torch).

State-dict (plain, loaded strictly; ``non_negative=True``, readout "project", features 256):

* ``pretrained.model.*``: the backbone with its timm key names, including the unused ImageNet classifier
  ``head`` (and ``fc_norm`` for BEiT), which the official files hold;
* ``pretrained.act_postprocess{1..4}``: ``.0.project.0`` (readout projection, Linear 2C -> C + GELU),
  ``.3`` (1x1 conv), ``.4`` (ConvTranspose x4 / x2, or 3x3 stride-2 conv); DPT-Hybrid has only 3 and 4;
* ``scratch.layer{1..4}_rn``, ``scratch.refinenet{1..4}``, ``scratch.output_conv.{0,2,4}``.

BEiT blocks also hold ``attn.relative_position_index`` (int64, 1025 x 1025): timm 0.6.12 saved it, so the
official file has it; the forward computes the index for the actual window and never reads it.

Forward: (B, 3, H, W) float32, H and W multiples of 32, normalised with mean 0.5, std 0.5 ->
(B, H, W) float32 relative inverse depth (larger = nearer), >= 0, not normalised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.dpt_fusion import FeatureFusionBlock
from ..layers.vit_blocks import Mlp, SelfAttention, attention

PATCH = 16
LAYER_NORM_EPS = 1e-6
FEATURES = 256
HEAD_HIDDEN = 32


@dataclass(frozen=True)
class Variant:
    """One DPT model: backbone kind and size, the 4 hooked blocks, the 4 reassembled channel widths."""

    backbone: str  # "vit", "hybrid" or "beit"
    embed_dim: int
    depth: int
    num_heads: int
    grid: int  # side of the pretraining patch grid (img_size / 16)
    hooks: tuple[int, int, int, int]
    channels: tuple[int, int, int, int]


VARIANTS: dict[str, Variant] = {
    "dpt_hybrid_384": Variant("hybrid", 768, 12, 12, 24, (0, 1, 8, 11), (256, 512, 768, 768)),
    "dpt_large_384": Variant("vit", 1024, 24, 16, 24, (5, 11, 17, 23), (256, 512, 1024, 1024)),
    "dpt_beit_large_512": Variant("beit", 1024, 24, 16, 32, (5, 11, 17, 23), (256, 512, 1024, 1024)),
}


# ------------------------------------------------------------------------------------------ attention
class VitBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x)) (no layer scale)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = SelfAttention(dim, num_heads, scale_first=False)  # timm 0.6.12 ViT: (q k^T) * d**-0.5
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------- ResNet-50 stem of DPT-Hybrid
def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis; the extra pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class StdConv2dSame(nn.Conv2d):
    """Conv without bias, weights standardised per output channel (eps 1e-8), TF "SAME" padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        static = stride == 1 and (kernel - 1) % 2 == 0
        padding = (kernel - 1) // 2 if static else 0
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.dynamic_pad = not static
        self.eps = 1e-8

    def forward(self, x):
        if self.dynamic_pad:
            top, bottom = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            if top or bottom or left or right:
                x = F.pad(x, [left, right, top, bottom])
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                              momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return F.conv2d(x, weight, None, self.stride, self.padding)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm (32 groups, eps 1e-5), then ReLU when ``act``."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(32, channels, eps=1e-5)
        self.act = act

    def forward(self, x):
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.act else x


class Downsample(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv = StdConv2dSame(cin, cout, 1, stride)
        self.norm = GroupNormAct(cout, act=False)

    def forward(self, x):
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Non-pre-activation bottleneck (1x1, 3x3 with the stride, 1x1), ReLU after the residual sum."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        mid = cout // 4
        self.downsample = Downsample(cin, cout, stride) if (stride != 1 or cin != cout) else None
        self.conv1 = StdConv2dSame(cin, mid, 1)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = StdConv2dSame(mid, cout, 1)
        self.norm3 = GroupNormAct(cout, act=False)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.norm1(self.conv1(x))
        y = self.norm2(self.conv2(y))
        y = self.norm3(self.conv3(y))
        return F.relu(y + shortcut)


class Stage(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int, stride: int):
        super().__init__()
        self.blocks = nn.Sequential(*(Bottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                      for i in range(depth)))

    def forward(self, x):
        return self.blocks(x)


class MaxPoolSame(nn.Module):
    """3x3 stride-2 max pooling with TF "SAME" padding by -inf."""

    def forward(self, x):
        top, bottom = _same_padding(x.shape[-2], 3, 2)
        left, right = _same_padding(x.shape[-1], 3, 2)
        x = F.pad(x, [left, right, top, bottom], value=-float("inf"))
        return F.max_pool2d(x, 3, 2)


class ResNetV2Backbone(nn.Module):
    """BiT-style ResNet-50 stem + 3 stages (3, 4, 9 blocks; 256, 512, 1024 channels; strides 4, 8, 16)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", StdConv2dSame(3, 64, 7, 2))
        self.stem.add_module("norm", GroupNormAct(64))
        self.stem.add_module("pool", MaxPoolSame())
        self.stages = nn.Sequential(Stage(64, 256, 3, 1), Stage(256, 512, 4, 2), Stage(512, 1024, 9, 2))

    def forward(self, x) -> list[torch.Tensor]:
        """Outputs of the 3 stages."""
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class HybridEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.backbone = ResNetV2Backbone()
        self.proj = nn.Conv2d(1024, embed_dim, kernel_size=1)


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=PATCH, stride=PATCH)


class VisionTransformer(nn.Module):
    """timm ViT (patch 16 or R50 hybrid) with MiDaS's forward_flex (bilinear-resized pos_embed)."""

    def __init__(self, v: Variant):
        super().__init__()
        dim = v.embed_dim
        self.grid = v.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + v.grid * v.grid, dim))
        self.patch_embed = HybridEmbed(dim) if v.backbone == "hybrid" else PatchEmbed(dim)
        self.blocks = nn.ModuleList(VitBlock(dim, v.num_heads) for _ in range(v.depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)  # final norm: its output is not used by DPT
        self.head = nn.Linear(dim, 1000)  # ImageNet classifier: unused, in the official file

    def resized_pos_embed(self, ph: int, pw: int) -> torch.Tensor:
        """(1, 1 + ph*pw, C): the grid part resized bilinearly (align_corners=False) to (ph, pw), always."""
        table = self.pos_embed
        grid = table[0, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(ph, pw), mode="bilinear", align_corners=False)
        return torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, ph * pw, -1)], dim=1)

    def forward_layers(self, x, hooks) -> dict:
        """Block outputs (B, 1 + ph*pw, C) for the hooked indices; for the hybrid also "stage0"/"stage1"."""
        height, width = x.shape[-2:]
        ph, pw = height // PATCH, width // PATCH
        found = {}
        if isinstance(self.patch_embed, HybridEmbed):
            stages = self.patch_embed.backbone(x)
            found["stage0"], found["stage1"] = stages[0], stages[1]
            features = stages[-1]
        else:
            features = x
        t = self.patch_embed.proj(features).flatten(2).transpose(1, 2)
        t = torch.cat((self.cls_token.expand(t.shape[0], -1, -1), t), dim=1) + self.resized_pos_embed(ph, pw)
        for index, block in enumerate(self.blocks[:max(hooks) + 1]):
            t = block(t)
            if index in hooks:
                found[index] = t
        return found


# ------------------------------------------------------------------------------------------------ BEiT
def _relative_index(ph: int, pw: int, rows: torch.Tensor, device=None) -> torch.Tensor:
    """BEiT relative-position index for query tokens ``rows`` (0 = class token) x all keys: (len(rows), N).

    For patch tokens at (hi, wi), (hj, wj): (hi - hj + ph - 1) * (2pw - 1) + (wi - wj + pw - 1); the class
    token uses the 3 extra entries: query cls -> n, key cls -> n + 1, cls-cls -> n + 2, n = (2ph-1)(2pw-1).
    """
    n = (2 * ph - 1) * (2 * pw - 1)
    keys = torch.arange(ph * pw, device=device)
    kh, kw = keys // pw, keys % pw
    q = rows - 1
    qh, qw = (q // pw)[:, None], (q % pw)[:, None]
    index = (qh - kh + ph - 1) * (2 * pw - 1) + (qw - kw + pw - 1)
    index = torch.where((rows == 0)[:, None], torch.full_like(index, n), index)
    cls_key = torch.where(rows == 0, n + 2, n + 1)[:, None]
    return torch.cat([cls_key, index], dim=1)


def gen_relative_position_index(ph: int, pw: int) -> torch.Tensor:
    """The full (1 + ph*pw)^2 index, as timm builds it (only for the checkpoint's buffer)."""
    return _relative_index(ph, pw, torch.arange(1 + ph * pw))


class BeitAttention(nn.Module):
    """BEiT attention with per-head relative position bias, resized to any window (MiDaS 3.1's rule)."""

    def __init__(self, dim: int, num_heads: int, grid: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.grid = grid
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, num_heads))
        self.register_buffer("relative_position_index", gen_relative_position_index(grid, grid))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def resized_table(self, ph: int, pw: int) -> torch.Tensor:
        """((2ph-1)(2pw-1) + 3, heads): the (2g-1)^2 part resized bilinearly (align_corners=False), always."""
        side = 2 * self.grid - 1
        table = self.relative_position_bias_table
        grid = table[:-3].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(2 * ph - 1, 2 * pw - 1), mode="bilinear", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape((2 * ph - 1) * (2 * pw - 1), -1)
        return torch.cat([grid, table[-3:]])

    def forward(self, x, ph: int, pw: int):
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv
        table = self.resized_table(ph, pw)

        def bias_rows(start, stop):
            index = _relative_index(ph, pw, torch.arange(start, stop, device=x.device), device=x.device)
            return table[index].permute(2, 0, 1)

        out = attention(q, k, v, self.scale, scale_first=True, bias_rows=bias_rows)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class BeitBlock(nn.Module):
    """x + gamma_1 * attn(norm1(x)), then x + gamma_2 * mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, grid: int):
        super().__init__()
        self.gamma_1 = nn.Parameter(torch.ones(dim))
        self.gamma_2 = nn.Parameter(torch.ones(dim))
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = BeitAttention(dim, num_heads, grid)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x, ph: int, pw: int):
        x = x + self.gamma_1 * self.attn(self.norm1(x), ph, pw)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class Beit(nn.Module):
    """timm BEiT-L/16 (no absolute pos_embed, relative position bias per block)."""

    def __init__(self, v: Variant):
        super().__init__()
        dim = v.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.ModuleList(BeitBlock(dim, v.num_heads, v.grid) for _ in range(v.depth))
        self.fc_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)  # classifier pooling norm: unused
        self.head = nn.Linear(dim, 1000)  # ImageNet classifier: unused, in the official file

    def forward_layers(self, x, hooks) -> dict:
        ph, pw = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat((self.cls_token.expand(t.shape[0], -1, -1), t), dim=1)
        found = {}
        for index, block in enumerate(self.blocks[:max(hooks) + 1]):
            t = block(t, ph, pw)
            if index in hooks:
                found[index] = t
        return found


# ------------------------------------------------------------------------------------- reassembly, DPT
class ProjectReadout(nn.Module):
    """Patch tokens concatenated with the class token, projected back: Linear(2C, C) + GELU."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens):
        patches = tokens[:, 1:]
        return self.project(torch.cat((patches, tokens[:, :1].expand_as(patches)), -1))


def _postprocess(dim: int, channels: int, resample: nn.Module | None) -> nn.Sequential:
    """[readout, (transpose), (unflatten), 1x1 conv, resample]: indices 1 and 2 hold no weights."""
    layers = [ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, channels, 1)]
    return nn.Sequential(*layers, *([resample] if resample is not None else []))


class Encoder(nn.Module):
    """``pretrained``: the backbone (``model``) and the reassembly of its 4 hooked layers."""

    def __init__(self, v: Variant):
        super().__init__()
        self.variant = v
        self.model = Beit(v) if v.backbone == "beit" else VisionTransformer(v)
        c1, c2, c3, c4 = v.channels
        dim = v.embed_dim
        if v.backbone != "hybrid":
            self.act_postprocess1 = _postprocess(dim, c1, nn.ConvTranspose2d(c1, c1, kernel_size=4, stride=4))
            self.act_postprocess2 = _postprocess(dim, c2, nn.ConvTranspose2d(c2, c2, kernel_size=2, stride=2))
        self.act_postprocess3 = _postprocess(dim, c3, None)
        self.act_postprocess4 = _postprocess(dim, c4, nn.Conv2d(c4, c4, kernel_size=3, stride=2, padding=1))

    def forward(self, x) -> list[torch.Tensor]:
        """4 feature maps at 1/4, 1/8, 1/16, 1/32 of the input, channels ``variant.channels``."""
        ph, pw = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        hooks = self.variant.hooks
        hybrid = self.variant.backbone == "hybrid"
        found = self.model.forward_layers(x, hooks[2:] if hybrid else hooks)
        maps = [found["stage0"], found["stage1"]] if hybrid else []
        for i in range(len(maps), 4):
            post = getattr(self, f"act_postprocess{i + 1}")
            tokens = post[0](found[hooks[i]])
            grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], ph, pw)
            maps.append(post[3:](grid))
        return maps


class Upsample2x(nn.Module):
    """Bilinear x2, align_corners=True."""

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class DPTDepthModel(nn.Module):
    """``pretrained`` (encoder + reassembly) and ``scratch`` (DPT fusion and head)."""

    def __init__(self, v: Variant):
        super().__init__()
        self.pretrained = Encoder(v)
        scratch = nn.Module()
        for i, c in enumerate(v.channels, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, FEATURES, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(scratch, f"refinenet{i}", FeatureFusionBlock(FEATURES))
        scratch.output_conv = nn.Sequential(
            nn.Conv2d(FEATURES, FEATURES // 2, 3, padding=1),
            Upsample2x(),
            nn.Conv2d(FEATURES // 2, HEAD_HIDDEN, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(HEAD_HIDDEN, 1, 1),
            nn.ReLU(),  # non_negative
        )
        self.scratch = scratch

    def forward(self, x):
        """(B, 3, H, W), H and W multiples of 32 -> (B, H, W) relative inverse depth >= 0."""
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(m) for i, m in enumerate(self.pretrained(x), start=1))
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        return s.output_conv(path).squeeze(1)


def build(variant: str) -> DPTDepthModel:
    """Architecture only (random init) of "dpt_hybrid_384", "dpt_large_384" or "dpt_beit_large_512"."""
    try:
        spec = VARIANTS[variant]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ValueError(f"unknown MiDaS DPT variant {variant!r}; known: {known}") from None
    return DPTDepthModel(spec)
