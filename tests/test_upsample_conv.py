"""Bilinear x2 + 3x3 convolution as one four-phase convolution: the original operations' numbers."""

import copy

import pytest
import torch
import torch.nn.functional as F

from boost_core.speed import upsample_conv
from boost_core.networks.models import midas_v2


def upsampled_conv_float64(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(x.double(), scale_factor=2, mode="bilinear", align_corners=False)
    return F.conv2d(up, conv.weight.detach().double(), None if conv.bias is None else conv.bias.detach().double(),
                    padding=1)


@pytest.mark.parametrize("shape, out_channels, bias, channels_last", [
    ((1, 128, 20, 24), 32, True, True),  # MiDaS v2's head, smaller map
    ((2, 16, 7, 9), 8, False, False),  # batch 2, odd sizes, NCHW, no bias
    ((1, 8, 3, 3), 4, True, True),  # the smallest map: every output pixel is a border pixel
    ((1, 8, 2, 5), 4, True, False),  # too small for the phases: the original operations
])
def test_matches_upsampling_then_convolution(shape, out_channels, bias, channels_last):
    torch.manual_seed(sum(shape))
    conv = torch.nn.Conv2d(shape[1], out_channels, 3, padding=1, bias=bias)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = upsampled_conv_float64(conv, x)
    with torch.inference_mode():
        got = upsample_conv.UpsampledConv2d(conv)(x)
    assert got.shape == expected.shape == (shape[0], out_channels, 2 * shape[2], 2 * shape[3])
    assert float((got.double() - expected).abs().max() / expected.abs().max()) < 2e-6  # direct float32: ~1.5e-6


def test_replaces_the_midas_head_pair_only():
    torch.manual_seed(0)
    model = midas_v2.build().eval()
    head = copy.deepcopy(model.scratch.output_conv)
    assert upsample_conv.replace_pairs(model) == 1
    rewritten = model.scratch.output_conv
    assert type(rewritten[1]) is torch.nn.Identity and type(rewritten[2]) is upsample_conv.UpsampledConv2d
    assert upsample_conv.replace_pairs(model) == 0  # nothing left to rewrite
    x = torch.randn(1, 256, 12, 16)
    with torch.inference_mode():
        expected, got = head(x), rewritten(x)
    assert got.shape == expected.shape == (1, 1, 24, 32)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5
    assert not upsample_conv.qualifies(torch.nn.Conv2d(8, 8, 3, padding=1, stride=2))
    assert not upsample_conv.is_bilinear_x2(torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
    assert upsample_conv.is_bilinear_x2(torch.nn.Upsample(scale_factor=2, mode="bilinear"))
