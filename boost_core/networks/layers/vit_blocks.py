"""Vision-transformer pieces shared by DINOv2 (Depth Anything V2's encoder) and the MiDaS 3.x DPT encoders.

``attention`` is multi-head self-attention's core over (B, heads, N, d) tensors, computed in chunks of query rows
when the (B, heads, N, N) attention matrix would exceed ``ATTENTION_CHUNK_ELEMENTS`` (each row's softmax is
independent of the others, so chunking leaves the result unchanged); ``SelfAttention`` the module around it (qkv and proj); ``Mlp`` the blocks' feed-forward part.
"""

from __future__ import annotations

import torch
from torch import nn

#: elements of one attention-matrix chunk (float32: 256 MiB); bounds memory at large inputs
ATTENTION_CHUNK_ELEMENTS = 64 * 1024 * 1024


def attention(q, k, v, scale: float, scale_first: bool, bias_rows=None) -> torch.Tensor:
    """softmax(q k^T * scale [+ bias]) v over (B, heads, N, d) -> (B, heads, N, d), in chunks of query rows.

    scale_first: q is scaled before the product (DINOv2, BEiT) instead of the product after it (timm ViT); the
        two differ in float32 rounding only, and each network is computed in its reference's order.
    bias_rows(start, stop) -> (heads, stop - start, N) additive bias for those query rows, or None.
    """
    batch, heads, tokens, _ = q.shape
    kt = k.transpose(-2, -1)
    if scale_first:
        q = q * scale
    rows = max(1, ATTENTION_CHUNK_ELEMENTS // (batch * heads * tokens))
    out = []
    for start in range(0, tokens, rows):
        stop = min(tokens, start + rows)
        logits = q[:, :, start:stop] @ kt
        if not scale_first:
            logits = logits * scale
        if bias_rows is not None:
            logits = logits + bias_rows(start, stop).unsqueeze(0)
        out.append(logits.softmax(dim=-1) @ v)
    return out[0] if len(out) == 1 else torch.cat(out, dim=2)


class SelfAttention(nn.Module):
    """Multi-head self-attention over (B, N, dim) tokens with a bias-carrying ``qkv`` and ``proj`` (the parameter
    names of timm's ViT and DINOv2); ``scale_first`` as in :func:`attention`."""

    def __init__(self, dim: int, num_heads: int, scale_first: bool):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.scale_first = scale_first
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, self.scale, scale_first=self.scale_first)  # (B, heads, N, d)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2, on (..., dim) tokens."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


__all__ = ["ATTENTION_CHUNK_ELEMENTS", "Mlp", "SelfAttention", "attention"]
