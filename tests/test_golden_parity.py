"""End-to-end parity with the published reference on the synthetic checkpoints (tests/data/golden).

Each case loads the seed-0 synthetic checkpoints from files in the official layouts, through the same code path
as real weights (with the default, parity-safe acceleration; the whole-image cases also run the models exactly
as loaded, ``acceleration.PLAIN``; Final with one patch per forward and with patches in pairs), runs ``boost`` and
applies the golden README's rule: exact R / factor / target / patch list, and
the min-max normalised map within max 1e-4, mean 1e-5, Pearson >= 0.99999.
"""

import pytest

from boost_core.speed import acceleration
from boost_core.algorithm.pipeline import boost, load_networks
from golden import assert_matches, case, final, photo

FAST = ["coffee_midas_R0", "coffee_midas_R20", "coffee_leres_R20", "coffee_sgr_R20"]
SLOW = ["chelsea_midas_Final_mr2000", "chelsea_sgr_Final_mr2000", "coffee_midas_Final"]
BASE_FILES = {"midas_v2": "midas_v2", "leres": "leres", "sgr": "sgr"}


@pytest.fixture(scope="module")
def networks(checkpoints):
    loaded = {}

    def get(net, options=None):
        key = (net, options)
        if key not in loaded:
            loaded.clear()  # keep one base network in memory at a time
            loaded[key] = load_networks(net, checkpoints(BASE_FILES[net]), checkpoints("merge_net"),
                                        acceleration=options)
        return loaded[key]

    return get


def run_case(name, networks, options=None, max_batch=None):
    meta = case(name)
    result = boost(photo(meta["image"]), meta["net_name"], meta["mode_name"], meta["max_res_value"],
                   networks=networks(meta["net_name"], options), max_batch=max_batch)
    assert result.R == meta["R_x"]
    assert result.patch_scale == pytest.approx(meta["patch_scale"], rel=1e-12)
    if meta["mode_name"] == "final":
        assert result.factor == pytest.approx(meta["factor"], rel=1e-12)
        assert list(result.target_shape) == meta["target_shape"]
        assert [(p.id, list(p.rect)) for p in result.patches] == [(p["id"], p["rect"]) for p in meta["patches"]]
        assert result.boosted
    stats = assert_matches(result.depth, final(name))
    print(name, stats)


@pytest.mark.parametrize("name", FAST)
def test_whole_image_modes_match_reference(name, networks):
    run_case(name, networks)


@pytest.mark.parametrize("name", FAST)
def test_plain_models_match_reference(name, networks):
    run_case(name, networks, acceleration.PLAIN)


def test_direct_convolutions_match_reference(networks):
    # the default computes the wide 3x3 convolutions by Winograd; the direct ones (winograd=False) match too
    run_case("coffee_midas_R20", networks, acceleration.Acceleration(winograd=False))


@pytest.mark.slow
@pytest.mark.parametrize("max_batch", [1, 2], ids=["one_patch_at_a_time", "patches_in_pairs"])
@pytest.mark.parametrize("name", SLOW)
def test_final_mode_matches_reference(name, max_batch, networks):
    run_case(name, networks, max_batch=max_batch)
