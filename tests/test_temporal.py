"""Temporal alignment of depth sequences (boost_core.footage.temporal, ``python -m boost_core align``).

Sequences are made by panning a crop window across scikit-image's Middlebury *motorcycle* photo, with its
ground-truth disparity as the depth: each frame's "estimated" depth is the ground-truth crop under a random
per-frame scale and shift plus a little noise, as a relative-depth network gives. Expectations come from the
ground truth and the known integer motion, not from the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache

import cv2
import numpy as np
import pytest
import skimage.data
from scipy import ndimage

from boost_core.footage import temporal
from boost_core.image_io import read_depth
from boost_core.normalise import min_max

W, H = 160, 120
DX, DY = 4, 1  # pan per frame, px (the window moves right and down: a scene pixel moves left and up)
NOISE = 0.001  # depth noise, share of the ground truth's range in the window


@lru_cache(maxsize=1)
def motorcycle():
    """(left photo (500, 741, 3) uint8, disparity with its holes filled by the nearest value, valid mask)."""
    left, _, disparity = skimage.data.stereo_motorcycle()
    holes = ~np.isfinite(disparity)
    nearest = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
    return left, disparity[tuple(nearest)].astype(np.float64), ~holes


def pan(count, x0=120, y0=80, dx=DX, dy=DY, seed=0, noise=NOISE):
    """(photos float 0..1, estimated depths float32, ground-truth crops, valid masks, per-frame (scale, shift))."""
    left, truth, valid = motorcycle()
    rng = np.random.default_rng(seed)
    photos, depths, truths, masks, affine = [], [], [], [], []
    for k in range(count):
        x, y = x0 + k * dx, y0 + k * dy
        crop = truth[y:y + H, x:x + W]
        scale, shift = rng.uniform(0.3, 3.0), rng.uniform(-20.0, 20.0)
        sigma = noise * scale * np.ptp(crop)
        photos.append(left[y:y + H, x:x + W] / 255.0)
        depths.append((scale * crop + shift + rng.normal(0.0, sigma, crop.shape)).astype(np.float32))
        truths.append(crop)
        masks.append(valid[y:y + H, x:x + W])
        affine.append((scale, shift))
    return photos, depths, truths, masks, affine


def relation(maps, truths, masks):
    """Per frame (a, b) of the least-squares line map ~ a * truth + b over the valid pixels."""
    return np.array([np.polyfit(t[m], d[m], 1) for d, t, m in zip(maps, truths, masks)])


def spread(lines):
    """Largest departure of the frames' (a, b) from the first frame's: (relative in a, in units of a * 50)."""
    a, b = lines[:, 0], lines[:, 1]
    return float(np.max(np.abs(a / a[0] - 1))), float(np.max(np.abs(b - b[0])) / (abs(a[0]) * 50.0))


def pan_flicker(maps, span):
    """Mean |frame t - frame t-1| over the windows' overlap under the known pan (pooled), / span."""
    total = count = 0.0
    for prev, cur in zip(maps, maps[1:]):
        diff = np.abs(cur[:H - DY, :W - DX] - prev[DY:, DX:])  # scene point at cur (i, j) was at prev (i+dy, j+dx)
        total += diff.sum()
        count += diff.size
    return total / count / span


def test_pan_recovers_one_scale_and_shift_and_flickers_less():
    photos, depths, truths, masks, _ = pan(20)
    results = list(temporal.align_sequence(photos, depths))
    aligned = [a for a, _ in results]
    stats = [s for _, s in results]
    assert stats[0].fallback == "first frame"
    assert all(s.fitted for s in stats[1:]), [s.fallback for s in stats]
    assert min(s.static_fraction for s in stats[1:]) > 0.85  # a 4 px pan leaves ~96 % of a 160x120 window

    # one relation to the ground truth for the whole sequence (the truth spans ~50 disparity units)
    scale_spread, shift_spread = spread(relation(aligned, truths, masks))
    assert scale_spread < 0.005 and shift_spread < 0.005, (scale_spread, shift_spread)
    # the same check fails for today's per-frame min-max (so it can fail)
    own = [min_max(d) for d in depths]
    assert max(spread(relation(own, truths, masks))) > 0.05

    # the flicker figures match the mean change over the known overlap, and alignment removes most of it
    figures = temporal.flicker(stats)
    span = max(a.max() for a in aligned) - min(a.min() for a in aligned)
    expected_aligned, expected_unaligned = pan_flicker(aligned, span), pan_flicker(own, 1.0)
    assert figures["frames"] == 20
    assert figures["flicker_aligned"] == pytest.approx(expected_aligned, rel=0.25)
    assert figures["flicker_unaligned"] == pytest.approx(expected_unaligned, rel=0.25)
    assert figures["flicker_aligned"] < 0.4 * figures["flicker_unaligned"], figures
    assert figures["static_fraction"] == pytest.approx(np.mean([s.static_fraction for s in stats[1:]]))


def test_static_camera_keeps_every_frame_at_the_first_frames_depth():
    left, truth, valid = motorcycle()
    rng = np.random.default_rng(3)
    y, x = 150, 250
    crop, photo = truth[y:y + H, x:x + W], left[y:y + H, x:x + W] / 255.0
    sigma = NOISE * np.ptp(crop)
    photos = [np.clip(photo + rng.normal(0, 0.004, photo.shape), 0, 1) for _ in range(10)]  # sensor noise
    depths = [(s * (crop + rng.normal(0, sigma, crop.shape)) + b).astype(np.float32)
              for s, b in zip(rng.uniform(0.3, 3.0, 10), rng.uniform(-20, 20, 10))]
    results = list(temporal.align_sequence(photos, depths))
    stats = [s for _, s in results]
    assert all(s.fitted for s in stats[1:]) and min(s.static_fraction for s in stats[1:]) > 0.95
    first = min_max(depths[0].astype(np.float64))
    for aligned, _ in results:
        # every frame in the first frame's units: the difference is the two frames' noise only
        noise_floor = 2 / np.sqrt(np.pi) * sigma / np.ptp(crop)  # E|n1 - n2| of two N(0, sigma) in range units
        assert np.mean(np.abs(aligned - first)) < 2 * noise_floor
    figure = temporal.flicker(stats)["flicker_aligned"]
    assert 0.7 * noise_floor < figure < 1.5 * noise_floor, (figure, noise_floor)


def test_scene_cut_and_total_change_fall_back_to_the_frames_own_min_max():
    photos, depths, _, _, _ = pan(2)
    other = cv2.resize(skimage.data.astronaut(), (W + 40, H + 30), interpolation=cv2.INTER_AREA) / 255.0
    yy, xx = np.mgrid[0:H + 30, 0:W + 40]
    other_depth = 5 + np.sin(xx / 17.0) + 0.02 * yy  # any smooth depth for the other shot
    photos += [other[:H, :W], other[2:H + 2, 3:W + 3], np.full((H, W, 3), 0.5)]
    depths += [other_depth[:H, :W] * 7.0, other_depth[2:H + 2, 3:W + 3] * 3.0 + 1.0, depths[0] * 2.0]
    depths = [np.asarray(d, np.float32) for d in depths]
    results = list(temporal.align_sequence(photos, depths))
    stats = [s for _, s in results]
    assert stats[1].fitted
    for cut in (2, 4):  # another shot; a flat grey frame
        assert stats[cut].fallback.startswith("scene cut"), stats[cut].fallback
        assert stats[cut].static_pixels == 0 and stats[cut].change_aligned is None
        np.testing.assert_allclose(results[cut][0], min_max(depths[cut].astype(np.float64)), atol=1e-6)
    assert stats[3].fitted, stats[3].fallback  # the chain restarts on the new shot
    summary = temporal.flicker(stats)
    assert summary["frames"] == 5 and np.isfinite(summary["flicker_aligned"])


def test_a_cut_on_every_frame_gives_zero_figures_without_crashing():
    rng = np.random.default_rng(0)
    photos = [rng.uniform(0, 1, (H, W, 3)) for _ in range(3)]  # unrelated noise pictures
    depths = [rng.uniform(0, 1, (H, W)).astype(np.float32) for _ in range(3)]
    stats = [s for _, s in temporal.align_sequence(photos, depths)]
    assert [s.fitted for s in stats] == [False, False, False]
    assert temporal.flicker(stats) == {"frames": 3, "flicker_aligned": 0.0, "flicker_unaligned": 0.0,
                                       "static_fraction": 0.0}


def test_reversed_or_flat_depth_is_refused_and_flagged():
    photos, depths, _, _, _ = pan(3)
    depths[1] = -depths[1]  # depth order reversed: a negative scale would fit
    depths[2] = np.full_like(depths[2], 4.0)
    results = list(temporal.align_sequence(photos, depths))
    assert results[1][1].fallback.startswith("refused scale"), results[1][1].fallback
    np.testing.assert_allclose(results[1][0], min_max(depths[1].astype(np.float64)), atol=1e-6)
    assert results[2][1].fallback.startswith("flat depth"), results[2][1].fallback
    assert np.all(results[2][0] == 0)


def test_mismatched_inputs_name_the_frame_and_the_fix():
    photos, depths, _, _, _ = pan(3)
    with pytest.raises(temporal.SequenceError, match="frame 3: no photo; give as many photos"):
        list(temporal.align_sequence(photos[:2], depths))
    depths[1] = depths[1][:, :100]
    with pytest.raises(temporal.SequenceError, match="frame 2: depth is 100x120 .* one size"):
        list(temporal.align_sequence(photos, depths))


def run_align(args, env):
    return subprocess.run([sys.executable, "-m", "boost_core", "align", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_align_command_end_to_end(tmp_path, engine_env):
    photos, depths, truths, masks, _ = pan(8, seed=5)
    (tmp_path / "photos").mkdir()
    (tmp_path / "raw").mkdir()
    for k, (photo, depth) in enumerate(zip(photos, depths), start=1):
        cv2.imwrite(str(tmp_path / "photos" / f"shot_{k:04d}.png"), np.round(photo[..., ::-1] * 255).astype(np.uint8))
        np.save(tmp_path / "raw" / f"depth_{k:04d}.npy", depth)
    out = tmp_path / "out"
    args = [tmp_path / "raw" / "depth_####.npy", "--photos", tmp_path / "photos" / "shot_%04d.png", "--output", out,
            "--format", "png16,exr,npy"]
    proc = run_align(args, engine_env)
    assert proc.returncode == 0, proc.stderr
    assert "flicker" in proc.stdout and "depth_0008" in proc.stdout

    summary = json.loads((out / "flicker.json").read_text())
    assert summary["frames"] == 8 and summary["fallback_frames"] == []
    names = [f"depth_{k:04d}" for k in range(1, 9)]
    npys = [np.load(out / f"{n}.npy") for n in names]
    # the written figures are the mean changes over the known overlap of the written files (range 0..1)
    assert summary["flicker_aligned"] == pytest.approx(pan_flicker(npys, 1.0), rel=0.25)
    assert summary["flicker_unaligned"] == pytest.approx(pan_flicker([min_max(d) for d in depths], 1.0), rel=0.25)
    assert summary["flicker_aligned"] < summary["flicker_unaligned"]
    # one common 0..1 range for the sequence, and one relation to the ground truth for all frames
    assert min(d.min() for d in npys) == pytest.approx(0, abs=1e-6)
    assert max(d.max() for d in npys) == pytest.approx(1, abs=1e-6)
    assert max(spread(relation(npys, truths, masks))) < 0.005
    for name, npy in zip(names, npys):
        # the 16-bit PNG is quantised over the common range, not stretched per file
        assert np.max(np.abs(read_depth(out / f"{name}.png") - npy)) <= 1.5 / 65535
        np.testing.assert_array_equal(read_depth(out / f"{name}.exr"), npy)

    again = run_align(args, engine_env)
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    assert run_align(args + ["--overwrite"], engine_env).returncode == 0


def test_align_command_reads_photos_from_a_movie(tmp_path, engine_env):
    photos, depths, truths, masks, _ = pan(6, seed=7)
    movie = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"MJPG"), 24, (W, H))
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for photo in photos:
        writer.write(np.round(photo[..., ::-1] * 255).astype(np.uint8))
    writer.release()
    for n, depth in enumerate(depths, start=1):  # movie frames count from 1, as Blender's
        np.save(tmp_path / f"clip_{n:06d}.npy", depth)
    out = tmp_path / "out"
    proc = run_align([tmp_path / "clip_######.npy", "--photos", movie, "--output", out, "--format", "npy"],
                     engine_env)
    assert proc.returncode == 0, proc.stderr
    npys = [np.load(out / f"clip_{n:06d}.npy") for n in range(1, 7)]
    assert max(spread(relation(npys, truths, masks))) < 0.01


def test_align_command_refuses_depth_frames_without_photos(tmp_path, engine_env):
    photos, depths, _, _, _ = pan(3)
    (tmp_path / "photos").mkdir()
    for k in (1, 2, 3):
        np.save(tmp_path / f"d_{k:03d}.npy", depths[k - 1])
    for k in (1, 2):
        cv2.imwrite(str(tmp_path / "photos" / f"p_{k:03d}.png"), np.zeros((H, W, 3), np.uint8))
    proc = run_align([tmp_path / "d_###.npy", "--photos", tmp_path / "photos" / "p_###.png", "--output",
                      tmp_path / "out"], engine_env)
    assert proc.returncode == 2
    assert "depth frames 3 have no photo" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_noisy_depth_does_not_drift_along_the_chain():
    """Both sides of each fit are noisy estimates: a least-squares slope would shrink by noise / signal variance on
    every frame, compounding along the chain (1.4 % after these 20 frames); the fit must not (0.03 %)."""
    photos, depths, truths, masks, _ = pan(20, seed=11, noise=0.01)
    aligned = [a for a, _ in temporal.align_sequence(photos, depths)]
    scale_spread, shift_spread = spread(relation(aligned, truths, masks))
    assert scale_spread < 0.005 and shift_spread < 0.005, (scale_spread, shift_spread)


def test_align_job_takes_loaders_and_writes_the_contracts_flicker_json(tmp_path):
    """The call a job makes for --temporal: (photo loader, raw .npy, {format: path}) per frame."""
    from boost_core.image_io import output_paths

    photos, depths, truths, masks, _ = pan(5, seed=2)
    frames = []
    for k, (photo, depth) in enumerate(zip(photos, depths), start=1):
        np.save(tmp_path / f"raw_{k}.npy", depth)
        frames.append((lambda photo=photo: photo, tmp_path / f"raw_{k}.npy",
                       output_paths(f"shot_{k:04d}", tmp_path / "out", ["npy", "color"])))
    seen = []
    summary = temporal.align_job(tmp_path / "out" / ".boost_depth_job", frames, report=seen.append)
    assert [s.index for s in seen] == [0, 1, 2, 3, 4]
    stored = json.loads((tmp_path / "out" / ".boost_depth_job" / "flicker.json").read_text())
    assert stored == summary
    assert {"frames", "flicker_aligned", "flicker_unaligned", "static_fraction"} <= set(stored)
    assert stored["frames"] == 5 and 0.85 < stored["static_fraction"] <= 1
    npys = [np.load(tmp_path / "out" / f"shot_{k:04d}.npy") for k in range(1, 6)]
    assert max(spread(relation(npys, truths, masks))) < 0.005
    assert all((tmp_path / "out" / f"shot_{k:04d}_color.png").is_file() for k in range(1, 6))
