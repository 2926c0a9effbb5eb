"""Winograd F(4x4, 2x2) for 4x4 stride-2 convolutions and up-convolutions: the direct layers' numbers."""

import copy

import pytest
import torch
import torch.nn.functional as F

from boost_core.speed import acceleration, winograd_stride2


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.detach()
    return float((got.detach().double() - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("transposed, shape, bias, channels_last", [
    (False, (2, 256, 30, 34), True, False),  # batch 2, sizes not multiples of 8 (tail tiles), NCHW input
    (False, (1, 256, 16, 16), False, True),  # channels-last input, no bias
    (True, (2, 512, 13, 18), True, True),  # odd sizes, tail tiles
    (True, (1, 512, 8, 8), False, False),
])
def test_matches_the_direct_layer(transposed, shape, bias, channels_last, monkeypatch):
    monkeypatch.setattr(winograd_stride2, "MIN_TILES", 0)  # F(4x4, 2x2) on every map
    torch.manual_seed(sum(shape))
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if transposed:
        layer = torch.nn.ConvTranspose2d(shape[1], 24, 4, stride=2, padding=1, bias=bias)
        fast = winograd_stride2.WinogradStride2ConvTranspose2d(layer)
        expected = F.conv_transpose2d(x.double(), layer.weight.double(), None if layer.bias is None else
                                      layer.bias.double(), stride=2, padding=1)
    else:
        layer = torch.nn.Conv2d(shape[1], 24, 4, stride=2, padding=1, bias=bias)
        fast = winograd_stride2.WinogradStride2Conv2d(layer)
        expected = F.conv2d(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double(),
                            stride=2, padding=1)
    with torch.inference_mode():
        got, direct = fast(x), layer(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert fast._valid is not None  # computed by Winograd, not handed to the direct layer
    assert relative_error(got, expected) < 3e-5  # float32 direct layer: ~2e-6
    assert relative_error(direct, expected) < 1e-5


def test_small_or_odd_maps_take_the_direct_layer():
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(256, 32, 4, stride=2, padding=1)
    up = torch.nn.ConvTranspose2d(512, 32, 4, stride=2, padding=1)
    fast_conv = winograd_stride2.WinogradStride2Conv2d(conv)
    fast_up = winograd_stride2.WinogradStride2ConvTranspose2d(up)
    assert fast_conv.uses_winograd(64, 64) and not fast_conv.uses_winograd(32, 32)  # 64 vs 16 output tiles
    assert not fast_conv.uses_winograd(65, 64)  # odd: the space-to-depth needs even sizes
    assert fast_up.uses_winograd(32, 32) and not fast_up.uses_winograd(16, 16)  # 81 vs 25 tiles
    x, y = torch.randn(1, 256, 32, 32), torch.randn(1, 512, 16, 16)
    with torch.inference_mode():
        assert torch.equal(fast_conv(x), conv(x)) and torch.equal(fast_up(y), up(y))  # the direct layers, bit for bit
    assert fast_conv._valid is None and fast_up._valid is None


def test_only_wide_4x4_stride2_layers_qualify():
    assert winograd_stride2.qualifies(torch.nn.Conv2d(256, 512, 4, stride=2, padding=1, bias=False))
    assert winograd_stride2.qualifies(torch.nn.ConvTranspose2d(1024, 256, 4, stride=2, padding=1, bias=False))
    narrow = (torch.nn.Conv2d(128, 256, 4, stride=2, padding=1), torch.nn.ConvTranspose2d(256, 64, 4, stride=2, padding=1))
    for layer in narrow:  # too few channels to gain with the torch form of the transforms, enough when compiled
        assert not winograd_stride2.qualifies(layer) and winograd_stride2.qualifies(layer, compiled=True), layer
    assert not winograd_stride2.qualifies(torch.nn.Conv2d(64, 128, 4, stride=2, padding=1), compiled=True)
    for layer in (*narrow,
                  torch.nn.Conv2d(256, 256, 3, stride=2, padding=1), torch.nn.Conv2d(256, 256, 4, stride=1, padding=1),
                  torch.nn.Conv2d(256, 256, 4, stride=2, padding=2),
                  torch.nn.Conv2d(256, 256, 4, stride=2, padding=1, groups=2),
                  torch.nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1, output_padding=1),
                  torch.nn.Conv2d(256, 256, 4, stride=2, padding=1, padding_mode="reflect")):
        assert not winograd_stride2.qualifies(layer), layer
    with pytest.raises(ValueError, match="4x4 stride-2 padding-1 convolution wide enough"):
        winograd_stride2.WinogradStride2Conv2d(torch.nn.Conv2d(64, 64, 4, stride=2, padding=1))


def test_merge_net_forward_is_unchanged(networks_merge):
    default = acceleration.accelerate(copy.deepcopy(networks_merge), acceleration.Acceleration())
    direct = acceleration.accelerate(copy.deepcopy(networks_merge), acceleration.Acceleration(winograd=False))
    kinds = (winograd_stride2.WinogradStride2Conv2d, winograd_stride2.WinogradStride2ConvTranspose2d)
    compiled = acceleration.winograd_kernels(acceleration.Acceleration()) is not None  # a C compiler is here
    # encoder 256->512 and the 512->512 below it (6), decoder up-convolutions with >= 512 inputs (9); with compiled
    # transforms also the encoder's 128->256 and the decoder's 256->64
    assert sum(isinstance(m, kinds) for m in default.modules()) == 15 + 2 * compiled
    assert not any(isinstance(m, kinds) for m in direct.modules())
    x = torch.rand(1, 2, 1024, 1024, generator=torch.Generator().manual_seed(5)) * 2 - 1  # its only size
    with torch.inference_mode():
        expected, got = direct(x), default(x)
    used = [m for m in default.modules() if isinstance(m, kinds) and m._valid is not None]
    # down 256->512 at 128², 512->512 at 64²; up 1024->512 at 32², 1024->256, 512->128 (+ 128->256, 256->64)
    assert len(used) == 5 + 2 * compiled
    assert float((got - expected).abs().max() / (expected.max() - expected.min())) < 1e-5


@pytest.fixture(scope="module")
def networks_merge(checkpoints):
    from boost_core.networks import registry

    return registry.load_merge_net(checkpoints("merge_net"), "cpu")
