"""Narrow 4x4 stride-2 up-convolutions as a GEMM and an overlap-add: the direct layer's numbers."""

import pytest
import torch
import torch.nn.functional as F

from boost_core.speed import upconv_gemm


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.detach().double() - expected.detach()).abs().max() / expected.detach().abs().max())


@pytest.mark.parametrize("shape, out_channels, bias, channels_last", [
    ((1, 128, 32, 40), 1, True, True),  # the merge net's last layer (smaller map)
    ((2, 16, 7, 5), 3, False, False),  # batch 2, odd sizes, NCHW input, no bias
    ((1, 8, 1, 1), 4, True, True),  # a single pixel: every tap but the centre four falls outside
])
def test_matches_the_transposed_convolution(shape, out_channels, bias, channels_last):
    torch.manual_seed(sum(shape) + out_channels)
    layer = torch.nn.ConvTranspose2d(shape[1], out_channels, 4, stride=2, padding=1, bias=bias)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = F.conv_transpose2d(x.double(), layer.weight.double(),
                                  None if layer.bias is None else layer.bias.double(), stride=2, padding=1)
    with torch.inference_mode():
        got, direct = upconv_gemm.GemmConvTranspose2d(layer)(x), layer(x)
    assert got.shape == expected.shape == (shape[0], out_channels, 2 * shape[2], 2 * shape[3])
    assert relative_error(got, expected) < 1e-6
    assert relative_error(direct, expected) < 1e-6


def test_only_narrow_4x4_stride2_up_convolutions_qualify():
    assert upconv_gemm.qualifies(torch.nn.ConvTranspose2d(128, 1, 4, stride=2, padding=1))
    assert not upconv_gemm.qualifies(torch.nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1))  # wide: oneDNN
    assert not upconv_gemm.qualifies(torch.nn.ConvTranspose2d(128, 1, 3, stride=2, padding=1))
    assert not upconv_gemm.qualifies(torch.nn.ConvTranspose2d(128, 1, 4, stride=2, padding=1, output_padding=1))
    assert not upconv_gemm.qualifies(torch.nn.Conv2d(128, 1, 4, stride=2, padding=1))
    with pytest.raises(ValueError, match="4x4 stride-2"):
        upconv_gemm.GemmConvTranspose2d(torch.nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1))
