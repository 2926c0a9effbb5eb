"""Bilinear x2 upsampling followed by a 3x3 convolution, computed as one 3x3 convolution at the input's size.

MiDaS v2's head upsamples 128 channels to the full output size (bilinear x2, align_corners=False) and then runs a
3x3 convolution 128 -> 32 there: at a 768² input that writes and reads a 300 MB map and runs a convolution with only
32 output channels (~290 ms, plus 35-200 ms for the upsampling, depending on whether its memory is fresh).

With align_corners=False and an exact factor of 2, the upsampling is a fixed polyphase filter on the edge-replicated
input y: output row 2j = 0.25 y[j-1] + 0.75 y[j], row 2j+1 = 0.75 y[j] + 0.25 y[j+1] (columns alike). So output pixel
(2j + a, 2i + b) of ``conv(upsample(y))`` is a 3x3 filter of y around (j, i) whose taps depend only on the phase (a, b):
K_ab = C_a^T W C_b for each (output, input) channel pair, C_a the 3x3 matrix of the upsampling weights (kernel row
s -> y row offset). One convolution with 4 k output channels at the input's size computes all four phases (the same
multiplies as the original convolution, in a better-shaped GEMM), then the phases are interleaved.

The filter differs from the original only where the original reads outside the map: its zero padding at the
upsampled map's border, and the edge replication of the upsampling (this convolution zero-pads y). Both reach the
two outermost output rows and columns on each side only; those are recomputed exactly by the original operations on
3-pixel strips of y. Composite weights are built in float64; results equal the original up to float32 rounding
(~1e-6 of the output range), and the 4x larger upsampled map is never made. Measured (NHWC, 2 threads, same
process, interleaved, min / median of 8): 128 -> 32 from 384² 305 / 420 -> 272 / 299 ms, from 192² 69 / 83 -> 63 / 69 ms;
MiDaS v2's whole head at 384² (with its 256 -> 128 convolution by Winograd) 848 / 929 -> 745 / 778 ms.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import winograd

# Weight of input row j + d (columns d = -1, 0, 1) in upsampled row 2j + a + s (rows s = -1, 0, 1), per parity a
PHASE_WEIGHTS = {
    0: np.array([[0.75, 0.25, 0.0],  # s = -1: upsampled row 2j - 1 = 0.75 y[j-1] + 0.25 y[j]
                 [0.25, 0.75, 0.0],  # s = 0: row 2j
                 [0.0, 0.75, 0.25]]),  # s = 1: row 2j + 1
    1: np.array([[0.25, 0.75, 0.0],  # s = -1: row 2j
                 [0.0, 0.75, 0.25],  # s = 0: row 2j + 1
                 [0.0, 0.25, 0.75]]),  # s = 1: row 2j + 2
}
BORDER = 2  # output rows / columns per side that the phase filter gets wrong (recomputed from strips)
STRIP = 3  # input rows / columns of a border strip


def is_bilinear_x2(module: nn.Module) -> bool:
    """Whether ``module`` is a bilinear x2 upsampling with align_corners=False (MiDaS v2's ``Interpolate``)."""
    from ..networks.models import midas_v2

    if type(module) is midas_v2.Interpolate:
        return True
    return (type(module) is nn.Upsample and module.mode == "bilinear" and not module.align_corners
            and module.size is None and module.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)))


def qualifies(conv: nn.Module) -> bool:
    """Whether ``conv`` is a dense 3x3 stride-1 padding-1 (zeros) convolution."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


class UpsampledConv2d(nn.Module):
    """``conv(upsample_bilinear_x2(x))`` computed at x's size (inference only); same numbers up to float32 rounding.

    Input (N, c, H, W), any memory format; output (N, k, 2H, 2W), channels-last strides (H, W >= 3; smaller maps go
    through the original operations).
    """

    def __init__(self, conv: nn.Conv2d, winograd_kernels=None):
        super().__init__()
        if not qualifies(conv):
            raise ValueError(f"not a 3x3 stride-1 padding-1 dense convolution: {conv}")
        self.conv = conv
        k, c = conv.out_channels, conv.in_channels
        w = conv.weight.detach().double().cpu()  # (k, c, 3, 3)
        phases = torch.empty(2, 2, k, c, 3, 3, dtype=torch.float64)
        for a in range(2):
            for b in range(2):
                ca, cb = torch.from_numpy(PHASE_WEIGHTS[a]), torch.from_numpy(PHASE_WEIGHTS[b])
                phases[a, b] = ca.t() @ w @ cb  # K_ab[d, e] = sum_s,t C_a[s, d] W[s, t] C_b[t, e]
        phase = nn.Conv2d(c, 4 * k, 3, padding=1, bias=conv.bias is not None, device="meta", dtype=conv.weight.dtype)
        phase.weight = nn.Parameter(phases.reshape(4 * k, c, 3, 3).to(conv.weight.device, conv.weight.dtype)
                                    .contiguous(memory_format=torch.channels_last), requires_grad=False)
        if conv.bias is not None:
            phase.bias = nn.Parameter(conv.bias.detach().repeat(4), requires_grad=False)
        # the phases' convolution c -> 4k: by Winograd F(4x4, 3x3) with compiled transforms where they are given and
        # it qualifies (MiDaS v2: 128 -> 128 at half the output size, 286 -> 192 ms at 384²), directly otherwise
        if winograd_kernels is not None and winograd.qualifies(phase, compiled=True):
            phase = winograd.WinogradConv2d(phase, winograd_kernels)
        self.phase = phase

    def extra_repr(self) -> str:
        return f"{self.conv.in_channels}, {self.conv.out_channels}, bilinear x2 + 3x3 as four phases"

    def _original(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h < STRIP or w < STRIP:
            return self._original(x)
        k = self.conv.out_channels
        phase = self.phase
        algorithm = phase.algorithm(h, w) if isinstance(phase, winograd.WinogradConv2d) else None
        if algorithm is not None and phase.compiled(x):
            out = x.new_empty((n, 2 * h, 2 * w, k))  # each phase (a, b) written straight to pixels (2y + a, 2x + b)

            def place(m: torch.Tensor, top: int, rows: int, cols: int) -> None:
                for a in range(2):
                    for b in range(2):
                        phase.kernels.output_transform(m, rows, cols, out, self.conv.bias, top=2 * top + a, left=b,
                                                       step=2, channel_offset=(2 * a + b) * k, channels=k)

            phase.compiled_bands(x, place, algorithm)
            out = out.permute(0, 3, 1, 2)
        else:
            z = phase(x)  # (n, 4k, h, w): phases (a, b, k)
            z = z.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, k)  # a view when z is channels-last
            out = x.new_empty((n, h, 2, w, 2, k))
            out.copy_(z.permute(0, 1, 3, 2, 4, 5))
            out = out.view(n, 2 * h, 2 * w, k).permute(0, 3, 1, 2)  # (n, k, 2h, 2w), channels-last strides
        out[:, :, :BORDER] = self._original(x[:, :, :STRIP])[:, :, :BORDER]
        out[:, :, -BORDER:] = self._original(x[:, :, -STRIP:])[:, :, -BORDER:]
        out[:, :, :, :BORDER] = self._original(x[:, :, :, :STRIP])[:, :, :, :BORDER]
        out[:, :, :, -BORDER:] = self._original(x[:, :, :, -STRIP:])[:, :, :, -BORDER:]
        return out


def replace_pairs(model: nn.Module, winograd_kernels=None) -> int:
    """In every ``nn.Sequential`` of ``model``, swap (bilinear x2, qualifying Conv2d) for (Identity, UpsampledConv2d);
    returns the count. ``winograd_kernels``: ``native_kernels.WinogradKernels`` for the phases' convolution, or None.
    """
    swapped = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.items())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if is_bilinear_x2(a) and qualifies(b):
                module._modules[name_a] = nn.Identity()
                module._modules[name_b] = UpsampledConv2d(b, winograd_kernels)
                swapped += 1
    return swapped


__all__ = ["UpsampledConv2d", "is_bilinear_x2", "qualifies", "replace_pairs"]
