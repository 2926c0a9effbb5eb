"""The merge net's 4x4 stride-2 convolutions and up-convolutions by Winograd's minimal filtering F(4x4, 2x2).

The pix2pix merge net spends ~95% of a forward in 4x4 stride-2 convolutions (encoder) and 4x4 stride-2 transposed
convolutions (decoder), which oneDNN runs at about this CPU's GEMM peak. Both are 2x2 stride-1 convolutions in
disguise (polyphase decomposition), and a 2x2 convolution has a Winograd form with 25 multiplies per 4x4 output
tile instead of 64:

* ``Conv2d(c, k, 4, stride=2, padding=1)``: pad by 1, space-to-depth by 2 (``pixel_unshuffle``: 4c channels,
  ordered (c, row parity, column parity)), then a 'valid' 2x2 convolution 4c -> k. Input tap (2s + p) of the 4x4
  kernel is tap s of the 2x2 kernel on the parity-p channels.
* ``ConvTranspose2d(c, k, 4, stride=2, padding=1)``: output pixel (2i + a, 2j + b) only sees input rows {i - 1, i}
  (a = 0: kernel rows 3, 1) or {i, i + 1} (a = 1: kernel rows 2, 0), and the same for columns. So one 'valid' 2x2
  convolution c -> 4k of the input padded by 1 computes all four output phases (a, b); phase (a, b) of output
  pixel (i, j) is its value at (i + a, j + b). Kernel tap s of phase a is 4x4 tap 3 - a - 2s.

The 2x2 convolution is then ``Y = A^T [(G g G^T) * (B^T d B)] A`` on 5x5 input tiles (stride 4), with the Toom-Cook
matrices of the points 0, 1, -1, 1/2 and infinity: the transformed weights are built once in float64, the
transforms are two small GEMMs with kron(B^T, B^T) and kron(A^T, A^T), the 25 products one batched GEMM (same
layout as ``boost_core.speed.winograd``, F(4x4, 3x3)). Rounding: ~5e-6 of a layer's output range vs ~2e-6 direct
(float64 reference). F(6x6, 2x2) was measured as fast but 4x less accurate.

Measured on this project's CPU (NHWC, 2 threads, oneDNN direct -> here), the merge net's layers at 1024² input:
encoder 256->512 at 128² 130 -> 73 ms, 512->512 at 64² 72 -> 41 ms; decoder 1024->256 at 64² 252 -> 137 ms,
512->128 at 128² 256 -> 155 ms, 1024->512 at 32² 123 -> 91 ms. Fewer channels or smaller maps lose (64->128 at 512²:
114 -> 172 ms; 1024->512 at 16²: 34 -> 38 ms), hence the channel floors and :meth:`uses_winograd`, which keeps the
direct layer for the maps too small to gain.

With the compiled transforms (``boost_core.speed.kernels.compiled``) nothing is copied around the products: the stride-2
convolution's input transform reads the four polyphase components of the padded input straight from the map (weights
ordered (p_y, p_x, c) instead of pixel_unshuffle's (c, p_y, p_x)), the up-convolution's reads the unpadded input,
and its output transform writes each phase (a, b) straight to output pixels (2Y - a, 2X - b); the channel floors are
lower (COMPILED_MIN_IN_CHANNELS_*). Merge net at 1024²: 1.20 -> 1.02 s (median of 8, interleaved, vs the torch form).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layer_swap import swap_layers
from .winograd import convolve_tiles, tile_row_bands, transformed_weights

TILE = 4  # output tile side (m)
ALPHA = TILE + 1  # input tile side (m + r - 1)
MIN_TILES = 64  # 4x4 output tiles of the 2x2 convolution a map needs (32² output pixels)
MIN_IN_CHANNELS_DOWN = 256  # a stride-2 convolution needs >= this many input channels (4x as many after unshuffle)
MIN_IN_CHANNELS_UP = 512  # an up-convolution needs >= this many input channels
BAND_BYTES = 64 * 2**20  # bytes of one transformed band (V or M)
# with the compiled transforms (boost_core.speed.kernels.compiled) narrower layers gain too: 128->256 at 256² 116 -> 82 ms,
# up 256->64 at 256² 232 -> 174 ms (64->128 at 512² still loses: 114 -> 133 ms; small maps as before)
COMPILED_MIN_IN_CHANNELS_DOWN = 128
COMPILED_MIN_IN_CHANNELS_UP = 256

# Toom-Cook F(4, 2) for the points 0, 1, -1, 1/2, infinity
B_T = np.array([[0.5, -1, -0.5, 1, 0],
                [0, -0.5, 0.5, 1, 0],
                [0, 0.5, -1.5, 1, 0],
                [0, -1, 0, 1, 0],
                [0, 0.5, -1, -0.5, 1]], dtype=np.float64)
G = np.array([[2, 0],
              [1, 1],
              [-1 / 3, 1 / 3],
              [-8 / 3, -4 / 3],
              [0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 1, 0],
                [0, 1, -1, 0.5, 0],
                [0, 1, 1, 0.25, 0],
                [0, 1, -1, 0.125, 1]], dtype=np.float64)


def _qualifies(layer: nn.Module, kind: type) -> bool:
    return (type(layer) is kind and layer.kernel_size == (4, 4) and layer.stride == (2, 2)
            and layer.padding == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1
            and layer.padding_mode == "zeros" and getattr(layer, "output_padding", (0, 0)) == (0, 0))


def qualifies(layer: nn.Module, compiled: bool = False) -> bool:
    """Whether ``layer`` is a 4x4 stride-2 padding-1 (transposed) convolution wide enough to gain here.

    ``compiled``: with the compiled transforms, whose channel floors are lower.
    """
    if _qualifies(layer, nn.Conv2d):
        return layer.in_channels >= (COMPILED_MIN_IN_CHANNELS_DOWN if compiled else MIN_IN_CHANNELS_DOWN)
    if _qualifies(layer, nn.ConvTranspose2d):
        return layer.in_channels >= (COMPILED_MIN_IN_CHANNELS_UP if compiled else MIN_IN_CHANNELS_UP)
    return False


class _Valid2x2:
    """A 'valid' 2x2 convolution by F(4x4, 2x2), weights transformed once. Weight: (k, c, 2, 2); bias: (k,) or None."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, kernels=None):
        self.in_channels, self.out_channels = weight.shape[1], weight.shape[0]
        self.kernels = kernels  # native_kernels.WinogradKernels for the transforms, None: torch operations
        # u (25, c, k), kron(B^T, B^T) (25, 25), kron(A^T, A^T) (16, 25); the bias is added while placing the tiles
        self.u, self.b_kron, self.a_kron = transformed_weights(weight, G, B_T, A_T)
        if kernels is not None:
            self.u = kernels.gemm_layout(self.u)  # k-major, for the compiled path's multiply
        self.bias = None if bias is None else bias.detach()

    def __call__(self, nhwc: torch.Tensor) -> torch.Tensor:
        """(n, H, W, c) contiguous -> (n, H - 1, W - 1, k) contiguous."""
        n, h, w, c = nhwc.shape
        k = self.out_channels
        out_h, out_w = h - 1, w - 1
        tiles_h, tiles_w = -(-out_h // TILE), -(-out_w // TILE)
        out = nhwc.new_empty((n, out_h, out_w, k))
        per_row = n * tiles_w * ALPHA * ALPHA * max(c, k) * nhwc.element_size()
        for first, rows in tile_row_bands(tiles_h, per_row, BAND_BYTES):
            top = first * TILE
            slab = nhwc.new_empty((n, rows * TILE + 1, tiles_w * TILE + 1, c))
            bottom_in = min(top + rows * TILE + 1, h)
            slab[:, bottom_in - top:].zero_()  # tail tiles past the last row / column read zeros
            slab[:, :, w:].zero_()
            slab[:, :bottom_in - top, :w] = nhwc[:, top:bottom_in]
            convolve_tiles(slab, TILE, self.u, self.b_kron, self.a_kron, out[:, top:top + rows * TILE], self.bias)
        return out

    def compiled_bands(self, like: torch.Tensor, n: int, out_h: int, out_w: int, fill, place) -> None:
        """The 'valid' 2x2 convolution with the compiled transforms, band by band of tile rows, for ``out_h`` x
        ``out_w`` outputs per image: ``fill(v, first, rows, cols)`` writes the band's input transform into V
        (25, P, c), ``place(m, first, rows, cols)`` writes its outputs from M (25, P, k). The callers read their
        input and write their output in place (no padded, unshuffled or phase-interleaved copies)."""
        kernels, c, k = self.kernels, self.in_channels, self.out_channels
        tiles_h, tiles_w = -(-out_h // TILE), -(-out_w // TILE)
        per_row = n * tiles_w * ALPHA * ALPHA * max(c, k) * like.element_size()
        for first, rows in tile_row_bands(tiles_h, per_row, BAND_BYTES):
            v = kernels.transformed_buffer(ALPHA, n * rows * tiles_w, c, like)
            fill(v, first, rows, tiles_w)
            m = kernels.multiply(v, self.u)
            del v
            place(m, first, rows, tiles_w)


class _Stride2Layer(nn.Module):
    """A qualifying layer (``self.layer``) computed by F(4x4, 2x2) where :meth:`uses_winograd`, directly elsewhere."""

    kind: type = nn.Module
    description = ""

    def __init__(self, layer: nn.Module, kernels=None):
        super().__init__()
        if type(layer) is not self.kind or not qualifies(layer, compiled=kernels is not None):
            raise ValueError(f"not a {self.description} wide enough for Winograd (>= {MIN_IN_CHANNELS_DOWN} input "
                             f"channels for a convolution, >= {MIN_IN_CHANNELS_UP} for an up-convolution): {layer}")
        self.layer = layer
        self.kernels = kernels  # native_kernels.WinogradKernels for the transforms, None: torch operations
        self._valid: _Valid2x2 | None = None  # built at the first call that uses it

    def uses_winograd(self, height: int, width: int) -> bool:
        raise NotImplementedError

    def _compiled(self) -> bool:
        """Whether the compiled transforms compute this layer: given, and float32 weights."""
        return self.kernels is not None and self.layer.weight.dtype == torch.float32

    def _transformed(self) -> _Valid2x2:
        raise NotImplementedError

    def _winograd(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_winograd(x.shape[-2], x.shape[-1]):
            return self.layer(x)
        if self._valid is None:
            self._valid = self._transformed()
        return self._winograd(x)


class WinogradStride2Conv2d(_Stride2Layer):
    """Drop-in for ``Conv2d(c, k, 4, stride=2, padding=1)`` (inference only): same shapes and numbers.

    Input (N, c, H, W), any memory format; output (N, k, H // 2, W // 2), channels-last strides when computed here,
    the direct layer's layout otherwise (odd sizes, maps too small to gain).
    """

    kind, description = nn.Conv2d, "4x4 stride-2 padding-1 convolution"

    def uses_winograd(self, height: int, width: int) -> bool:
        """Whether an (height, width) input goes through F(4x4, 2x2): even sizes, >= MIN_TILES output tiles."""
        return height % 2 == 0 and width % 2 == 0 and -(-height // (2 * TILE)) * -(-width // (2 * TILE)) >= MIN_TILES

    def _transformed(self) -> _Valid2x2:
        weight = self.layer.weight  # (k, c, 4, 4) -> (k, 4c, 2, 2): tap 2s + p -> tap s of channel 4c' + 2py + px
        k, c = weight.shape[:2]
        weight = weight.view(k, c, 2, 2, 2, 2)  # (k, c, s_y, p_y, s_x, p_x)
        if self._compiled():  # channels ordered (p_y, p_x, c): each parity's c channels are one polyphase component
            weight = weight.permute(0, 3, 5, 1, 2, 4).reshape(k, 4 * c, 2, 2)
        else:  # channels ordered (c, p_y, p_x) as pixel_unshuffle makes them
            weight = weight.permute(0, 1, 3, 5, 2, 4).reshape(k, 4 * c, 2, 2)
        return _Valid2x2(weight, self.layer.bias, self.kernels)

    def _winograd(self, x: torch.Tensor) -> torch.Tensor:
        if self._compiled():
            return self._compiled_winograd(x)
        z = F.pixel_unshuffle(F.pad(x, (1, 1, 1, 1)), 2)  # (n, 4c, h/2 + 1, w/2 + 1)
        return self._valid(z.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2)

    def _compiled_winograd(self, x: torch.Tensor) -> torch.Tensor:
        """Reads the four polyphase components of the padded input straight from x: component (p_y, p_x) at
        (Y, X) is x[2Y + p_y - 1, 2X + p_x - 1] (zero outside), V channels [(2 p_y + p_x) c, + c)."""
        n, c, h, w = x.shape
        x = x.to(torch.float32)
        nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        out = x.new_empty((n, h // 2, w // 2, self.layer.out_channels))

        def fill(v, first, rows, cols):
            for py in range(2):
                for px in range(2):
                    self.kernels.input_transform(nhwc, 2 * TILE * first + py - 1, px - 1, rows, cols, ALPHA, step=2,
                                                 out=v, channel_offset=(2 * py + px) * c)

        def place(m, first, rows, cols):
            self.kernels.output_transform(m, rows, cols, out[:, first * TILE:(first + rows) * TILE], self.layer.bias)

        self._valid.compiled_bands(x, n, h // 2, w // 2, fill, place)
        return out.permute(0, 3, 1, 2)


class WinogradStride2ConvTranspose2d(_Stride2Layer):
    """Drop-in for ``ConvTranspose2d(c, k, 4, stride=2, padding=1)`` (inference only): same shapes and numbers.

    Input (N, c, H, W), any memory format; output (N, k, 2H, 2W), channels-last strides when computed here.
    """

    kind, description = nn.ConvTranspose2d, "4x4 stride-2 padding-1 transposed convolution"

    def uses_winograd(self, height: int, width: int) -> bool:
        """Whether an (height, width) input goes through F(4x4, 2x2): >= MIN_TILES tiles of (H + 1) x (W + 1)."""
        return -(-(height + 1) // TILE) * -(-(width + 1) // TILE) >= MIN_TILES

    def _transformed(self) -> _Valid2x2:
        weight = self.layer.weight  # (c, k, 4, 4) -> (4k, c, 2, 2), output channels ordered (a, b, k)
        c, k = weight.shape[:2]
        phases = torch.empty(2, 2, k, c, 2, 2, dtype=weight.dtype, device=weight.device)
        for a in range(2):
            for b in range(2):
                for s in range(2):
                    for t in range(2):
                        phases[a, b, :, :, s, t] = weight[:, :, 3 - a - 2 * s, 3 - b - 2 * t].t()
        bias = None if self.layer.bias is None else self.layer.bias.detach().repeat(4)
        return _Valid2x2(phases.reshape(4 * k, c, 2, 2), bias, self.kernels)

    def _winograd(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = self._valid.out_channels // 4
        if self._compiled():
            return self._compiled_winograd(x, k)
        y = self._valid(F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous())  # (n, h + 1, w + 1, 4k)
        y = y.view(n, h + 1, w + 1, 2, 2, k)
        out = x.new_empty((n, h, 2, w, 2, k))
        for a in range(2):
            for b in range(2):
                out[:, :, a, :, b] = y[:, a:a + h, b:b + w, a, b]  # phase (a, b) of pixel (i, j) sits at (i+a, j+b)
        return out.view(n, 2 * h, 2 * w, k).permute(0, 3, 1, 2)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """``out.copy_(self(x))`` without the intermediate map where the compiled transforms compute the layer.

        out: (N, k, 2H, 2W) float32 with unit channel stride, e.g. a channel slice of a channels-last map (the
        merge net's concatenations, ``boost_core.speed.unet_concat``).
        """
        n, _, h, w = x.shape
        k = self.layer.out_channels
        if (not self.uses_winograd(h, w) or not self._compiled() or out.dtype != torch.float32
                or out.stride(1) != 1 or tuple(out.shape) != (n, k, 2 * h, 2 * w)):
            out.copy_(self(x))
            return
        if self._valid is None:
            self._valid = self._transformed()
        self._compiled_winograd(x, k, out.permute(0, 2, 3, 1))

    def _compiled_winograd(self, x: torch.Tensor, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Reads x without padding (zeros outside) and writes each phase (a, b) of the (h + 1) x (w + 1) 'valid'
        output straight to its pixels: phase (a, b) at (Y, X) is output pixel (2Y - a, 2X - b). ``out``: the
        (n, 2h, 2w, k) target with unit channel stride (default: a new NHWC map)."""
        n, c, h, w = x.shape
        x = x.to(torch.float32)
        nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        if out is None:
            out = x.new_empty((n, 2 * h, 2 * w, k))
        bias = self.layer.bias

        def fill(v, first, rows, cols):
            self.kernels.input_transform(nhwc, TILE * first - 1, -1, rows, cols, ALPHA, out=v)

        def place(m, first, rows, cols):
            for a in range(2):
                for b in range(2):
                    self.kernels.output_transform(m, rows, cols, out, bias, top=2 * TILE * first - a, left=-b, step=2,
                                                  channel_offset=(2 * a + b) * k, channels=k)

        self._valid.compiled_bands(x, n, h + 1, w + 1, fill, place)
        return out.permute(0, 3, 1, 2)


def replace_layers(model: nn.Module, kernels=None) -> int:
    """Swap every qualifying (transposed) convolution of ``model`` for its Winograd form, in place; returns the count.

    ``kernels``: a ``native_kernels.WinogradKernels`` for the transforms, None for the torch form.
    """
    def winograd_form(layer: nn.Module) -> nn.Module:
        return (WinogradStride2Conv2d if type(layer) is nn.Conv2d else WinogradStride2ConvTranspose2d)(layer, kernels)

    return swap_layers(model, lambda layer: qualifies(layer, compiled=kernels is not None), winograd_form)


__all__ = ["WinogradStride2Conv2d", "WinogradStride2ConvTranspose2d", "qualifies", "replace_layers"]
