"""MiDaS 3.0 / 3.1 DPT models (DPT-Hybrid, DPT-Large, BEiT-L 512) as base networks.

* key layout: the manifests in tests/data/manifests/dpt_*.json list the state_dict of MiDaS 3.1's
  DPTDepthModel on timm 0.6.12 (the version MiDaS pins); their tensor bytes are checked against the
  official files' sizes in the weights registry;
* numerics: goldens ``<image>_<net>_single`` were computed by a scratch harness running timm 0.6.12's own
  backbones with MiDaS 3.1's DPT code (run.py's single pass) on the synthetic seed-0 weights of the
  manifests (see each JSON's ``provenance``);
* strict loading, and forwards at boosting sizes.

The large models' synthetic weights are 1.4-1.6 GB: their golden tests are marked slow.
"""

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

import synthetic_weights as sw
from boost_core.weights import catalogue as weights
from boost_core.networks import estimate, registry
from boost_core.networks.models import midas_dpt
from boost_core.networks.layers import vit_blocks
from boost_core.networks.checkpoint import CheckpointError, load_strict
from paths import DATA
from golden import GOLDEN, assert_matches, photo

NETS = ["dpt_hybrid_384", "dpt_large_384", "dpt_beit_large_512"]


def _manifest(name):
    return json.loads((DATA / "manifests" / f"{name}.json").read_text())


def _state_dict(name, seed=0):
    """The synthetic weights of the manifest (same generator as tests/synthetic_weights.py)."""
    return OrderedDict((key, torch.from_numpy(sw.make_array(key, tuple(shape), dtype, rule, seed)))
                       for key, shape, dtype, rule in _manifest(name)["tensors"])


def _model(name, state_dict):
    with torch.device("meta"):
        model = midas_dpt.build(name)
    load_strict(model, state_dict, f"<synthetic {name}>", name, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def hybrid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dpt") / "dpt_hybrid_384.pt"
    torch.save(_state_dict("dpt_hybrid_384"), path)
    return path


@pytest.fixture(scope="module")
def hybrid(hybrid_file):
    return registry.load_base(registry.get("dpt_hybrid_384"), hybrid_file)


@pytest.mark.parametrize("name", NETS)
def test_state_dict_layout_is_the_official_one(name):
    with torch.device("meta"):
        model = midas_dpt.build(name)
    ours = [[k, list(t.shape), str(t.dtype).removeprefix("torch.")] for k, t in model.state_dict().items()]
    assert ours == [entry[:3] for entry in _manifest(name)["tensors"]]


@pytest.mark.parametrize("name", NETS)
def test_tensor_bytes_fit_the_official_file_size(name):
    """The official file is the tensors plus ~400 bytes of zip/pickle overhead per entry: a missing or extra
    tensor (the 4 MB classifier head, BEiT's 8 MB index buffers) would not fit."""
    tensors = _manifest(name)["tensors"]
    tensor_bytes = sum(math.prod(shape) * (8 if dtype == "int64" else 4) for _, shape, dtype, _ in tensors)
    overhead = weights.REGISTRY[name].size - tensor_bytes
    assert 0 < overhead < 600 * len(tensors)


@pytest.mark.parametrize("name", NETS)
def test_registry_entry(name):
    net = registry.get(name)
    assert net.weights == (name,) and net.licence == "MIT" and net.output_kind == "inverse_depth"
    assert net.receptive_field == net.single_size == (512 if "512" in name else 384)
    assert net.single_preparation.resize == "keep_aspect_minimal"
    assert net.input.resize == "keep_aspect_upper_bound"
    assert net.input.mean == net.input.std == (0.5, 0.5, 0.5)


def test_minimal_resize_rule():
    """MiDaS 3.x "minimal": the scale closer to 1 wins; multiples of 32, round half to even, no bound."""
    net = registry.get("dpt_large_384")
    prep, size = net.single_preparation, net.single_size
    assert estimate.input_size(net, (400, 600), size, prep) == (384, 576)  # 0.96 beats 0.64: shorter side 384
    assert estimate.input_size(net, (2000, 3000), size, prep) == (384, 576)  # 0.192 beats 0.128
    # chelsea: 384/451 = 0.851 is closer to 1 than 384/300 = 1.28, so the *longer* side becomes 384
    assert estimate.input_size(net, (300, 451), size, prep) == (256, 384)
    assert estimate.input_size(net, (200, 1000), size, prep) == (64, 384)  # 76.8/32 = 2.4 -> 2
    assert estimate.input_size(net, (200, 300), 512, prep) == (352, 512)  # 341.3/32 = 10.67 -> 11


def _golden(image, name):
    stem = f"{image}_{name}_single"
    return json.loads((GOLDEN / f"{stem}.json").read_text()), np.load(GOLDEN / f"{stem}.npz")["final"]


def _check_single_pass(image, name, model):
    meta, reference = _golden(image, name)
    assert meta["weights"]["sha256_of_state_dict"] == _manifest(name)["header"]["sha256_seed0"]
    net = registry.get(name)
    x = estimate.prepare_input(net, photo(image), net.single_size, net.single_preparation)
    assert list(x.shape) == meta["net_input_shape"]
    ours = estimate.single_pass(net, model, photo(image))
    assert ours.shape == tuple(meta["image_shape"]) and ours.dtype == np.float32
    assert_matches(ours, reference)
    assert np.abs(ours.astype(np.float64) - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("image", ["coffee", "chelsea"])
def test_hybrid_single_pass_matches_midas(image, hybrid):
    _check_single_pass(image, "dpt_hybrid_384", hybrid)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpt_large_384", "dpt_beit_large_512"])
def test_large_single_pass_matches_midas(name):
    state_dict = _state_dict(name)
    assert sw.digest(state_dict) == _manifest(name)["header"]["sha256_seed0"]
    model = _model(name, state_dict)
    for image in ("coffee", "chelsea"):
        _check_single_pass(image, name, model)


def test_synthetic_weights_match_the_manifest_digest():
    state_dict = _state_dict("dpt_hybrid_384")
    assert sw.digest(state_dict) == _manifest("dpt_hybrid_384")["header"]["sha256_seed0"]


def test_boosting_size_forward(hybrid):
    """The R search's sizes bound the longer side (multiples of 32); the map comes back at the image size."""
    net = registry.get("dpt_hybrid_384")
    chelsea = photo("chelsea")
    assert estimate.input_size(net, chelsea.shape[:2], 700) == (480, 672)
    assert estimate.input_size(net, chelsea.shape[:2], 3000) == (1056, 1568)  # the 1568 clamp
    out = estimate.single_estimate(net, hybrid, chelsea, 700)
    assert out.shape == chelsea.shape[:2] and np.isfinite(out).all() and out.min() == 0 and out.max() == 1


def test_beit_relative_position_index():
    """Against the definition: cls row/column/corner use the 3 extra entries, patches the offset pair."""
    ph, pw = 3, 4
    index = midas_dpt.gen_relative_position_index(ph, pw)
    n = (2 * ph - 1) * (2 * pw - 1)
    expected = np.zeros((1 + ph * pw, 1 + ph * pw), np.int64)
    for i in range(1 + ph * pw):
        for j in range(1 + ph * pw):
            if i == 0 and j == 0:
                expected[i, j] = n + 2
            elif i == 0:
                expected[i, j] = n
            elif j == 0:
                expected[i, j] = n + 1
            else:
                (hi, wi), (hj, wj) = divmod(i - 1, pw), divmod(j - 1, pw)
                expected[i, j] = (hi - hj + ph - 1) * (2 * pw - 1) + (wi - wj + pw - 1)
    assert np.array_equal(index.numpy(), expected)


def test_beit_chunked_attention_equals_unchunked(monkeypatch):
    torch.manual_seed(0)
    attention = midas_dpt.BeitAttention(64, 4, grid=6).eval()
    with torch.no_grad():
        for p in attention.parameters():
            p.normal_(0, 0.2)
        tokens = torch.randn(1, 1 + 5 * 7, 64)
        whole = attention(tokens, 5, 7)
        monkeypatch.setattr(vit_blocks, "ATTENTION_CHUNK_ELEMENTS", 4 * 36 * 5)  # 5 query rows per chunk
        chunked = attention(tokens, 5, 7)
    assert torch.allclose(whole, chunked, rtol=0, atol=1e-6)


def test_strict_load_names_the_problem(hybrid_file, tmp_path):
    with pytest.raises(CheckpointError, match="--net dpt_large_384"):
        registry.load_base(registry.get("dpt_large_384"), hybrid_file)
    state_dict = torch.load(hybrid_file, weights_only=True)
    del state_dict["pretrained.model.head.weight"]  # unused classifier, but part of the official file
    path = tmp_path / "no_head.pt"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError, match=r"missing key.*pretrained\.model\.head\.weight"):
        registry.load_base(registry.get("dpt_hybrid_384"), path)


def test_midas_optimizer_wrapper_is_accepted(hybrid_file, tmp_path):
    """MiDaS's loader also takes {'model': state_dict, 'optimizer': ...}."""
    path = tmp_path / "wrapped.pt"
    state_dict = torch.load(hybrid_file, weights_only=True)
    torch.save({"model": state_dict, "optimizer": {"lr": torch.tensor(1.0)}}, path)
    model = registry.load_base(registry.get("dpt_hybrid_384"), path)
    assert isinstance(model, midas_dpt.DPTDepthModel)


def test_unknown_variant():
    with pytest.raises(ValueError, match="known: dpt_hybrid_384"):
        midas_dpt.build("dpt_swin2_large_384")


def test_r20_runs_with_the_merge_net(hybrid_file, checkpoints):
    import cv2

    from boost_core.algorithm import pipeline

    small = cv2.resize(photo("chelsea"), (225, 150), interpolation=cv2.INTER_AREA)  # cv2 takes (W, H)
    networks = pipeline.load_networks("dpt_hybrid_384", hybrid_file, checkpoints("merge_net"))
    result = pipeline.boost(small, "dpt_hybrid_384", "r20", networks=networks)
    assert result.R in (384, 576) and result.kind == "inverse_depth"
    assert result.depth.shape == (150, 225) and np.isfinite(result.depth).all() and result.depth.std() > 0
    assert networks.calls == {"base": 2, "merge": 1}


@pytest.mark.slow
def test_final_boosts_patches_with_a_dpt_network(hybrid_file, checkpoints):
    """Final with the MiDaS 3.x family: the 150x225 image capped at 1200 px gives an 800x1200 target, where the
    768-px grid (2·RF) fits; kept patches are double-estimated at 384/768 and merged."""
    import cv2

    from boost_core.algorithm import pipeline

    small = cv2.resize(photo("chelsea"), (225, 150), interpolation=cv2.INTER_AREA)  # cv2 takes (W, H)
    networks = pipeline.load_networks("dpt_hybrid_384", hybrid_file, checkpoints("merge_net"))
    result = pipeline.boost(small, "dpt_hybrid_384", "final", 1200, networks=networks)
    assert result.target_shape == (800, 1200) and result.boosted and result.patches
    assert all(p.rect[2] >= 768 for p in result.patches)
    assert networks.calls == {"base": 2 + 2 * len(result.patches), "merge": 1 + 2 * len(result.patches)}
    assert result.depth.shape == (150, 225) and np.isfinite(result.depth).all()
