"""Depth Anything V2 as a base network: official key layout, strict loading, the official single pass
(goldens of DepthAnything/Depth-Anything-V2@a561b84 ``infer_image(raw, 518)`` with the synthetic seed-0
weights) and forwards at the sizes boosting asks for."""

import json

import cv2
import numpy as np
import pytest
import torch

from boost_core.networks.models import depth_anything_v2
from boost_core.networks.layers import vit_blocks
from boost_core.networks import estimate, registry
from boost_core.networks.checkpoint import CheckpointError
from paths import DATA
from golden import GOLDEN, assert_matches, photo

#: registry name -> (synthetic checkpoint / manifest name, golden suffix)
NETS = {
    "depth_anything_v2_small": ("depth_anything_v2_vits", "dav2s"),
    "depth_anything_v2_base": ("depth_anything_v2_vitb", "dav2b"),
}
CASES = [(image, net) for net in NETS for image in ("coffee", "chelsea")]


@pytest.fixture(scope="module")
def models(checkpoints):
    """Registry name -> loaded model (synthetic seed-0 weights, strict load through the registry)."""
    loaded = {}

    def get(name):
        if name not in loaded:
            loaded[name] = registry.load_base(registry.get(name), checkpoints(NETS[name][0]))
        return loaded[name]

    return get


def _manifest(stem):
    return json.loads((DATA / "manifests" / f"{stem}.json").read_text())


def _golden(image, name):
    stem = f"{image}_{NETS[name][1]}_single"
    return json.loads((GOLDEN / f"{stem}.json").read_text()), np.load(GOLDEN / f"{stem}.npz")["final"]


@pytest.mark.parametrize("name", list(NETS))
def test_state_dict_layout_is_the_official_one(name):
    """Same keys, same order, same shapes as the official checkpoint (manifest), parameter count included."""
    manifest = _manifest(NETS[name][0])
    with torch.device("meta"):
        model = depth_anything_v2.build(registry.get(name).variant)
    ours = [(k, list(t.shape)) for k, t in model.state_dict().items()]
    assert ours == [(k, shape) for k, shape, *_ in manifest["tensors"]]
    assert sum(t.numel() for t in model.parameters()) == manifest["header"]["n_trainable_params"]


def test_large_has_the_published_size():
    """Depth Anything V2 Large: 335.3M parameters (official README), 24 blocks; DPT reads 4/11/17/23."""
    with torch.device("meta"):
        model = depth_anything_v2.build("large")
    assert round(sum(t.numel() for t in model.parameters()) / 1e5) == 3353
    assert len(model.pretrained.blocks) == 24
    assert model.pretrained.config.intermediate_layers == (4, 11, 17, 23)


def test_registry_entries():
    for variant, licence in (("small", "Apache-2.0"), ("base", "CC-BY-NC-4.0"), ("large", "CC-BY-NC-4.0")):
        net = registry.get(f"depth_anything_v2_{variant}")
        assert net.output_kind == "inverse_depth"
        assert net.weights == (f"depth_anything_v2_{variant}",)
        assert net.licence.startswith(licence)
        assert net.single_size == 518
        # every size the R search can give (RF + k*RF/2) and the patch size 2*RF are multiples of 14
        assert net.receptive_field % 14 == 0 and (net.receptive_field // 2) % 14 == 0
        assert net.max_size % 14 == 0


@pytest.mark.parametrize("image, name", CASES)
def test_net_input_is_the_official_one(image, name):
    """Shorter side 518, round-half-even to multiples of 14 (coffee: 777/14 = 55.5 -> 56), values as traced"""
    meta, _ = _golden(image, name)
    net = registry.get(name)
    x = estimate.prepare_input(net, photo(image), net.single_size, net.single_preparation)
    assert list(x.shape) == meta["net_input_shape"]
    assert x.dtype == torch.float32
    stats = meta["net_input_stats"]
    assert x.min().item() == pytest.approx(stats["min"], abs=1e-6)
    assert x.max().item() == pytest.approx(stats["max"], abs=1e-6)
    assert x.mean().item() == pytest.approx(stats["mean"], abs=1e-6)


def test_lower_bound_rule_examples():
    """The manifest header's examples: the shorter side becomes 518, also for portrait images."""
    net = registry.get("depth_anything_v2_small")
    size = net.single_size
    prep = net.single_preparation
    assert estimate.input_size(net, (400, 600), size, prep) == (518, 784)
    assert estimate.input_size(net, (427, 640), size, prep) == (518, 770)
    assert estimate.input_size(net, (600, 400), size, prep) == (784, 518)
    assert estimate.input_size(net, (1000, 1000), size, prep) == (518, 518)


@pytest.mark.parametrize("image, name", CASES)
def test_single_pass_matches_the_official_infer_image(image, name, models):
    meta, reference = _golden(image, name)
    net = registry.get(name)
    ours = estimate.single_pass(net, models(name), photo(image))
    assert ours.dtype == np.float32 and ours.shape == tuple(meta["image_shape"])
    assert_matches(ours, reference)  # the README rule, min-max normalised
    # the same raw map too (not normalised: relative inverse depth), to float32 noise
    assert np.abs(ours.astype(np.float64) - reference).max() <= 1e-6


def test_boosting_sizes_bound_the_longer_side(models):
    """R search sizes fix the longer side (as MiDaS in the reference); output at the image size, in [0, 1]"""
    net = registry.get("depth_anything_v2_small")
    model = models(net.name)
    coffee = photo("coffee")
    assert estimate.input_size(net, coffee.shape[:2], 448) == (294, 448)
    assert estimate.input_size(net, coffee.shape[:2], 700) == (462, 700)
    assert estimate.input_size(net, coffee.shape[:2], 3000) == (1050, 1568)  # the 1568 clamp
    assert estimate.input_size(net, (896, 896), 896) == (896, 896)  # a patch at 2*RF
    out = estimate.single_estimate(net, model, coffee, 700)
    assert out.shape == coffee.shape[:2] and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() == 0 and out.max() == 1
    # a near-neighbour of the native pass: the same function of the image at another resolution
    native = estimate.single_pass(net, model, coffee)
    assert np.corrcoef(out.ravel(), native.ravel())[0, 1] > 0.9


def test_elongated_image_forward(models):
    """A 30x600 strip gives a 2x32 patch grid: pos_embed, DPT strides and the resize back still work."""
    net = registry.get("depth_anything_v2_small")
    strip = cv2.resize(photo("chelsea"), (600, 30), interpolation=cv2.INTER_AREA)  # cv2 takes (W, H)
    assert estimate.input_size(net, strip.shape[:2], 448) == (28, 448)
    out = estimate.single_estimate(net, models(net.name), strip, 448)
    assert out.shape == (30, 600) and np.isfinite(out).all()


def test_chunked_attention_equals_the_plain_one(monkeypatch):
    torch.manual_seed(0)
    attention = vit_blocks.SelfAttention(384, 6, scale_first=True).eval()  # as DINOv2 runs it
    tokens = torch.randn(1, 1 + 37 * 20, 384)
    with torch.inference_mode():
        plain = attention(tokens)
        monkeypatch.setattr(vit_blocks, "ATTENTION_CHUNK_ELEMENTS", 6 * 741 * 50)  # 50 query rows per chunk
        chunked = attention(tokens)
    assert torch.allclose(plain, chunked, rtol=0, atol=1e-6)


def test_pos_embed_unchanged_for_the_square_training_size(models):
    encoder = models("depth_anything_v2_small").pretrained
    table = encoder.pos_embed
    assert encoder.interpolated_pos_embed(518, 518, 1 + 37 * 37) is table
    # 518 x 532: one more column -> the table is resampled (bicubic, scale ((37+0.1)/37, (38+0.1)/37))
    resampled = encoder.interpolated_pos_embed(518, 532, 1 + 37 * 38)
    assert resampled.shape == (1, 1 + 37 * 38, 384)
    assert torch.equal(resampled[:, 0], table[:, 0])


def _save(state_dict, path):
    torch.save(state_dict, path)
    return path


def test_strict_load_rejects_the_wrong_variant(checkpoints):
    net = registry.get("depth_anything_v2_base")
    with pytest.raises(CheckpointError) as error:
        registry.load_base(net, checkpoints("depth_anything_v2_vits"))
    message = str(error.value)
    assert "shape mismatch" in message and "--net depth_anything_v2_base" in message
    assert "depth_anything_v2_vits.pth" in message


def test_strict_load_names_a_missing_key(checkpoints, tmp_path):
    state_dict = torch.load(checkpoints("depth_anything_v2_vits"), weights_only=True)
    del state_dict["pretrained.mask_token"]  # unused at inference, but part of the official file
    path = _save(state_dict, tmp_path / "no_mask_token.pth")
    with pytest.raises(CheckpointError, match=r"missing key.*pretrained\.mask_token"):
        registry.load_base(registry.get("depth_anything_v2_small"), path)


def test_strict_load_names_an_unexpected_key(checkpoints, tmp_path):
    state_dict = torch.load(checkpoints("depth_anything_v2_vits"), weights_only=True)
    state_dict["depth_head.scratch.output_conv2.4.weight"] = torch.zeros(1)
    path = _save(state_dict, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected.*output_conv2\.4\.weight"):
        registry.load_base(registry.get("depth_anything_v2_small"), path)


def test_strict_load_rejects_another_network(checkpoints):
    with pytest.raises(CheckpointError, match="missing key"):
        registry.load_base(registry.get("depth_anything_v2_small"), checkpoints("midas_v2"))


def test_unknown_variant():
    with pytest.raises(ValueError, match="known: small, base, large"):
        depth_anything_v2.build("huge")


def _small_chelsea():
    return cv2.resize(photo("chelsea"), (225, 150), interpolation=cv2.INTER_AREA)  # cv2 takes (W, H)


@pytest.fixture(scope="module")
def small_networks(checkpoints):
    from boost_core.algorithm import pipeline

    return pipeline.load_networks("depth_anything_v2_small", checkpoints("depth_anything_v2_vits"),
                                  checkpoints("merge_net"))


def test_r20_runs_with_the_merge_net(small_networks):
    from boost_core.algorithm import pipeline

    result = pipeline.boost(_small_chelsea(), "depth_anything_v2_small", "r20", networks=small_networks)
    assert result.R == 448 and result.kind == "inverse_depth"
    assert result.depth.shape == (150, 225) and np.isfinite(result.depth).all()
    assert result.depth.std() > 0


@pytest.mark.slow
def test_final_boosts_patches(small_networks):
    """Final on a 150x225 image capped at 1600 px: three 896-px patches (2*RF), each double-estimated."""
    from boost_core.algorithm import pipeline

    result = pipeline.boost(_small_chelsea(), "depth_anything_v2_small", "final", 1600,
                            networks=small_networks)
    assert result.boosted and [p.rect[2:] for p in result.patches] == [(896, 896)] * 3
    assert result.depth.shape == (150, 225) and np.isfinite(result.depth).all()
