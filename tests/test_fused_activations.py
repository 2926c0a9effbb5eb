"""ReLUs and residual sums as oneDNN post-ops (boost_core.speed.fused_activations) give the blocks' own numbers.

The expectations are the unfused modules' outputs (torch's own convolution, ReLU and add) on the same weights.
"""

import copy

import pytest
import torch
from torch import nn

from boost_core.speed import acceleration, fused_activations
from boost_core.networks.layers import resnext

# torch's CPU wheels (the project's pinned torch included) have oneDNN: its absence would be a broken install
pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _random_statistics(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (a fresh BatchNorm folds to the identity)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def _folded_resnet50(memory_format=torch.channels_last) -> nn.Module:
    model = _random_statistics(resnext.resnet50(), seed=3)
    acceleration.fold_batchnorm(model)
    return model.to(memory_format=memory_format)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_every_folded_bottleneck_is_swapped_and_the_stage_outputs_stay(monkeypatch):
    """All 16 bottlenecks of ResNet-50 fused; the four stage outputs (each read again by a decoder) unchanged,
    so no block overwrote a map someone else still reads."""
    plain = _folded_resnet50()
    fused = copy.deepcopy(plain)
    assert fused_activations.replace_blocks(fused) == 16
    sums = []  # the post-op path really runs (its fallback would give the same numbers)
    real_sum = fused_activations.conv_add_relu_
    monkeypatch.setattr(fused_activations, "conv_add_relu_", lambda *args: sums.append(1) or real_sum(*args))
    assert sum(isinstance(m, fused_activations.FusedBottleneck) for m in fused.modules()) == 16
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = plain(x.clone()), fused(x.clone())
    assert len(got) == 4 and len(sums) == 16
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.is_contiguous(memory_format=torch.channels_last)
        assert _relative(g, e) < 1e-6
        assert float(g.min()) >= 0  # every stage ends with the sum's ReLU


def test_a_grouped_block_and_one_with_a_downsample():
    """ResNeXt's grouped 3x3 (kept as a separate ReLU) and a strided first block with its downsample."""
    generator = torch.Generator().manual_seed(5)
    downsample = nn.Sequential(nn.Conv2d(64, 256, 1, stride=2, bias=False), nn.BatchNorm2d(256))
    first = _random_statistics(resnext.Bottleneck(64, 64, stride=2, downsample=downsample, groups=32,
                                                  base_width=8), seed=6)
    later = _random_statistics(resnext.Bottleneck(256, 64, groups=32, base_width=8), seed=7)
    for block in (first, later):
        acceleration.fold_batchnorm(nn.Sequential(block).eval())
    plain = nn.Sequential(first, later).to(memory_format=torch.channels_last)
    fused = copy.deepcopy(plain)
    assert fused_activations.replace_blocks(fused) == 2
    x = torch.randn(1, 64, 40, 56, generator=generator).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = plain(x.clone()), fused(x.clone())
    assert got.shape == (1, 256, 20, 28)
    assert _relative(got, expected) < 1e-6


def test_the_post_ops_alone():
    generator = torch.Generator().manual_seed(8)
    conv = nn.Conv2d(32, 48, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 32, 17, 23, generator=generator).contiguous(memory_format=torch.channels_last)
    other = torch.randn(1, 48, 17, 23, generator=generator).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        y = conv(x)
        assert _relative(fused_activations.conv_relu(conv, x), torch.relu(y)) < 1e-6
        target = other.clone()
        result = fused_activations.conv_add_relu_(conv, x, target)
        assert result.data_ptr() == target.data_ptr()  # in place
        assert _relative(result, torch.relu(y + other)) < 1e-6


def test_unfusable_inputs_run_the_block_as_written():
    """NCHW maps and autocast take the original forward (same result as the block itself)."""
    plain = _folded_resnet50(torch.contiguous_format)  # NCHW weights keep the maps NCHW
    fused = copy.deepcopy(plain)
    fused_activations.replace_blocks(fused)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))  # NCHW
    with torch.inference_mode():
        assert torch.equal(fused(x)[3], plain(x)[3])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(fused(x)[3], plain(x)[3])


def test_unfolded_blocks_are_left_alone():
    model = resnext.resnet50().eval()  # BatchNorms still there: the ReLU does not follow the convolution
    assert fused_activations.replace_blocks(model) == 0


def test_the_default_acceleration_fuses_midas_v2s_encoder(checkpoints):
    from boost_core.algorithm.depth_networks import DepthNetworks

    networks = DepthNetworks.load("midas_v2", checkpoints("midas_v2"), checkpoints("merge_net"))
    plain = networks.base_model
    fast = acceleration.accelerate(copy.deepcopy(plain), acceleration.Acceleration())
    assert sum(isinstance(m, fused_activations.FusedBottleneck) for m in fast.modules()) == 33  # 3 + 4 + 23 + 3
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(10))
    with torch.inference_mode():
        expected, got = plain(x), fast(x)
    assert float((got - expected).abs().max() / (expected.max() - expected.min())) < 1e-4
