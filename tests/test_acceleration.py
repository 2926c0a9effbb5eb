"""Optimised models and the batched schedule give the plain path's numbers (float32 rounding only)."""

import copy

import numpy as np
import pytest
import torch

from boost_core.speed import acceleration
from boost_core.algorithm import depth_networks
from boost_core.algorithm.depth_networks import MERGE_SIZE, DepthNetworks
from boost_core.algorithm.double_estimation import double_estimate, double_estimates
from boost_core.networks.layers import resnext

SIZE = 64  # px: small inputs keep this file fast


@pytest.fixture(scope="module")
def networks(checkpoints):
    return DepthNetworks.load("midas_v2", checkpoints("midas_v2"), checkpoints("merge_net"))


def _relative_max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.max() - b.min()))


def test_fold_batchnorm_keeps_a_resnext_output(networks):
    encoder = copy.deepcopy(networks.base_model.pretrained)
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = encoder.layer4(encoder.layer3(encoder.layer2(encoder.layer1(x))))
    folded = acceleration.fold_batchnorm(encoder)
    assert folded == batchnorms > 100  # every BatchNorm of ResNeXt-101 (stem, 33 blocks, 4 downsamples)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    with torch.inference_mode():
        got = encoder.layer4(encoder.layer3(encoder.layer2(encoder.layer1(x))))
    assert _relative_max_diff(got, expected) < 1e-4


def test_fold_batchnorm_refuses_training_mode():
    model = resnext.resnet50().train()
    with pytest.raises(ValueError, match="eval mode"):
        acceleration.fold_batchnorm(model)


def test_accelerated_midas_matches_plain(networks):
    plain = networks.base_model
    fast = acceleration.accelerate(copy.deepcopy(plain), acceleration.Acceleration())
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, got = plain(x), fast(x)
    assert got.shape == expected.shape and got.is_contiguous()
    assert _relative_max_diff(got, expected) < 1e-4


def test_precision_option_is_checked():
    with pytest.raises(ValueError, match="precision"):
        acceleration.Acceleration(precision="int8")
    assert acceleration.Acceleration().parity_safe
    assert not acceleration.Acceleration(precision="bf16").parity_safe
    with pytest.raises(ValueError, match="CUDA or MPS"):
        acceleration.autocast(acceleration.Acceleration(precision="fp16"), "cpu")


def test_batched_merge_matches_one_by_one(networks):
    rng = np.random.default_rng(3)
    size = MERGE_SIZE
    lows = [rng.random((size, size), dtype=np.float32) * 5 for _ in range(2)]
    highs = [cv_blur(rng.random((size, size)).astype(np.float32)) for _ in range(2)]
    one_by_one = [networks.merge(low, high) for low, high in zip(lows, highs)]
    batched = networks.merges(lows, highs, max_batch=2)
    for got, expected in zip(batched, one_by_one):
        assert got.dtype == np.float32 and got.shape == (size, size)
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


def cv_blur(x):
    import cv2

    return cv2.GaussianBlur(x, (9, 9), 3)


def test_batched_double_estimates_match_one_at_a_time(networks):
    rng = np.random.default_rng(4)
    patches = [cv_blur(rng.random((40, 40, 3))) for _ in range(2)]
    rf = 32  # small network sizes (32 and 64 px) instead of 384 / 768, same code path
    expected = [double_estimate(networks, rgb, rf, 2 * rf) for rgb in patches]
    got = double_estimates(networks, patches, rf, 2 * rf, max_batch=2)
    for ours, theirs in zip(got, expected):
        assert ours.shape == (MERGE_SIZE,) * 2
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_cpu_batches_pairs_except_the_high_resolution_base_inputs(networks, monkeypatch):
    forwards = []
    real_forward = DepthNetworks.forward

    def recording(nets, model, batch, kind):
        forwards.append((kind, tuple(batch.shape)))
        return real_forward(nets, model, batch, kind)

    monkeypatch.setattr(DepthNetworks, "forward", recording)
    monkeypatch.setattr(depth_networks, "CPU_MAX_BATCHED_BASE_PIXELS", 48 * 48)  # stands for 448²: 32² batched
    cpu_batch = depth_networks.default_max_batch(networks.device)
    assert networks.device == "cpu" and cpu_batch == depth_networks.CPU_MAX_BATCH == 2
    rng = np.random.default_rng(6)
    patches = [cv_blur(rng.random((40, 40, 3))) for _ in range(2)]
    double_estimates(networks, patches, 32, 64, max_batch=cpu_batch)
    assert [(kind, shape[0], shape[-1]) for kind, shape in forwards] == [
        ("base", 2, 32), ("base", 1, 64), ("base", 1, 64), ("merge", 2, MERGE_SIZE)]


def test_batch_size_respects_the_budget():
    assert depth_networks.batch_size("base", 768 * 768, memory_budget=1, max_batch=8) == 1
    assert depth_networks.batch_size("merge", 1024 * 1024, memory_budget=10**12, max_batch=3) == 3


def test_auto_layout_and_winograd_cover_midas_and_the_merge_net(networks):
    from boost_core.speed import upconv_gemm, upsample_conv, winograd, winograd_stride2

    options = acceleration.Acceleration()  # the defaults: channels-last and Winograd "auto"
    assert acceleration.wants_channels_last(networks.base_model, options)  # MiDaS v2: ResNeXt blocks, no ResNet
    assert acceleration.wants_channels_last(networks.merge_model, options)
    fast = acceleration.accelerate(copy.deepcopy(networks.base_model), options)
    compiled = acceleration.winograd_kernels(options) is not None  # a C compiler here: the head's phases too
    assert sum(isinstance(m, winograd.WinogradConv2d) for m in fast.modules()) == 21 + compiled  # + head's 128->128
    assert sum(isinstance(m, upsample_conv.UpsampledConv2d) for m in fast.modules()) == 1  # ... which has its phases
    merge = acceleration.accelerate(copy.deepcopy(networks.merge_model), options)
    assert not any(isinstance(m, winograd.WinogradConv2d) for m in merge.modules())  # no 3x3 convolution
    assert any(isinstance(m, winograd_stride2.WinogradStride2ConvTranspose2d) for m in merge.modules())
    assert sum(isinstance(m, upconv_gemm.GemmConvTranspose2d) for m in merge.modules()) == 1  # the last, 128 -> 1
    for off in (acceleration.PLAIN, acceleration.Acceleration(winograd=False)):
        model = acceleration.accelerate(copy.deepcopy(networks.base_model), off)
        assert not any(isinstance(m, winograd.WinogradConv2d) for m in model.modules())
    for off in (acceleration.PLAIN, acceleration.Acceleration(layer_rewrites=False)):
        model = acceleration.accelerate(copy.deepcopy(networks.merge_model), off)
        assert not any(isinstance(m, upconv_gemm.GemmConvTranspose2d) for m in model.modules())
        base = acceleration.accelerate(copy.deepcopy(networks.base_model), off)
        assert not any(isinstance(m, upsample_conv.UpsampledConv2d) for m in base.modules())
