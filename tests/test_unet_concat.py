"""The merge net with its skip concatenations written in place (boost_core.speed.unet_concat) gives the same bits.

Expectations: the same accelerated merge net run level by level (torch.cat, then the parent's ReLU) on the same
input, and the plain network as loaded (float32 rounding of the Winograd layers only).
"""

import copy

import pytest
import torch

from boost_core.algorithm.depth_networks import MERGE_SIZE
from boost_core.networks import registry
from boost_core.speed import acceleration, unet_concat, winograd_stride2
from boost_core.speed.kernels import compiled


def _merge_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.family(registry.MERGE_NET_MODULE).build().eval()


def _accelerated(generator: torch.nn.Module, in_place: bool, monkeypatch) -> torch.nn.Module:
    if not in_place:
        monkeypatch.setattr(unet_concat, "concat_free", lambda model: model)
    model = acceleration.accelerate(copy.deepcopy(generator), acceleration.Acceleration())
    monkeypatch.undo()
    return model


def test_the_in_place_concatenations_give_the_same_bits(monkeypatch):
    generator = _merge_net()
    level_by_level = _accelerated(generator, False, monkeypatch)
    in_place = _accelerated(generator, True, monkeypatch)
    levels = []  # the in-place path really runs (its fallback would give the same bits)
    real_level = unet_concat.rectified_level
    monkeypatch.setattr(unet_concat, "rectified_level", lambda block, x: levels.append(x.shape) or real_level(block, x))
    assert isinstance(in_place.model, unet_concat.ConcatFreeUnet)
    assert not any(isinstance(m, unet_concat.ConcatFreeUnet) for m in level_by_level.modules())
    if compiled.winograd_kernels() is not None:  # the up-convolutions that write into the concatenation directly
        ups = [m for m in in_place.modules() if isinstance(m, winograd_stride2.WinogradStride2ConvTranspose2d)]
        assert len(ups) >= 3
    x = torch.rand(1, 2, MERGE_SIZE, MERGE_SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        expected, got = level_by_level(x.clone()), in_place(x.clone())
        plain = generator(x.clone())
    assert got.shape == (1, 1, MERGE_SIZE, MERGE_SIZE) and got.is_contiguous()
    assert len(levels) == 9  # every inner level of the 10-down U-Net
    assert torch.equal(got, expected)
    assert float((got - plain).abs().max()) < 1e-4  # and the network as loaded, to float32 rounding


def test_an_up_convolution_writes_straight_into_a_channel_slice():
    """forward_into on the compiled path fills every pixel and channel of the slice and only those."""
    if compiled.winograd_kernels() is None:
        pytest.fail(f"no compiled Winograd transforms: {compiled.unavailable_reason()} (CI has a C compiler)")
    torch.manual_seed(4)
    layer = torch.nn.ConvTranspose2d(256, 64, 4, stride=2, padding=1, bias=False).eval()
    up = winograd_stride2.WinogradStride2ConvTranspose2d(layer, compiled.winograd_kernels())
    x = torch.randn(1, 256, 40, 36).contiguous(memory_format=torch.channels_last)
    assert up.uses_winograd(40, 36)
    buffer = torch.full((1, 80, 72, 64 + 64), float("nan")).permute(0, 3, 1, 2)  # NHWC memory, NCHW view
    with torch.inference_mode():
        up.forward_into(x, buffer[:, 64:])
        expected = layer(x)
    assert torch.isnan(buffer[:, :64]).all()  # the other half untouched
    assert not torch.isnan(buffer[:, 64:]).any()
    assert float((buffer[:, 64:] - expected).abs().max() / expected.abs().max()) < 1e-5


def test_one_level_equals_cat_then_relu():
    """rectified_level(block, x) == relu(block(x)) for an inner block, and x ends as leaky_relu(x) either way."""
    generator = _merge_net()
    acceleration.fold_batchnorm(generator)
    inner = generator.model.model[1].model[3].model[3].model[3]  # the level at 1/16 of the input
    x = torch.randn(1, 512, 64, 64, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        a, b = x.clone(), x.clone()
        expected = torch.relu(inner(a))
        got = unet_concat.rectified_level(inner, b)
    assert got.shape == expected.shape == (1, 1024, 64, 64)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, expected)
    assert torch.equal(a, b)


def test_other_inputs_run_the_generator_as_written():
    generator = _merge_net()
    wrapped = unet_concat.ConcatFreeUnet(copy.deepcopy(generator))
    x = torch.rand(1, 2, MERGE_SIZE, MERGE_SIZE, generator=torch.Generator().manual_seed(3))  # NCHW: the generator's own forward
    with torch.inference_mode():
        assert torch.equal(wrapped(x.clone()), generator(x.clone()))
