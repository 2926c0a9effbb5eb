"""Resolution search, factor, target size and patch list are image-only: they must match the reference exactly."""

import math

import pytest

from boost_core.algorithm import patches, resolution
from golden import case, photo

CASES = ["coffee_midas_R0", "coffee_midas_R20", "coffee_midas_Final", "coffee_leres_R20",
         "chelsea_midas_Final_mr2000", "coffee_sgr_R20", "chelsea_sgr_Final_mr2000"]


@pytest.mark.parametrize("name", CASES)
def test_resolution_and_patches_match_reference(name):
    meta = case(name)
    rgb = photo(meta["image"])
    confidence = resolution.R0_CONFIDENCE if meta["mode_name"] == "r0" else resolution.R20_CONFIDENCE
    choice = resolution.search_resolution(rgb, meta["receptive_field"], confidence)
    assert choice.R == meta["R_x"]
    assert choice.patch_scale == pytest.approx(meta["patch_scale"], rel=1e-12)
    if meta["mode_name"] != "final":
        return
    factor = patches.boost_factor(choice.patch_scale, choice.R)
    assert factor == pytest.approx(meta["factor"], rel=1e-12)
    max_res = meta["max_res_value"] or math.inf
    shape = patches.target_shape(rgb.shape[:2], choice.R, factor, max_res)
    assert list(shape) == meta["target_shape"]
    selected = patches.select_patches(patches.upsample_image(rgb, shape), meta["receptive_field"], factor)
    assert [(p.id, list(p.rect)) for p in selected] == [(p["id"], p["rect"]) for p in meta["patches"]]


def test_tiny_image_gets_a_defined_resolution():
    """The reference crashes (UnboundLocalError) when 3*max(H, W) < 416; we return RF."""
    import numpy as np

    rgb = np.random.default_rng(0).random((40, 60, 3))
    choice = resolution.search_resolution(rgb, 384, 0.2)
    assert choice.R == 384
    assert 0.0 <= choice.patch_scale <= 1.0


def test_patch_growth_stops_at_the_image_border():
    import numpy as np

    rgb = np.random.default_rng(1).random((900, 1200, 3))
    for patch in patches.select_patches(rgb, 384, 0.5):
        x, y, w, h = patch.rect
        assert x >= 0 and y >= 0 and x + w < 1200 and y + h < 900
