"""The compiled Winograd transforms (boost_core.speed.kernels.compiled): the torch form's numbers, built once, optional."""

import os

import pytest
import torch

from boost_core.speed import acceleration, winograd, winograd_stride2
from boost_core.speed.kernels import compiled as native_kernels


@pytest.fixture(scope="module")
def kernels():
    found = native_kernels.winograd_kernels()
    if found is None:
        reason = f"no compiled kernels here: {native_kernels.unavailable_reason()}"
        if os.environ.get("CI"):  # .ci/setup installs a C compiler: the kernels behind the timings must be tested
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def tiles_of(nhwc: torch.Tensor, top: int, left: int, rows: int, cols: int, alpha: int, m: int) -> torch.Tensor:
    """(n, rows, cols, alpha, alpha, c) float64 tiles at (top + m r, left + m q); zeros outside the map."""
    n, h, w, c = nhwc.shape
    pad = alpha + m * max(rows, cols)
    canvas = torch.zeros(n, h + 2 * pad, w + 2 * pad, c, dtype=torch.float64)
    canvas[:, pad:pad + h, pad:pad + w] = nhwc.double()
    out = torch.empty(n, rows, cols, alpha, alpha, c, dtype=torch.float64)
    for r in range(rows):
        for q in range(cols):
            y, x = pad + top + m * r, pad + left + m * q
            out[:, r, q] = canvas[:, y:y + alpha, x:x + alpha]
    return out


TRANSFORMS = [(6, winograd.B_T, winograd.A_T), (5, winograd_stride2.B_T, winograd_stride2.A_T),
              (8, winograd.B_T6, winograd.A_T6)]  # F(4x4, 3x3), F(4x4, 2x2), F(6x6, 3x3)


@pytest.mark.parametrize("alpha, b_t", [(alpha, b_t) for alpha, b_t, _ in TRANSFORMS])
def test_input_transform_is_b_t_d_b(kernels, alpha, b_t):
    torch.manual_seed(alpha)
    nhwc = torch.randn(2, 13, 22, 20)  # 20 channels: two 8-wide blocks and a scalar tail of 4
    top, left, rows, cols = -1, -1, 4, 6  # tiles hang over every border: zeros there
    v = kernels.input_transform(nhwc, top, left, rows, cols, alpha)
    assert v.shape == (alpha * alpha, 2 * rows * cols, 20) and v.stride() == (20, alpha * alpha * 20, 1)  # tile-major
    bt = torch.from_numpy(b_t)
    d = tiles_of(nhwc, top, left, rows, cols, alpha, native_kernels.TILES[alpha])  # (n, rows, cols, a, a, c)
    expected = torch.einsum("il,nrqljc,mj->imnrqc", bt, d, bt).reshape(alpha * alpha, -1, 20)
    assert float((v.double() - expected).abs().max()) < 1e-5 * float(expected.abs().max())


@pytest.mark.parametrize("alpha, a_t, bias", [(alpha, a_t, alpha != 5) for alpha, _, a_t in TRANSFORMS])
def test_output_transform_is_a_t_m_a_plus_bias(kernels, alpha, a_t, bias):
    torch.manual_seed(10 + alpha)
    n, rows, cols, k = 2, 5, 9, 19  # 19 channels: 8 + 8 + a tail of 3
    t = native_kernels.TILES[alpha]
    m = torch.randn(alpha * alpha, n * rows * cols, k)
    b = torch.randn(k) if bias else None
    target = torch.full((n, t * rows - 3, t * cols - 1, k), float("nan"))  # the last tiles are partly outside
    kernels.output_transform(m, rows, cols, target, b)
    at = torch.from_numpy(a_t)
    y = torch.einsum("il,lmpk,jm->pijk", at, m.double().view(alpha, alpha, -1, k), at)  # (P, t, t, k)
    y = y.view(n, rows, cols, t, t, k).permute(0, 1, 3, 2, 4, 5).reshape(n, t * rows, t * cols, k)
    expected = y[:, :target.shape[1], :target.shape[2]] + (0 if b is None else b.double())
    assert not target.isnan().any()  # every pixel written
    assert float((target.double() - expected).abs().max()) < 1e-5 * float(expected.abs().max())


@pytest.mark.parametrize("alpha, c, k", [(6, 20, 19), (8, 64, 40), (5, 128, 256)])
def test_multiply_is_the_batched_product_by_onednn_where_u_is_k_major(kernels, alpha, c, k):
    """M[t] = V[t] @ U[t] for every t, from oneDNN's grouped 1x1 convolution (tile-major M) when u is stored
    k-major, from torch.bmm otherwise; both equal a float64 product."""
    torch.manual_seed(alpha + c)
    nhwc = torch.randn(1, 4 * 3 + 2, 4 * 5 + 2, c)
    v = kernels.input_transform(nhwc, -1, -1, 3, 5, alpha)  # (a*a, 15, c)
    u = torch.randn(alpha * alpha, c, k)
    expected = torch.bmm(v.double(), u.double())
    fast = kernels.multiply(v, native_kernels.WinogradKernels.gemm_layout(u))
    assert torch.equal(native_kernels.WinogradKernels.gemm_layout(u), u)
    if torch.backends.mkldnn.is_available():  # torch's x86 builds: the grouped convolution, tile-major output
        assert fast.stride() == (k, alpha * alpha * k, 1)
    plain = kernels.multiply(v, u)  # u as it comes (c-major): the BLAS
    assert plain.is_contiguous()
    for m in (fast, plain):
        assert m.shape == (alpha * alpha, 15, k)
        assert float((m.double() - expected).abs().max()) < 1e-5 * float(expected.abs().max())


def test_large_maps_take_f6_small_ones_f4_tiny_ones_the_direct_convolution(kernels):
    """With compiled transforms: F(6x6, 3x3) from F6_MIN_TILES 6x6 tiles (and C_in / 4), F(4x4, 3x3) from
    COMPILED_MIN_TILES 4x4 tiles, the direct convolution below."""
    layer = winograd.WinogradConv2d(torch.nn.Conv2d(256, 256, 3, padding=1), kernels)
    assert layer.algorithm(96, 96) is winograd.F6  # 256 tiles of 6x6
    assert layer.algorithm(48, 48) is winograd.F4  # 64 tiles of 6x6, 144 of 4x4
    assert layer.algorithm(20, 20) is None  # 25 tiles of 4x4
    wide = winograd.WinogradConv2d(torch.nn.Conv2d(1024, 256, 3, padding=1), kernels)
    assert wide.algorithm(96, 96) is winograd.F6 and wide.algorithm(72, 72) is winograd.F4  # 144 < 1024 / 4
    assert winograd.WinogradConv2d(torch.nn.Conv2d(256, 256, 3, padding=1)).algorithm(384, 384) is winograd.F4


def test_work_is_split_between_threads_with_the_same_result(kernels):
    torch.manual_seed(5)
    nhwc = torch.randn(1, 64, 64, 32)  # 256 tiles: split between threads
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernels.input_transform(nhwc, -1, -1, 16, 16, 6)
        torch.set_num_threads(3)
        three = kernels.input_transform(nhwc, -1, -1, 16, 16, 6)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, three)


@pytest.mark.parametrize("algorithm", [winograd.F4, winograd.F6], ids=["F4", "F6"])
@pytest.mark.parametrize("shape", [(2, 128, 13, 22), (1, 256, 37, 30)])
def test_winograd_layer_with_kernels_matches_direct_convolution(kernels, shape, algorithm, monkeypatch):
    monkeypatch.setattr(winograd, "BAND_BYTES", 1)  # one tile row per band: band seams everywhere
    torch.manual_seed(sum(shape))
    conv = torch.nn.Conv2d(shape[1], 260, 3, padding=1)  # 260: a scalar tail of 4 channels
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    expected = torch.nn.functional.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1).detach()
    fast, plain = winograd.WinogradConv2d(conv, kernels), winograd.WinogradConv2d(conv)
    for layer in (fast, plain):  # Winograd by ``algorithm`` on every map, however small
        monkeypatch.setattr(layer, "algorithm", lambda height, width: algorithm)
    with torch.inference_mode():
        got, torch_form = fast(x), plain(x)
    assert list(fast.transformed) == [algorithm.tile]
    assert "compiled" in fast.extra_repr() and "torch" in plain.extra_repr()
    scale = float(expected.abs().max())
    assert float((got.double() - expected).abs().max()) < 3e-5 * scale
    assert float((got - torch_form).abs().max()) < 3e-5 * scale


@pytest.mark.parametrize("transposed, shape, band_bytes", [
    (False, (2, 256, 30, 34), winograd_stride2.BAND_BYTES), (True, (1, 512, 13, 18), winograd_stride2.BAND_BYTES),
    (False, (1, 128, 42, 20), 1), (True, (2, 256, 21, 10), 1),  # one tile row per band: seams everywhere
])
def test_stride2_layers_with_kernels_match_the_direct_layers(kernels, transposed, shape, band_bytes, monkeypatch):
    """Read in place (polyphase components / no padding) and written in place (phases interleaved)."""
    monkeypatch.setattr(winograd_stride2, "MIN_TILES", 0)
    monkeypatch.setattr(winograd_stride2, "BAND_BYTES", band_bytes)
    torch.manual_seed(sum(shape))
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    functional = torch.nn.functional
    if transposed:
        layer = torch.nn.ConvTranspose2d(shape[1], 20, 4, stride=2, padding=1)
        fast = winograd_stride2.WinogradStride2ConvTranspose2d(layer, kernels)
        expected = functional.conv_transpose2d(x.double(), layer.weight.double(), layer.bias.double(), stride=2,
                                               padding=1)
    else:
        layer = torch.nn.Conv2d(shape[1], 20, 4, stride=2, padding=1)
        fast = winograd_stride2.WinogradStride2Conv2d(layer, kernels)
        expected = functional.conv2d(x.double(), layer.weight.double(), layer.bias.double(), stride=2, padding=1)
    with torch.inference_mode():
        got = fast(x)
    assert fast._valid is not None and fast._valid.kernels is kernels
    expected = expected.detach()
    assert float((got.double() - expected).abs().max()) < 3e-5 * float(expected.abs().max())


def test_library_is_built_once_and_cached(kernels, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOST_DEPTH_CACHE", str(tmp_path))
    compiler, flags = native_kernels.find_compiler(), native_kernels.compile_flags()
    first = native_kernels.build(compiler, flags)
    assert first.parent == tmp_path and first.stat().st_size > 0
    built = first.stat().st_mtime_ns
    assert native_kernels.build(compiler, flags) == first and first.stat().st_mtime_ns == built  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no partial file left


def test_without_a_compiler_the_torch_form_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOST_DEPTH_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-anywhere")
    native_kernels.winograd_kernels.cache_clear()
    try:
        assert native_kernels.winograd_kernels() is None
        assert "no C compiler" in native_kernels.unavailable_reason()
        model = acceleration.accelerate(torch.nn.Sequential(torch.nn.Conv2d(256, 256, 3, padding=1)).eval(),
                                        acceleration.Acceleration(winograd=True))
        layer = model[0] if isinstance(model, torch.nn.Sequential) else model.model[0]
        assert isinstance(layer, winograd.WinogradConv2d) and layer.kernels is None
        with pytest.raises(RuntimeError, match="no C compiler found"):
            acceleration.accelerate(torch.nn.Sequential(torch.nn.Conv2d(256, 256, 3, padding=1)).eval(),
                                    acceleration.Acceleration(winograd=True, native_kernels=True))
    finally:
        native_kernels.winograd_kernels.cache_clear()


def test_a_failing_compiler_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fakecc: cannot compile today' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("BOOST_DEPTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(fake))
    native_kernels.winograd_kernels.cache_clear()
    try:
        assert native_kernels.winograd_kernels() is None
        assert "cannot compile today" in native_kernels.unavailable_reason()
        assert not any((tmp_path / "cache").iterdir())  # no partial library left behind
    finally:
        native_kernels.winograd_kernels.cache_clear()


def test_upsampled_head_phases_by_winograd_match_the_original_head(kernels):
    from boost_core.speed import upsample_conv

    torch.manual_seed(8)
    conv = torch.nn.Conv2d(128, 32, 3, padding=1)
    fast = upsample_conv.UpsampledConv2d(conv, kernels)
    assert isinstance(fast.phase, winograd.WinogradConv2d) and fast.phase.kernels is kernels  # 128 -> 4 x 32
    assert isinstance(upsample_conv.UpsampledConv2d(conv).phase, torch.nn.Conv2d)  # without kernels: direct
    x = torch.randn(1, 128, 40, 36).contiguous(memory_format=torch.channels_last)  # 90 tiles
    up = torch.nn.functional.interpolate(x.double(), scale_factor=2, mode="bilinear", align_corners=False)
    expected = torch.nn.functional.conv2d(up, conv.weight.double(), conv.bias.double(), padding=1).detach()
    with torch.inference_mode():
        got = fast(x)
    assert fast.phase.transformed  # computed by Winograd
    assert float((got.double() - expected).abs().max()) < 3e-5 * float(expected.abs().max())
