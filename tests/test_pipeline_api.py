"""The Python API: progress, cancellation, output sizes and the reference's crash cases made defined."""

import threading

import cv2
import numpy as np
import pytest
import skimage.data

from boost_core.algorithm.pipeline import Cancelled, InputError, boost, load_networks


@pytest.fixture(scope="module")
def midas(checkpoints):
    return load_networks("midas_v2", checkpoints("midas_v2"), checkpoints("merge_net"))


def small_photo(shape=(80, 120)):
    rgb = skimage.data.astronaut()
    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float64) / 255


def test_final_mode_on_a_small_photo_reports_progress_per_patch(midas):
    events = []
    rgb = small_photo((100, 150))  # R 384, one patch qualifies on the (1029, 1543) target
    result = boost(rgb, mode="final", networks=midas, progress=events.append)
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    assert stages[:2] == ["resolution_search", "whole_image"]
    assert result.depth.shape == (100, 150) and result.depth.dtype == np.float32
    assert result.boosted and len(result.patches) >= 1, result.warnings
    assert "patches" in stages
    done = [e["done"] for e in events if e["event"] == "progress" and "step" not in e]  # not the sub-steps
    assert done == list(range(0, len(result.patches), 2)) + [len(result.patches)]  # pairs on CPU, then the end
    assert result.kind == "inverse_depth"
    assert result.timings["network_forwards"] > 0


def test_full_output_size_keeps_the_aspect_ratio(midas):
    result = boost(small_photo((80, 120)), mode="r0", networks=midas, output_size="full")
    assert result.depth.shape == (256, 384)  # long side R = 384


def test_cancel_between_network_calls(midas):
    cancel = threading.Event()

    def progress(event):
        if event.get("stage") == "whole_image":
            cancel.set()

    with pytest.raises(Cancelled):
        boost(small_photo(), mode="r20", networks=midas, progress=progress, cancel=cancel)


def test_single_colour_image_gives_a_flat_map(midas):
    result = boost(np.full((50, 70, 3), 0.3), mode="final", networks=midas)
    assert result.depth.shape == (50, 70) and not result.depth.any()
    assert result.warnings


def test_tiny_image_is_processed_not_crashed(midas):
    """3*max(H, W) < 416 crashes the reference (UnboundLocalError)."""
    result = boost(small_photo((40, 60)), mode="r20", networks=midas)
    assert result.R == 384 and result.depth.shape == (40, 60) and np.isfinite(result.depth).all()


@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (5, 5)])
def test_degenerate_sizes_are_clear_errors(midas, shape):
    with pytest.raises(InputError, match="at least"):
        boost(np.random.default_rng(0).random(shape + (3,)), networks=midas)


def test_grey_and_uint8_inputs_are_accepted(midas):
    grey = (small_photo()[..., 0] * 255).astype(np.uint8)
    result = boost(grey, mode="r0", networks=midas)
    assert result.depth.shape == grey.shape


def test_unknown_mode_is_an_input_error(midas):
    with pytest.raises(InputError, match="r0, r20, final"):
        boost(small_photo(), mode="R30", networks=midas)
