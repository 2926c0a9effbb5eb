"""Winograd F(4x4, 3x3) and F(6x6, 3x3) convolutions: the direct convolution's numbers (float32 rounding), any shape
and layout."""

import random

import pytest
import torch
import torch.nn.functional as F

from boost_core.speed import winograd


def direct_float64(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    bias = None if conv.bias is None else conv.bias.double()
    return F.conv2d(x.double(), conv.weight.double(), bias, padding=1)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.detach(), expected.detach()
    return float((got.double() - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("algorithm", [winograd.F4, winograd.F6], ids=["F4", "F6"])
@pytest.mark.parametrize("shape, bias, channels_last, band_bytes", [
    ((2, 128, 13, 22), True, False, winograd.BAND_BYTES),  # batch 2, sizes not multiples of 4 or 6, NCHW input
    ((1, 256, 7, 5), False, True, winograd.BAND_BYTES),  # no bias, channels-last input
    ((1, 128, 1, 1), True, True, winograd.BAND_BYTES),  # a single pixel: all padding
    ((1, 128, 37, 30), True, True, 1),  # one tile row per band: band seams at every tile row
    ((1, 160, 72, 48), True, False, 600_000),  # several rows per band, whole tiles
])
def test_matches_direct_convolution(shape, bias, channels_last, band_bytes, algorithm, monkeypatch):
    """The torch form, by either algorithm (this form picks F4 by itself; F6 forced here)."""
    monkeypatch.setattr(winograd, "BAND_BYTES", band_bytes)
    torch.manual_seed(sum(shape))
    conv = torch.nn.Conv2d(shape[1], 256, 3, padding=1, bias=bias)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = direct_float64(conv, x)
    layer = winograd.WinogradConv2d(conv)
    monkeypatch.setattr(layer, "algorithm", lambda height, width: algorithm)  # Winograd on every map, however small
    with torch.inference_mode():
        got = layer(x)
        direct = conv(x)
    assert list(layer.transformed) == [algorithm.tile]
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(got, expected) < 3e-5  # float32 direct convolution: ~2e-6
    assert relative_error(direct, expected) < 1e-5


def test_small_maps_take_the_direct_convolution():
    torch.manual_seed(7)
    conv = torch.nn.Conv2d(512, 256, 3, padding=1)
    layer = winograd.WinogradConv2d(conv)
    small = torch.randn(1, 512, 36, 36)  # 81 tiles: below MIN_TILES
    large = torch.randn(1, 512, 72, 64)  # 18 x 16 = 288 tiles >= MIN_TILES and >= 512 / 4
    assert not layer.uses_winograd(36, 36) and layer.uses_winograd(72, 64)
    assert not winograd.WinogradConv2d(torch.nn.Conv2d(2048, 256, 3, padding=1)).uses_winograd(72, 64)  # 288 < 512
    with torch.inference_mode():
        assert torch.equal(layer(small), conv(small))  # the direct convolution itself, bit for bit
        assert not layer.transformed  # transformed weights only once a map needs them
        got, direct = layer(large), conv(large)
    assert layer.transformed[4][0].shape == (36, 512, 256)
    assert not torch.equal(got, direct)  # a different algorithm ...
    assert relative_error(got, direct_float64(conv, large)) < 3e-5  # ... with the same numbers


def test_only_plain_wide_3x3_convolutions_qualify():
    assert winograd.qualifies(torch.nn.Conv2d(128, 256, 3, padding=1))
    assert winograd.qualifies(torch.nn.Conv2d(256, 128, 3, padding=1))  # the MiDaS / LeReS / SGR heads' first conv
    for conv in (torch.nn.Conv2d(256, 256, 3, padding=1, stride=2), torch.nn.Conv2d(256, 256, 3, padding=1, groups=32),
                 torch.nn.Conv2d(256, 256, 1), torch.nn.Conv2d(256, 256, 3), torch.nn.Conv2d(256, 256, 3, padding=2,
                                                                                           dilation=2),
                 torch.nn.Conv2d(128, 128, 3, padding=1), torch.nn.Conv2d(64, 256, 3, padding=1),
                 torch.nn.Conv2d(256, 64, 3, padding=1),
                 torch.nn.Conv2d(256, 256, 3, padding=1, padding_mode="reflect"),
                 torch.nn.ConvTranspose2d(256, 256, 3, padding=1)):
        assert not winograd.qualifies(conv), conv
    with pytest.raises(ValueError, match="3x3"):
        winograd.WinogradConv2d(torch.nn.Conv2d(64, 64, 3, padding=1))


def test_replaces_the_midas_decoder_convolutions(checkpoints, monkeypatch):
    monkeypatch.setattr(winograd, "MIN_TILES", 0)  # a small input, every swapped layer through Winograd
    monkeypatch.setattr(winograd, "TILES_PER_IN_CHANNEL", 0)
    from boost_core.networks import registry

    model = registry.load_base(registry.get("midas_v2"), checkpoints("midas_v2"), "cpu")
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        expected = model(x)
        swapped = winograd.replace_convolutions(model)
        got = model(x)
    # layer1_rn..layer4_rn (4) + 2 residual units x 2 convs in each of refinenet1..4 (16; refinenet4's first unit is
    # built but unused, as in the official model) + the head's 256->128; its 128->32 stays direct (too few channels)
    assert swapped == 21
    assert sum(isinstance(m, winograd.WinogradConv2d) for m in model.modules()) == swapped
    assert float((got - expected).abs().max() / (expected.max() - expected.min())) < 1e-4


@pytest.mark.parametrize("algorithm", [winograd.F4, winograd.F6], ids=["F4", "F6"])
def test_toom_cook_matrices_compute_the_correlation_exactly(algorithm):
    """A^T [(G g) * (B^T d)] = the m outputs of the 3-tap correlation of d (length m + 2), in exact fractions."""
    from fractions import Fraction

    def exact(matrix):
        return [[Fraction(float(value)).limit_denominator(10_000) for value in row] for row in matrix]

    g_m, b_t, a_t = exact(algorithm.g), exact(algorithm.b_t), exact(algorithm.a_t)
    assert all(float(value) == original for row, row0 in zip(b_t + a_t, list(algorithm.b_t) + list(algorithm.a_t))
               for value, original in zip(row, row0))  # B^T and A^T are exact in binary: no rounding in them
    rng = random.Random(algorithm.tile)
    for _ in range(5):
        g = [Fraction(rng.randint(-99, 99), rng.randint(1, 9)) for _ in range(3)]
        d = [Fraction(rng.randint(-99, 99), rng.randint(1, 9)) for _ in range(algorithm.alpha)]
        gg = [sum(row[i] * g[i] for i in range(3)) for row in g_m]
        bd = [sum(row[i] * d[i] for i in range(algorithm.alpha)) for row in b_t]
        y = [sum(row[i] * gg[i] * bd[i] for i in range(algorithm.alpha)) for row in a_t]
        assert y == [sum(g[k] * d[i + k] for k in range(3)) for i in range(algorithm.tile)]


@pytest.mark.parametrize("form", ["3x3", "3x3 F6", "stride2"])
def test_transformed_weights_are_g_w_gt(form):
    """u[s*a + t, c, k] = sum_ij G[s, i] G[t, j] w[k, c, i, j] (float64, stored float32), and the two Kronecker
    products, for F(4x4, 3x3), F(6x6, 3x3) and the stride-2 layers' F(4x4, 2x2)."""
    import numpy as np

    from boost_core.speed import winograd_stride2

    module = {"3x3": winograd.F4, "3x3 F6": winograd.F6, "stride2": winograd_stride2}[form]
    if form == "stride2":
        g, b_t, a_t = module.G, module.B_T, module.A_T
    else:
        g, b_t, a_t = module.g, module.b_t, module.a_t
    torch.manual_seed(3)
    r = g.shape[1]
    weight = torch.randn(24, 40, r, r)
    u, b_kron, a_kron = winograd.transformed_weights(weight, g, b_t, a_t)
    alpha = g.shape[0]
    expected = torch.einsum("si,tj,kcij->stck", torch.from_numpy(g), torch.from_numpy(g), weight.double())
    assert u.dtype == torch.float32 and u.is_contiguous() and u.shape == (alpha * alpha, 40, 24)
    assert torch.allclose(u.double(), expected.reshape(alpha * alpha, 40, 24), rtol=1e-6, atol=1e-6)
    assert torch.equal(b_kron, torch.from_numpy(np.kron(b_t, b_t)).float())
    assert torch.equal(a_kron, torch.from_numpy(np.kron(a_t, a_t)).float())


@pytest.mark.parametrize("tiles_h, per_row, band_bytes, rows_each", [
    (10, 100, 350, 3),  # 3 rows fit: bands of 3, 3, 3 and the last 1
    (7, 100, 1, 1),  # a row larger than the budget: still one row a band
    (5, 100, 10**9, 5),  # everything in one band
])
def test_tile_row_bands_cover_every_row_once(tiles_h, per_row, band_bytes, rows_each):
    bands = list(winograd.tile_row_bands(tiles_h, per_row, band_bytes))
    assert [first for first, _ in bands] == list(range(0, tiles_h, rows_each))
    assert sum(rows for _, rows in bands) == tiles_h
    assert all(rows == rows_each for _, rows in bands[:-1]) and 0 < bands[-1][1] <= rows_each
