"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3): 36 multiplies per 4x4 output tile instead of 144
(and, on large maps with the compiled transforms, F(6x6, 3x3): 64 per 6x6 tile instead of 324).

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
out slower this way (merge net 1.45 -> 1.9 s); they are 2x2 convolutions in disguise and ``boost_core.speed.winograd_stride2``
computes them by F(4x4, 2x2) instead.

F(6x6, 3x3) (points 0, +-1, +-2, +-1/2, infinity; 8x8 input tiles) needs 21% fewer multiplies than F(4x4, 3x3) and
moves 21% less transformed data, but its transformed weights are 1.8x F(4x4)'s and its rounding about twice as
large (max ~1.5e-5 of a layer's range; whole MiDaS v2 forwards within ~1.4e-6 of the F(4x4)-only ones), so it is
used with the compiled transforms on maps of >= F6_MIN_TILES 6x6 tiles only. Measured (NHWC, 2 threads, median of
9, F4 -> F6): 256->256 at 192² 107 -> 83 ms, at 144² 74 -> 46 ms, at 96² 29 -> 28 ms, at 48² 11 -> 10 ms; 256->128
at 384² 288 -> 272 ms; 128->128 at 384² 193 -> 176 ms; but 1024->256 at 48² 26 -> 28 ms and 2048->256 at 24² 19 ->
22 ms (the weights dominate). Whole forwards, interleaved, median of 3-5: MiDaS v2 -3.4% at 384², -5.9% at 768²,
-6.8% at 1152²; LeReS -5.7% / -11% at 448² / 896²; SGR -12% at 448².

Large maps are processed in bands of tile rows so that the transformed tensors stay near ``BAND_BYTES`` each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
# With the compiled transforms (boost_core.speed.kernels.compiled) the transforms cost a third as much, so narrower layers and
# smaller maps gain too (NHWC, 2 threads, direct -> Winograd): 128->128 at 192² 67 -> 47 ms, at 384² 286 -> 192 ms;
# 256->256 at 24² 5.5 -> 4.0 ms, at 48² 16 -> 8 ms; 1024->256 at 48² 85 -> 31 ms; 2048->256 at 24² 62 -> 24 ms.
# Whole forwards with these floors vs the torch form's: MiDaS v2 -7% at 384², -4% at 768²; LeReS -9% and SGR -16%
# at 448².
COMPILED_MIN_CHANNEL_PRODUCT = 128 * 128
COMPILED_MIN_TILES = 32
# With compiled transforms, maps of at least this many 6x6 output tiles (and C_in / 4) go through F(6x6, 3x3)
# instead: 64 multiplies per 6x6 tile (1.78 per output) instead of 36 per 4x4 one (2.25), 21% less transformed data
F6_MIN_TILES = 128

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

# F(6x6, 3x3) from the points 0, +-1, +-2, +-1/2, infinity (Toom-Cook: A^T and G are Vandermonde rows at the points,
# B^T the inverse transpose of the 8-point one; each point's row of B^T scaled to small integers, G's by the inverse)
B_T6 = np.array([[4, 0, -21, 0, 21, 0, -4, 0],
                 [0, -4, -4, 17, 17, -4, -4, 0],
                 [0, 4, -4, -17, 17, 4, -4, 0],
                 [0, 2, 1, -10, -5, 8, 4, 0],
                 [0, -2, 1, 10, -5, -8, 4, 0],
                 [0, 4, 8, -5, -10, 1, 2, 0],
                 [0, -4, 8, 5, -10, -1, 2, 0],
                 [0, -4, 0, 21, 0, -21, 0, 4]], dtype=np.float64)
G6 = np.array([[1 / 4, 0, 0],
               [1 / 18, 1 / 18, 1 / 18],
               [1 / 18, -1 / 18, 1 / 18],
               [1 / 360, 1 / 180, 1 / 90],
               [1 / 360, -1 / 180, 1 / 90],
               [16 / 45, 8 / 45, 4 / 45],
               [16 / 45, -8 / 45, 4 / 45],
               [0, 0, 1 / 4]], dtype=np.float64)
A_T6 = np.array([[1, 1, 1, 1, 1, 1, 1, 0],
                 [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
                 [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
                 [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
                 [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
                 [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]], dtype=np.float64)


@dataclass(frozen=True)
class ToomCook:
    """One Winograd algorithm F(m x m, 3x3): output tile side m and its matrices G (a, 3), B^T (a, a), A^T (m, a)."""

    tile: int
    g: np.ndarray = field(repr=False)
    b_t: np.ndarray = field(repr=False)
    a_t: np.ndarray = field(repr=False)

    @property
    def alpha(self) -> int:
        """Input tile side a = m + 2."""
        return self.tile + 2


F4 = ToomCook(4, G, B_T, A_T)
F6 = ToomCook(6, G6, B_T6, A_T6)


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
        self.conv = conv  # the direct path, for maps too small to gain (see :meth:`algorithm`)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        # per output tile side m: (u (a*a, C_in, C_out), kron(B^T, B^T), kron(A^T, A^T)), built at m's first call
        self.transformed: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.kernels = kernels  # native_kernels.WinogradKernels for the transforms, None: torch operations

    def extra_repr(self) -> str:
        if self.kernels is None:
            return f"{self.in_channels}, {self.out_channels}, F(4x4, 3x3) from {MIN_TILES} tiles, torch transforms"
        return (f"{self.in_channels}, {self.out_channels}, F(4x4, 3x3) from {COMPILED_MIN_TILES} tiles, "
                f"F(6x6, 3x3) from {F6_MIN_TILES} tiles, compiled transforms")

    def algorithm(self, height: int, width: int) -> ToomCook | None:
        """The Winograd algorithm for a (height, width) input map: F4, F6 or None (the direct convolution).

        Measured (NHWC, 2 threads): the transformed weights are 4x the direct ones and every call reads them, so a
        map needs enough 4x4 tiles to amortise them: >= MIN_TILES tiles and >= C_in / 4 tiles (256->256: 0.8x at 36²,
        1.1x at 48², 1.5x at 72², 1.8x at 192²; 1024->256: 1.0x at 48², 1.6x at 72²; 2048->256: 0.5x at 36²).
        With compiled transforms every map of >= COMPILED_MIN_TILES tiles gains, and maps of >= F6_MIN_TILES 6x6
        tiles (and >= C_in / 4 of them) gain more from F(6x6, 3x3).
        """
        tiles = -(-height // TILE) * -(-width // TILE)
        if self.kernels is not None:  # compiled transforms: from COMPILED_MIN_TILES tiles, any width
            tiles6 = -(-height // F6.tile) * -(-width // F6.tile)
            if tiles6 >= F6_MIN_TILES and tiles6 >= TILES_PER_IN_CHANNEL * self.in_channels:
                return F6
            return F4 if tiles >= COMPILED_MIN_TILES else None
        return F4 if tiles >= MIN_TILES and tiles >= TILES_PER_IN_CHANNEL * self.in_channels else None

    def uses_winograd(self, height: int, width: int) -> bool:
        """Whether a (height, width) input map goes through Winograd (else the direct convolution)."""
        return self.algorithm(height, width) is not None

    def weights_for(self, algorithm: ToomCook):
        """(u, kron(B^T, B^T), kron(A^T, A^T)) of ``algorithm``: built in float64 at its first call, then kept;
        with compiled transforms u is stored k-major (``WinogradKernels.gemm_layout``, for their ``multiply``)."""
        if algorithm.tile not in self.transformed:
            u, b_kron, a_kron = transformed_weights(self.conv.weight, algorithm.g, algorithm.b_t, algorithm.a_t)
            if self.kernels is not None:
                u = self.kernels.gemm_layout(u)
            self.transformed[algorithm.tile] = (u, b_kron, a_kron)
        return self.transformed[algorithm.tile]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        algorithm = self.algorithm(h, w)
        if algorithm is None:
            return self.conv(x)
        out = x.new_empty((n, h, w, self.out_channels))
        if self.compiled(x):
            def place(m: torch.Tensor, top: int, rows: int, cols: int) -> None:
                self.kernels.output_transform(m, rows, cols, out[:, top:], self.conv.bias)

            self.compiled_bands(x, place, algorithm)
        else:
            nhwc = x.permute(0, 2, 3, 1)  # a view; contiguous when x is channels-last
            for first, rows, cols in self._bands(x, algorithm):
                self._band(nhwc, out, first * algorithm.tile, rows, cols, algorithm)
        return out.permute(0, 3, 1, 2)

    def _bands(self, x: torch.Tensor, algorithm: ToomCook):
        """(first tile row, tile rows, tile columns) of each band: transformed bands of about BAND_BYTES."""
        n, c, h, w = x.shape
        tile, alpha = algorithm.tile, algorithm.alpha
        tiles_h, tiles_w = -(-h // tile), -(-w // tile)
        per_row = n * tiles_w * alpha * alpha * max(c, self.out_channels) * x.element_size()
        for first, rows in tile_row_bands(tiles_h, per_row, BAND_BYTES):
            yield first, rows, tiles_w

    def compiled(self, x: torch.Tensor) -> bool:
        """Whether x goes through the compiled transforms (given, float32)."""
        return self.kernels is not None and x.dtype == torch.float32 and self.conv.weight.dtype == torch.float32

    def compiled_bands(self, x: torch.Tensor, place, algorithm: ToomCook) -> None:
        """The Winograd convolution of x by ``algorithm`` with the compiled transforms, band by band of tile rows;
        the outputs are left to ``place(m, top, rows, cols)`` (M (a*a, P, k) of the tile rows whose outputs start at
        map row ``top``), which writes them where its caller wants them (``output_transform``, possibly with a
        step and channel ranges)."""
        u = self.weights_for(algorithm)[0]
        nhwc = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        for first, rows, cols in self._bands(x, algorithm):
            top = first * algorithm.tile
            v = self.kernels.input_transform(nhwc, top - 1, -1, rows, cols, algorithm.alpha)
            m = self.kernels.multiply(v, u)
            del v
            place(m, top, rows, cols)

    def _band(self, nhwc: torch.Tensor, out: torch.Tensor, top: int, rows: int, tiles_w: int,
              algorithm: ToomCook) -> None:
        """Output rows [top, top + m rows) of every column, from input rows [top - 1, top + m rows + 1)."""
        n, h, w, c = nhwc.shape
        tile = algorithm.tile
        slab = nhwc.new_empty((n, rows * tile + 2, tiles_w * tile + 2, c))
        src_top, src_bottom = max(top - 1, 0), min(top + rows * tile + 1, h)
        first, last = src_top - (top - 1), src_bottom - (top - 1)  # slab rows holding image rows
        slab[:, :first].zero_()  # zero padding of 1 above the image, below it and right of it (tail tiles too)
        slab[:, last:].zero_()
        slab[:, :, 0].zero_()
        slab[:, :, w + 1:].zero_()
        slab[:, first:last, 1:w + 1] = nhwc[:, src_top:src_bottom]
        u, b_kron, a_kron = self.weights_for(algorithm)
        convolve_tiles(slab, tile, u, b_kron, a_kron, out[:, top:top + rows * tile], self.conv.bias)


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


__all__ = ["F4", "F6", "ToomCook", "WinogradConv2d", "convolve_tiles", "qualifies", "replace_convolutions",
           "tile_row_bands", "transformed_weights"]
