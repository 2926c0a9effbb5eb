"""ORD, D³R, RMSE and δ (SPEC part two §B) pinned on small hand-checkable inputs, and the evaluate command.

Where the port differs from MATLAB (stated in boost_core.tools.evaluation's docstring): the superpixels come from
scikit-image's SLIC-zero instead of MATLAB's ``superpixels``, so labels, label count and therefore the exact pair
sets differ. The tests below never depend on the particular segmentation: they use hand-made label maps and pair
lists, or maps whose scores follow from the definition whatever the superpixels are.
"""

import csv
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest

from boost_core.tools import evaluation as ev
from boost_core.cli.evaluate import read_map

# ---------------------------------------------------------------------------------------------- building blocks

def test_ordinal_label_three_way():
    assert ev.ordinal_label(1.0, 1.0, 1.01) == 0
    assert ev.ordinal_label(0.0, 0.0, 1.0) == 0  # equal values always give 0, even with threshold 1
    assert ev.ordinal_label(2.0, 1.0, 1.01) == 1
    assert ev.ordinal_label(1.0, 2.0, 1.01) == -1
    assert ev.ordinal_label(1.005, 1.0, 1.01) == 0  # within 1%
    assert ev.ordinal_label(1.02, 1.0, 1.03) == 0 and ev.ordinal_label(1.04, 1.0, 1.03) == 1
    assert ev.ordinal_label(1e-3, 0.0, 1.01) == 1  # eps keeps a zero denominator finite


def test_matlab_stream_and_randi():
    # MATLAB's first rand outputs of a fresh session, and its documented randi(10,1,5) = 9 10 2 10 7
    np.testing.assert_allclose(ev.matlab_stream().random_sample(5),
                               [0.8147, 0.9058, 0.1270, 0.9134, 0.6324], atol=5e-5)
    partners = ev.random_partners(10, ev.matlab_stream(), count=1)
    assert partners[:5, 0].tolist() == [9, 10, 2, 10, 7]
    three = ev.random_partners(10, ev.matlab_stream())  # three draws per label, in label order
    assert three.shape == (10, 3) and three[0].tolist() == [9, 10, 2] and three[1, :2].tolist() == [10, 7]


def test_imresize_nearest_index_rule():
    # scale 0.2: output x takes source round(5x - 2): rows 3, 8, 13, 18 (1-based); size ceil(0.2 * length)
    assert ev.nearest_indices(20, 0.2).tolist() == [2, 7, 12, 17]
    assert ev.nearest_indices(21, 0.2).tolist() == [2, 7, 12, 17, 20]  # 5th would be row 23: clamped to 21
    assert ev.nearest_indices(7, 1.0).tolist() == list(range(7))
    image = np.arange(20 * 10, dtype=float).reshape(20, 10)
    small = ev.imresize_nearest(image, 0.2)
    assert small.shape == (4, 2) and small[1, 1] == image[7, 7]


def test_neighbours_are_4_adjacent_and_centres_follow_the_floor_rule():
    labels = np.array([[1, 2],
                       [2, 3]])
    neighbours = ev.label_neighbours(labels)
    assert [n.tolist() for n in neighbours] == [[2], [1, 3], [2]]  # 1 and 3 touch only diagonally
    rows, cols = ev.label_centres(labels)
    # label 2 = pixels (1,2) and (2,1) (1-based): floor(1.5), floor(1.5) -> (1,1), a pixel of label 1
    assert rows.tolist() == [1, 1, 2] and cols.tolist() == [1, 1, 2]

    labels = np.array([[1, 1, 2],
                       [1, 3, 2],
                       [3, 3, 2]])
    assert [n.tolist() for n in ev.label_neighbours(labels)] == [[2, 3], [1, 3], [1, 2]]
    rows, cols = ev.label_centres(labels)
    assert rows.tolist() == [1, 2, 2] and cols.tolist() == [1, 3, 1]  # label 3: mean row 5/3, mean col 4/3


def test_pair_removal_rule():
    # a pair listed on both sides is counted once per occurrence on the side visited first
    i, j = ev.effective_pairs([[2, 2, 3], [1], [1, 1]])
    assert list(zip(i.tolist(), j.tolist())) == [(1, 2), (1, 2), (1, 3)]
    # a self pair is visited; removing i from its own list does not change the snapshot being walked
    i, j = ev.effective_pairs([[1, 2], [1, 1, 3], [2]])
    assert list(zip(i.tolist(), j.tolist())) == [(1, 1), (1, 2), (2, 3)]
    # symmetric neighbour lists: each adjacent pair exactly once
    i, j = ev.effective_pairs([[2, 3], [1, 3], [1, 2]])
    assert list(zip(i.tolist(), j.tolist())) == [(1, 2), (1, 3), (2, 3)]


def test_pair_error_counts_violated_pairs():
    gt = np.array([1.0, 2.0, 4.0, 8.0])
    chain = [[2], [3], [4], []]  # pairs (1,2), (2,3), (3,4)
    assert ev.pair_error(gt, gt, chain, ev.D3R_GT_RATIO, ev.D3R_RATIO) == (0.0, 3)
    # one reversed pair out of three costs 2: D3R = 2/3
    error, confidence = ev.pair_error(gt, np.array([1.0, 2.0, 8.0, 4.0]), chain, ev.D3R_GT_RATIO, ev.D3R_RATIO)
    assert (error, confidence) == (2.0, 3) and error / confidence == pytest.approx(2 / 3)
    # one pair the estimate calls equal (within 1%) costs 1
    assert ev.pair_error(gt, np.array([1.0, 2.0, 4.0, 4.02]), chain, ev.D3R_GT_RATIO, ev.D3R_RATIO) == (1.0, 3)
    # a zero GT value (invalid / nearest pixel) drops its pairs; a GT ratio below 1.1 drops the pair for D3R ...
    assert ev.pair_error(np.array([0.0, 2.0, 4.0, 8.0]), gt, chain, 0.1, 0.01)[1] == 2
    close = np.array([1.0, 1.02, 4.0, 8.0])
    assert ev.pair_error(close, close, chain, ev.D3R_GT_RATIO, ev.D3R_RATIO)[1] == 2
    # ... but not for ORD, where any GT difference counts; the GT label uses the 3% band (0 here), so an
    # estimate calling the pair unequal costs 1
    assert ev.pair_error(close, np.array([1.0, 2.0, 4.0, 8.0]), chain, ev.ORD_GT_RATIO, ev.ORD_RATIO) == (1.0, 3)


def test_rmse_counts_invalid_pixels_with_zero_error():
    gt = np.array([[0.0, 1.0], [np.nan, 0.5]])
    est = np.array([[0.0, 0.0], [7.0, 0.5]])
    assert ev.rmse(gt, est) == pytest.approx(math.sqrt(1 / 4))


def test_delta_fractions_on_valid_non_zero_pixels():
    g = np.array([[1.0, 2.0, np.nan], [4.0, 0.0, 1.0]])
    e = np.array([[1.0, 3.0, 5.0], [4.0, 1.0, 2.0]])  # t = 1, 1.5, -, 1, -, 2
    out = ev.depth_ratio_errors(g, e)
    assert out["delta"] == pytest.approx(2 / 4)  # 1.5 and 2 exceed 1.25
    assert out["delta2"] == pytest.approx(1 / 4)  # only 2 exceeds 1.5625
    assert out["delta3"] == pytest.approx(1 / 4)  # 2 > 1.953
    assert out["abs_rel"] == pytest.approx((0 + 0.5 + 0 + 1) / 4)


def test_rescale_like_matlab():
    np.testing.assert_allclose(ev.rescale(np.array([2.0, 4.0, np.nan, 3.0])), [0, 1, np.nan, 0.5])
    np.testing.assert_allclose(ev.rescale(np.array([2.0, 4.0]), 0.25, 1), [0.25, 1])
    assert ev.rescale(np.array([3.0, 3.0]), 0.5, 1).tolist() == [0.5, 0.5]  # constant -> lower bound


# ---------------------------------------------------------------------------------------------- whole metric

def _bands(height=60, width=90):
    """GT disparity in three vertical bands 1, 0.5, 0.25 (depth 1, 2, 4 -> rescaled 0, 1/3, 1)."""
    gt = np.empty((height, width))
    third = width // 3
    gt[:, :third], gt[:, third:2 * third], gt[:, 2 * third:] = 1.0, 0.5, 0.25
    return gt


def _smooth_gt(height=48, width=64):
    rows, cols = np.mgrid[0:height, 0:width]
    disparity = 0.2 + 0.8 * (0.5 + 0.5 * np.sin(cols / 7.0) * np.cos(rows / 9.0))
    disparity /= disparity.max()
    disparity[5:9, 10:20] = 0.0  # invalid pixels
    disparity[30, 40] = np.nan
    return disparity


def test_identical_maps_score_zero():
    gt = _smooth_gt()
    estimate = np.nan_to_num(ev.rescale(np.where(gt > 0, gt, np.nan)), nan=0.0)  # a min-max disparity estimate
    scores = ev.evaluate(estimate, gt)
    assert scores.d3r_pairs > 0 and scores.ord_pairs > 0
    assert scores.ord == 0 and scores.d3r == 0 and scores.delta == 0 and scores.delta3 == 0
    assert scores.rmse == pytest.approx(0, abs=1e-12)
    assert scores.abs_rel == pytest.approx(0, abs=1e-12)


def test_reversed_map_scores_what_the_definition_says():
    gt = _bands()
    estimate = 1.0 - ev.rescale(gt)  # rescaled GT disparity (1, 1/3, 0) reversed: (0, 2/3, 1)
    scores = ev.evaluate(estimate, gt)
    # after alignment the estimate depth is (1, 1/9, 0): every pair with valid, different GT is reversed
    assert scores.d3r_pairs > 0 and scores.ord_pairs > 0
    assert scores.d3r == 2.0 and scores.ord == 2.0
    # delta: band 1 has GT depth 0 and band 3 estimate depth 0 (both dropped); band 2 has t = (1/3)/(1/9) = 3
    assert scores.delta == 1.0 and scores.delta3 == 1.0
    # RMSE: |GT disparity - raw estimate| = 1, 1/3, 1 on equal bands
    assert scores.rmse == pytest.approx(math.sqrt((1 + 1 / 9 + 1) / 3))


def test_depth_ground_truth_is_the_same_scene():
    gt_disp = _smooth_gt()
    gt_depth = np.where(gt_disp > 0, 1.0 / np.where(gt_disp > 0, gt_disp, 1), 0.0)
    estimate = cv2.GaussianBlur(np.nan_to_num(gt_disp, nan=0.0), (0, 0), 2.0)
    a = ev.evaluate(estimate, gt_disp, gt_kind="disparity")
    b = ev.evaluate(estimate, gt_depth, gt_kind="depth")
    for name in ("ord", "d3r", "rmse", "delta", "abs_rel"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9, abs=1e-12), name


def test_gt_scale_max_makes_pixel_disparities_usable():
    gt = _smooth_gt()
    estimate = cv2.GaussianBlur(np.nan_to_num(gt, nan=0.0), (0, 0), 2.0)
    reference = ev.evaluate(estimate, gt, gt_scale="file")  # max valid disparity is 1: im2double scale
    in_pixels = ev.evaluate(estimate, gt * 60.0, gt_scale="max")
    for name in ("ord", "d3r", "rmse", "delta", "abs_rel"):
        assert getattr(in_pixels, name) == pytest.approx(getattr(reference, name), rel=1e-9, abs=1e-12), name
    as_is = ev.evaluate(estimate, gt * 60.0, gt_scale="file")  # min_gt_disp > 1: the alignment breaks down
    assert as_is.delta != pytest.approx(reference.delta)


def test_invalid_inputs_are_refused_with_a_reason():
    gt = _smooth_gt()
    with pytest.raises(ValueError, match="ground truth is"):
        ev.evaluate(np.zeros((10, 10)), gt)
    with pytest.raises(ValueError, match="non-finite"):
        ev.evaluate(np.full(gt.shape, np.nan), gt)
    with pytest.raises(ValueError, match="no valid pixel"):
        ev.evaluate(np.ones(gt.shape), np.zeros(gt.shape))


def test_superpixel_scale_maps_centres_back_to_the_full_grid():
    r, c = ev.full_grid_centres(np.array([1, 3]), np.array([2, 4]), 0.2, (20, 20))
    assert r.tolist() == [4, 14] and c.tolist() == [9, 19]  # 1-based 5, 15 and 10, 20
    gt = _smooth_gt(100, 120)
    estimate = np.nan_to_num(ev.rescale(np.where(gt > 0, gt, np.nan)), nan=0.0)
    scores = ev.evaluate(estimate, gt, superpixel_scale=0.2)
    assert scores.d3r == 0 and scores.ord == 0 and scores.superpixels <= 20 * 24


# ---------------------------------------------------------------------------------------------- the command

def _write_pfm(path, data):
    data = np.asarray(data, np.float32)
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n-1.0\n" % (data.shape[1], data.shape[0]))
        np.flipud(data).astype("<f4").tofile(f)


def test_evaluate_command(tmp_path, engine_env):
    gts, ests = tmp_path / "gt", tmp_path / "est"
    gts.mkdir()
    ests.mkdir()
    gt = _smooth_gt() * 50.0  # disparity in pixels, as Middlebury's PFM files
    gt[gt == 0] = np.inf  # Middlebury marks invalid pixels with inf
    _write_pfm(gts / "a.pfm", gt)
    _write_pfm(gts / "b.pfm", gt[::-1])
    _write_pfm(gts / "c.pfm", gt)  # no estimate: reported, the others still evaluated
    blurred = cv2.GaussianBlur(np.nan_to_num(_smooth_gt(), nan=0.0), (0, 0), 2.0)
    png = np.round(ev.rescale(blurred) * 65535).astype(np.uint16)
    cv2.imwrite(str(ests / "a.png"), png)
    np.save(ests / "b.npy", blurred[::-1].astype(np.float32))
    (ests / "notes.txt").write_text("not a depth map")

    csv_path = tmp_path / "out" / "scores.csv"
    run = subprocess.run([sys.executable, "-m", "boost_core", "evaluate", "--estimates", str(ests),
                          "--ground-truth", str(gts), "--csv", str(csv_path)],
                         capture_output=True, text=True, env=engine_env, timeout=120)
    assert run.returncode == 1, run.stderr  # c has no estimate
    assert "c: error: no estimate named c" in run.stderr
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "ord", "d3r", "rmse", "delta"]
    assert [r["image"] for r in rows] == ["a", "b"]
    # the same numbers as the library with one MATLAB stream shared by a then b (name order), gt_scale max for PFM
    rng = ev.matlab_stream()
    expected = [ev.evaluate(read_map(ests / "a.png"), read_map(gts / "a.pfm"), rng=rng, gt_scale="max"),
                ev.evaluate(read_map(ests / "b.npy"), read_map(gts / "b.pfm"), rng=rng, gt_scale="max")]
    for row, want in zip(rows, expected):
        for name in ("ord", "d3r", "rmse", "delta"):
            assert float(row[name]) == pytest.approx(getattr(want, name), rel=1e-12, abs=1e-15)
    assert 0 < expected[0].d3r < 2 and 0 < expected[0].rmse < 0.2
    table = run.stdout.splitlines()
    assert table[0].split()[:5] == ["image", "ORD", "D3R", "RMSE", "d>1.25"] and table[-1].startswith("mean")


def test_evaluate_command_needs_a_choice_between_two_estimates(tmp_path, engine_env):
    (tmp_path / "gt").mkdir()
    (tmp_path / "est").mkdir()
    gt16 = np.round(np.nan_to_num(_smooth_gt()) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), gt16)
    perfect = np.nan_to_num(ev.rescale(np.where(gt16 > 0, gt16 / 65535.0, np.nan)), nan=0.0)
    np.save(tmp_path / "est" / "a.npy", perfect)  # float64: the exact min-max GT disparity
    cv2.imwrite(str(tmp_path / "est" / "a.png"), 65535 - gt16)
    cmd = [sys.executable, "-m", "boost_core", "evaluate", "--estimates", str(tmp_path / "est"),
           "--ground-truth", str(tmp_path / "gt")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=engine_env, timeout=120)
    assert run.returncode == 1 and "--estimate-suffix" in run.stderr
    run = subprocess.run([*cmd, "--estimate-suffix", ".npy"], capture_output=True, text=True, env=engine_env,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].split()[1:3] == ["0.0000", "0.0000"]


def test_read_map_is_im2double_for_16_bit_png(tmp_path):
    values = np.array([[0, 1, 65535], [257, 32768, 2]], np.uint16)
    cv2.imwrite(str(tmp_path / "m.png"), values)
    out = read_map(tmp_path / "m.png")
    assert out.dtype == np.float64 and np.array_equal(out, values / 65535.0)
