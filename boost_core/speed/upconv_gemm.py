"""Narrow 4x4 stride-2 up-convolutions as one GEMM and an overlap-add (the merge net's last layer, 128 -> 1).

oneDNN runs ``ConvTranspose2d(128, 1, 4, stride=2, padding=1)`` at ~10 GFLOP/s on this project's CPU (82 ms at a
512² input, the merge net's outermost layer): with one output channel its kernels have nothing to vectorise over.
The same numbers come from

    T = W^T X      one GEMM: (16 k, c) x (c, N*H*W); row (kk, r, s) of T is what every input pixel gives to the
                   output pixel at offset (r, s) - 1 from twice its position (kernel tap (r, s), output channel kk)
    Y = sum of taps  output pixel (2i + a, 2j + b) gathers two kernel rows per parity a: (r = 1 from input row i,
                   r = 3 from row i - 1) for a = 0, (r = 2 from row i, r = 0 from row i + 1) for a = 1; columns alike

so each of the four output phases is the sum of four shifted tap planes. Measured (NHWC, 2 threads): 128 -> 1 at
512² 82 -> 26 ms, at 256² 17 -> 7 ms; 128 -> 3 at 512² 88 -> 52 ms. The multiplies are those of the direct layer
(only their order of summation differs: float32 rounding, ~1e-6 of the output range). Wider layers have enough
output channels for oneDNN and stay direct (:data:`MAX_OUT_CHANNELS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layer_swap import swap_layers

MAX_OUT_CHANNELS = 4  # wider up-convolutions vectorise well in oneDNN already
# per output parity: (row offset into the 1-padded tap planes, kernel row) of the two taps that reach it
PARITY_TAPS = {0: ((1, 1), (0, 3)), 1: ((1, 2), (2, 0))}


def qualifies(layer: nn.Module) -> bool:
    """Whether ``layer`` is a ``ConvTranspose2d(c, k <= MAX_OUT_CHANNELS, 4, stride=2, padding=1)``."""
    return (type(layer) is nn.ConvTranspose2d and layer.kernel_size == (4, 4) and layer.stride == (2, 2)
            and layer.padding == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
            and layer.output_padding == (0, 0) and layer.padding_mode == "zeros"
            and layer.out_channels <= MAX_OUT_CHANNELS)


class GemmConvTranspose2d(nn.Module):
    """Drop-in for a qualifying ``ConvTranspose2d`` (inference only): same shapes and numbers (float32 rounding).

    Input (N, c, H, W), any memory format (channels-last avoids a copy); output (N, k, 2H, 2W) with channels-last
    strides.
    """

    def __init__(self, layer: nn.ConvTranspose2d):
        super().__init__()
        if not qualifies(layer):
            raise ValueError(f"not a 4x4 stride-2 padding-1 up-convolution with <= {MAX_OUT_CHANNELS} outputs: {layer}")
        self.layer = layer
        c, k = layer.in_channels, layer.out_channels
        # (c, k, 4, 4) -> (k * 16, c): row kk * 16 + 4 r + s holds tap (r, s) of output channel kk
        self.taps = layer.weight.detach().permute(1, 2, 3, 0).reshape(k * 16, c).contiguous()
        self.bias = None if layer.bias is None else layer.bias.detach().view(k, 1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.layer.in_channels}, {self.layer.out_channels}, GEMM + overlap-add"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = self.layer.out_channels
        pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view when x is channels-last
        planes = torch.mm(self.taps, pixels.t())  # (k * 16, N*H*W): tap planes
        planes = F.pad(planes.view(k * 16, n, h, w), (1, 1, 1, 1)).view(k, 4, 4, n, h + 2, w + 2)
        out = x.new_empty((n, h, 2, w, 2, k))
        for a, rows in PARITY_TAPS.items():
            for b, cols in PARITY_TAPS.items():
                phase = None
                for di, r in rows:
                    for dj, s in cols:
                        tap = planes[:, r, s, :, di:di + h, dj:dj + w]  # (k, n, h, w)
                        phase = tap.clone() if phase is None else phase.add_(tap)
                if self.bias is not None:
                    phase.add_(self.bias)
                out[:, :, a, :, b] = phase.permute(1, 2, 3, 0)
        return out.view(n, 2 * h, 2 * w, k).permute(0, 3, 1, 2)


def replace_layers(model: nn.Module) -> int:
    """Swap every qualifying up-convolution of ``model`` for a :class:`GemmConvTranspose2d`, in place; the count."""
    return swap_layers(model, qualifies, GemmConvTranspose2d)


__all__ = ["GemmConvTranspose2d", "qualifies", "replace_layers"]
