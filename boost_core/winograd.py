"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3): 36 multiplies per 4x4 output tile instead of 144.

The base networks' decoders (MiDaS v2 refine blocks, LeReS / SGR feature fusion) spend about half of a forward in
dense 3x3 convolutions with 128-2048 channels, which oneDNN already runs at this CPU's GEMM peak (~150 GFLOP/s on
2 cores): fewer multiplies are the only way left to make them faster. Here a convolution becomes

    V = B^T d B   (input transform of each 6x6 input tile d, stride 4; one GEMM with kron(B^T, B^T))
    M = V U       (36 independent GEMMs: tiles x C_in times C_in x C_out, U = G g G^T computed once in float64)
    Y = A^T M A   (output transform to the 4x4 output tile; one GEMM with kron(A^T, A^T))

with Lavin & Gray's matrices for the interpolation points 0, +-1, +-2, infinity (CVPR 2016). The bias is added
while the output tiles are copied into place (adding it to M inside the batched GEMM cost a copy of M: ~15% of a
layer). Rounding: max error ~1e-5 of a layer's output range vs ~2e-6 for the direct
convolution (float64 reference); whole forwards stay within ~4e-6 of the direct ones, well inside the parity
goldens' tolerance (max 1e-4 of the map).

The transformed weights are 4x the direct ones and every call reads them, and the transforms move 2.25x the
activations through memory, so Winograd only pays on wide layers over large maps. Measured on this project's CPU
(NHWC, 2 threads, direct -> Winograd): 256->256 channels at 192² 263 -> 146 ms, at 72² 32 -> 21 ms, at 36² 8 -> 10 ms;
1024->256 at 72² 163 -> 101 ms, at 48² even; 2048->256 at 36² 74 -> 152 ms; 256->128 at 96² 55 -> 33 ms, at 384²
561 -> 414 ms; with fewer channels the transforms dominate (128->128 at 384²: 252 -> 232 ms, about even; 128->32 at
768²: 278 -> 585 ms). Hence :func:`qualifies`' channel floors and the
per-call choice of :meth:`WinogradConv2d.uses_winograd` (enough tiles, the direct convolution otherwise); the
transformed weights are built at a layer's first Winograd call only. Whole forwards, same process, interleaved:
MiDaS v2 -12% at 384², -16% at 768² and 1152²; LeReS -11% / -15% at 448² / 896²; SGR -13% / -26%.
The merge net's 4x4 stride-2 (up-)convolutions, rewritten as 3x3 convolutions with 4 x C_out phase channels, came
out slower this way (merge net 1.45 -> 1.9 s); they are 2x2 convolutions in disguise and ``boost_core.winograd_stride2``
computes them by F(4x4, 2x2) instead.

Large maps are processed in bands of tile rows so that the transformed tensors stay near ``BAND_BYTES`` each.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .layer_swap import swap_layers

TILE = 4  # output tile side (m)
ALPHA = TILE + 2  # input tile side (m + r - 1)
MIN_CHANNELS = 128  # in and out: with fewer channels the transforms cost about what they save ...
MIN_CHANNEL_PRODUCT = 128 * 256  # ... and in x out at least this (256->128 gains, 128->128 is even)
MIN_TILES = 256  # 4x4 output tiles a map needs before Winograd pays (64² px); see WinogradConv2d.uses_winograd
TILES_PER_IN_CHANNEL = 0.25  # ... and per input channel (the transformed weights grow with C_in)
BAND_BYTES = 64 * 2**20  # bytes of one transformed band (V or M), bounds the extra memory of a forward
# With the compiled transforms (boost_core.native_kernels) the transforms cost a third as much, so narrower layers and
# smaller maps gain too (NHWC, 2 threads, direct -> Winograd): 128->128 at 192² 67 -> 47 ms, at 384² 286 -> 192 ms;
# 256->256 at 24² 5.5 -> 4.0 ms, at 48² 16 -> 8 ms; 1024->256 at 48² 85 -> 31 ms; 2048->256 at 24² 62 -> 24 ms.
# Whole forwards with these floors vs the torch form's: MiDaS v2 -7% at 384², -4% at 768²; LeReS -9% and SGR -16%
# at 448².
COMPILED_MIN_CHANNEL_PRODUCT = 128 * 128
COMPILED_MIN_TILES = 32

# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", F(4x4, 3x3)
B_T = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], dtype=np.float64)


def transformed_weights(weight: torch.Tensor, g: np.ndarray, b_t: np.ndarray, a_t: np.ndarray):
    """The constant tensors of a Winograd convolution F(m x m, r x r), in ``weight``'s dtype and device.

    weight (k, c, r, r); g (a, r), b_t (a, a), a_t (m, a) the Toom-Cook matrices (a = m + r - 1).
    Returns u (a*a, c, k) = G w G^T computed in float64, kron(B^T, B^T) (a*a, a*a) and kron(A^T, A^T) (m*m, a*a).
    """
    dtype, device = weight.dtype, weight.device
    k, c, r = weight.shape[:3]
    alpha = g.shape[0]
    gt = torch.from_numpy(g)  # (a, r)
    # u[s, t, c, k] = sum_ij G[s, i] G[t, j] w[k, c, i, j], built as (s, t, c k) by two GEMMs over the weights moved
    # to (i, j, c, k) first (moving the 4x larger u instead took ~half the time of a merge net's first call)
    w = weight.detach().to("cpu", torch.float64).permute(2, 3, 1, 0).reshape(r, r * c * k)  # (i, j c k)
    u = torch.matmul(gt, (gt @ w).view(alpha, r, c * k))  # (s, t, c k)
    u = u.view(alpha * alpha, c, k).to(device, dtype)
    b_kron = torch.from_numpy(np.kron(b_t, b_t)).to(device, dtype)
    a_kron = torch.from_numpy(np.kron(a_t, a_t)).to(device, dtype)
    return u, b_kron, a_kron


def _place(tiles: torch.Tensor, target: torch.Tensor, bias: torch.Tensor | None) -> None:
    """``target = tiles (+ bias)`` in one pass; both (..., k) of the same shape, any strides; bias (k,) or None."""
    if bias is None:
        target.copy_(tiles)
    else:
        torch.add(tiles, bias.detach(), out=target)


def convolve_tiles(slab: torch.Tensor, tile: int, u: torch.Tensor, b_kron: torch.Tensor, a_kron: torch.Tensor,
                   target: torch.Tensor, bias: torch.Tensor | None) -> None:
    """One band of a Winograd convolution F(m x m, r x r) (m = ``tile``, a = m + r - 1 = sqrt(u.shape[0])).

    slab (n, rows*m + a - m, cols*m + a - m, c): the band's input, padded as the convolution needs (a 'valid'
    convolution of it gives rows*m x cols*m outputs); u (a*a, c, k), b_kron (a*a, a*a), a_kron (m*m, a*a) from
    :func:`transformed_weights`. Writes the outputs plus ``bias`` (k,) into ``target`` (n, <= rows*m, <= cols*m, k),
    any strides: the top-left part of the band when the map ends inside its last tiles.
    """
    n, c, k = slab.shape[0], slab.shape[-1], u.shape[-1]
    alpha = round(u.shape[0] ** 0.5)
    tiles = slab.unfold(1, alpha, tile).unfold(2, alpha, tile)  # (n, rows, cols, c, a, a), a view
    rows, cols = tiles.shape[1:3]
    d = tiles.permute(4, 5, 0, 1, 2, 3).reshape(alpha * alpha, -1)  # (a*a, n*rows*cols*c), a copy
    v = (b_kron @ d).view(alpha * alpha, -1, c)  # (a*a, P, c)
    m = torch.bmm(v, u)  # (a*a, P, k)
    y = (a_kron @ m.view(alpha * alpha, -1)).view(tile, tile, n, rows, cols, k)
    y = y.permute(2, 3, 0, 4, 1, 5)  # (n, rows, m, cols, m, k), a view
    height, width = target.shape[1:3]
    if height == rows * tile and width == cols * tile:  # whole tiles: one pass straight into place
        _place(y, target.view(n, rows, tile, cols, tile, k), bias)
    else:
        _place(y.reshape(n, rows * tile, cols * tile, k)[:, :height, :width], target, bias)


def qualifies(conv: nn.Module, compiled: bool = False) -> bool:
    """Whether ``conv`` is a plain 3x3 'same' convolution this module computes faster (see the module doc).

    ``compiled``: with the compiled transforms, whose channel floor is lower (:data:`COMPILED_MIN_CHANNEL_PRODUCT`).
    """
    product = COMPILED_MIN_CHANNEL_PRODUCT if compiled else MIN_CHANNEL_PRODUCT
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
            and conv.in_channels * conv.out_channels >= product)


class WinogradConv2d(nn.Module):
    """Drop-in for a qualifying ``nn.Conv2d`` (inference only): same input/output shapes and numbers (float32 rounding).

    Input: (N, C_in, H, W) float tensor, any memory format. Output: (N, C_out, H, W); channels-last strides when
    computed by Winograd, the direct convolution's layout otherwise (maps with too few tiles).
    """

    def __init__(self, conv: nn.Conv2d, kernels=None):
        super().__init__()
        if not qualifies(conv, compiled=kernels is not None):
            product = MIN_CHANNEL_PRODUCT if kernels is None else COMPILED_MIN_CHANNEL_PRODUCT
            raise ValueError(f"not a 3x3 stride-1 padding-1 dense convolution with >= {MIN_CHANNELS} input and output "
                             f"channels, >= {product} in x out: {conv}")
        self.conv = conv  # the direct path, for maps too small to gain (see :meth:`uses_winograd`)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.u: torch.Tensor | None = None  # (36, C_in, C_out) transformed weights, built at the first Winograd call
        self.b_kron: torch.Tensor | None = None  # (36, 36) kron(B^T, B^T)
        self.a_kron: torch.Tensor | None = None  # (16, 36) kron(A^T, A^T)
        self.kernels = kernels  # native_kernels.WinogradKernels for the transforms, None: torch operations

    def extra_repr(self) -> str:
        kind = "compiled" if self.kernels is not None else "torch"
        return f"{self.in_channels}, {self.out_channels}, F(4x4, 3x3) from {MIN_TILES} tiles, {kind} transforms"

    def uses_winograd(self, height: int, width: int) -> bool:
        """Whether a (height, width) input map goes through Winograd (else the direct convolution).

        Measured (NHWC, 2 threads): the transformed weights are 4x the direct ones and every call reads them, so a
        map needs enough 4x4 tiles to amortise them: >= MIN_TILES tiles and >= C_in / 4 tiles (256->256: 0.8x at 36²,
        1.1x at 48², 1.5x at 72², 1.8x at 192²; 1024->256: 1.0x at 48², 1.6x at 72²; 2048->256: 0.5x at 36²).
        With compiled transforms every map of >= COMPILED_MIN_TILES tiles gains (see :data:`COMPILED_MIN_TILES`).
        """
        tiles = -(-height // TILE) * -(-width // TILE)
        if self.kernels is not None:  # compiled transforms: from COMPILED_MIN_TILES tiles, any width
            return tiles >= COMPILED_MIN_TILES
        return tiles >= MIN_TILES and tiles >= TILES_PER_IN_CHANNEL * self.in_channels

    def _prepare(self) -> None:
        """Transformed weights, in float64 then the conv's dtype (once; ~4x the memory of the direct weights)."""
        self.u, self.b_kron, self.a_kron = transformed_weights(self.conv.weight, G, B_T, A_T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if not self.uses_winograd(h, w):
            return self.conv(x)
        if self.u is None:
            self._prepare()
        out = x.new_empty((n, h, w, self.out_channels))
        if self.compiled(x):
            def place(m: torch.Tensor, first: int, rows: int, cols: int) -> None:
                self.kernels.output_transform(m, rows, cols, out[:, first * TILE:(first + rows) * TILE],
                                              self.conv.bias)

            self.compiled_bands(x, place)
        else:
            nhwc = x.permute(0, 2, 3, 1)  # a view; contiguous when x is channels-last
            for first, rows, cols in self._bands(x):
                self._band(nhwc, out, first * TILE, rows, cols)
        return out.permute(0, 3, 1, 2)

    def _bands(self, x: torch.Tensor):
        """(first tile row, tile rows, tile columns) of each band: transformed bands of about BAND_BYTES."""
        n, c, h, w = x.shape
        tiles_h, tiles_w = -(-h // TILE), -(-w // TILE)
        per_row = n * tiles_w * ALPHA * ALPHA * max(c, self.out_channels) * x.element_size()
        for first, rows in tile_row_bands(tiles_h, per_row, BAND_BYTES):
            yield first, rows, tiles_w

    def compiled(self, x: torch.Tensor) -> bool:
        """Whether x goes through the compiled transforms (given, float32)."""
        return self.kernels is not None and x.dtype == torch.float32 and self.conv.weight.dtype == torch.float32

    def compiled_bands(self, x: torch.Tensor, place) -> None:
        """The Winograd convolution of x with the compiled transforms, band by band of tile rows; the outputs are
        left to ``place(m, first, rows, cols)`` (M (36, P, k) of tile rows [first, first + rows)), which writes
        them where its caller wants them (``output_transform``, possibly with a step and channel ranges)."""
        if self.u is None:
            self._prepare()
        nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        for first, rows, cols in self._bands(x):
            v = self.kernels.input_transform(nhwc, first * TILE - 1, -1, rows, cols, ALPHA)
            m = self.kernels.transformed_buffer(ALPHA, v.shape[1], self.out_channels, v)
            torch.bmm(v, self.u, out=m)
            del v
            place(m, first, rows, cols)

    def _band(self, nhwc: torch.Tensor, out: torch.Tensor, top: int, rows: int, tiles_w: int) -> None:
        """Output rows [top, top + 4 rows) of every column, from input rows [top - 1, top + 4 rows + 1)."""
        n, h, w, c = nhwc.shape
        slab = nhwc.new_empty((n, rows * TILE + 2, tiles_w * TILE + 2, c))
        src_top, src_bottom = max(top - 1, 0), min(top + rows * TILE + 1, h)
        first, last = src_top - (top - 1), src_bottom - (top - 1)  # slab rows holding image rows
        slab[:, :first].zero_()  # zero padding of 1 above the image, below it and right of it (tail tiles too)
        slab[:, last:].zero_()
        slab[:, :, 0].zero_()
        slab[:, :, w + 1:].zero_()
        slab[:, first:last, 1:w + 1] = nhwc[:, src_top:src_bottom]
        convolve_tiles(slab, TILE, self.u, self.b_kron, self.a_kron, out[:, top:top + rows * TILE], self.conv.bias)


def tile_row_bands(tiles_h: int, bytes_per_tile_row: int, band_bytes: int):
    """(first tile row, tile rows) of consecutive bands covering ``tiles_h`` tile rows, each band's transformed
    tensor about ``band_bytes`` (``bytes_per_tile_row`` per row), at least one row a band."""
    band = max(1, min(tiles_h, band_bytes // bytes_per_tile_row))
    for first in range(0, tiles_h, band):
        yield first, min(band, tiles_h - first)


def replace_convolutions(model: nn.Module, kernels=None) -> int:
    """Swap every qualifying Conv2d of ``model`` for a :class:`WinogradConv2d`, in place; returns the count.

    ``kernels``: a ``native_kernels.WinogradKernels`` for the transforms, None for the torch form.
    """
    return swap_layers(model, lambda conv: qualifies(conv, compiled=kernels is not None),
                       lambda conv: WinogradConv2d(conv, kernels))


__all__ = ["WinogradConv2d", "convolve_tiles", "qualifies", "replace_convolutions", "tile_row_bands",
           "transformed_weights"]
