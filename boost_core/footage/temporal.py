"""Temporal alignment of a depth sequence (footage), and its flicker figure. numpy + OpenCV only.

    for aligned, stats in align_sequence(photos, depths): ...     # frame by frame, in order
    summary = align_job(job_dir, [(photo, raw_depth_path, {format: output_path}), ...])   # files in, files out
    flicker(stats_list)  # {"frames", "flicker_aligned", "flicker_unaligned", "static_fraction"}

Relative depth networks give each frame's map up to an unknown scale and shift, and the engine min-max normalises
every frame on its own, so the same wall changes depth from frame to frame (flicker). Here each frame's raw depth
is mapped by ``aligned = scale * raw + shift`` with (scale, shift) fitted robustly to the previous ALIGNED frame
warped into the current one by optical flow, on the pixels where the picture did not change:

1. motion: DIS optical flow between the consecutive photos (grey, at most ``work_side`` px long side), both ways;
2. static pixels: the flow's source lies inside the previous frame, the forward and backward flows agree
   (|f_bw(x) + f_fw(x + f_bw(x))|^2 <= 0.01 (|f_bw|^2 + |f_fw|^2) + 0.5 px^2: not occluded) and the grey level
   after motion compensation, less the median difference (a global brightness change), differs by at most
   ``photo_tolerance`` (a camera pan moves every pixel: static means consistent after motion compensation, not
   the same pixel);
3. fit: raw -> previous aligned depth warped with nearest-pixel sampling (bilinear sampling would average the
   previous frame's noise away and bias the fit), a reduced-major-axis line (both sides are noisy estimates of one
   network: a least-squares slope would shrink by noise / signal variance every frame and compound along the chain)
   with Huber IRLS weights (delta = 1.345 x the residuals' MAD-sigma), in the network's own space (relative
   inverse depth / disparity for MiDaS-like networks: the relation is affine there, nothing is inverted);
4. refusals: fewer static pixels than ``min_static_fraction`` of the frame (a scene cut, a total change), a
   flat map, a non-positive scale or one that would shrink or stretch the frame's range more than
   ``MAX_RANGE_RATIO`` times against the previous aligned frame: the frame falls back to its own min-max
   normalisation (identity with respect to today's output), ``FrameStats.fallback`` says why, and the chain
   restarts from that frame.

The first frame is min-max normalised as usual (``normalise.min_max``): aligned values are in the units of the
first frame's range (first frame = [0, 1]); later frames may leave [0, 1]. Only scale and shift change: each
frame's own detail is untouched (nothing of the previous frame is blended in).

Drift: every frame is fitted to its predecessor (not to the first frame, which leaves view in a pan), so fit
errors compound along the chain: an unbiased relative scale error e per step makes a random walk of about
e * sqrt(n) after n frames, a biased one about n * e. On the tests' 20-frame pan with 1 % depth noise the
relation to the ground truth drifts by 0.03 % (a least-squares slope: 1.4 %). Consecutive frames stay consistent
(what flicker measures), but the sequence's overall depth range can wander slowly over a long shot, and it follows
any real change of the network's contrast along the shot; a fallback restarts the chain.
``align_job`` writes all frames in one common range (the sequence's min..max -> 0..1), so the files keep the
alignment (a per-file min-max would undo it).

Flicker figure: the mean absolute frame-to-frame change of depth on the static pixels after motion compensation,
pooled over all pixels of all consecutive pairs, in units of the sequence's depth range; ``flicker_aligned`` for
the aligned frames, ``flicker_unaligned`` for the same pixels with every frame min-max normalised on its own (the
engine's output today).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from ..normalise import EPS

#: long side (px) of the pictures the motion, the static pixels and the fit are computed on
WORK_SIDE = 640
#: largest grey-level difference (photo units, 0..1) after motion compensation for a pixel to count as static
PHOTO_TOLERANCE = 0.05
#: fewer static pixels than this share of the frame: a scene cut / total change, the frame is not fitted (ordinary
#: motion keeps most pixels static; an unrelated picture or a flat grey frame matched by chance stays below ~15%)
MIN_STATIC_FRACTION = 0.25
#: a fit that shrinks or stretches the frame's range more than this many times against the previous frame is refused
MAX_RANGE_RATIO = 20.0
#: pixels used by the fit at most (a regular subsample beyond)
FIT_PIXELS = 50_000


@dataclass
class FrameStats:
    """How one frame was aligned.

    index: position in the sequence (0 = first). scale, shift: aligned = scale * raw + shift (raw in the input's
    own units). fallback: None when fitted, else why not ('first frame', 'scene cut: ...', 'flat depth',
    'refused scale ...'); the frame is then min-max normalised on its own. static_fraction: share of the frame's
    pixels (work resolution) that were static against the previous frame (0 for the first frame and after a
    scene cut). static_pixels: their count. change_aligned / change_unaligned: mean |depth - warped previous
    depth| on those pixels, aligned units (first frame's range = 1) / per-frame min-max units (None without
    static pixels). low, high: the aligned frame's min and max. seconds: wall time of this frame's alignment.
    """

    index: int
    scale: float
    shift: float
    fallback: str | None
    static_fraction: float
    static_pixels: int
    change_aligned: float | None
    change_unaligned: float | None
    low: float
    high: float
    seconds: float

    @property
    def fitted(self) -> bool:
        return self.fallback is None


class SequenceError(ValueError):
    """The photos and depths cannot be aligned (shapes, counts, values); the message names the frame and the fix."""


def align_sequence(photos: Iterable[np.ndarray], depths: Iterable[np.ndarray], *, work_side: int = WORK_SIDE,
                   photo_tolerance: float = PHOTO_TOLERANCE,
                   min_static_fraction: float = MIN_STATIC_FRACTION) -> Iterator[tuple[np.ndarray, FrameStats]]:
    """Align a depth sequence frame by frame (see the module's docstring); lazy, one frame in memory at a time.

    photos: (H', W', 3) float 0..1 (uint8 / uint16 are scaled) RGB, one per frame, same aspect ratio as its depth
    (resized to it). depths: (H, W) float raw relative depth (finite), one per frame, any units, same shape
    throughout. Yields (aligned (H, W) float32, FrameStats) per frame; aligned is in the first frame's min-max
    units. Raises SequenceError for a shape / count / value problem, naming the frame.
    """
    photo_iter, depth_iter = iter(photos), iter(depths)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    previous = None  # (grey, aligned, unaligned) at work resolution
    shape = None
    index = 0
    while True:
        photo = next(photo_iter, None)
        raw = next(depth_iter, None)
        if photo is None and raw is None:
            return
        if photo is None or raw is None:
            missing = "photo" if photo is None else "depth map"
            raise SequenceError(f"frame {index + 1}: no {missing}; give as many photos as depth maps")
        start = time.perf_counter()
        raw = _check_depth(raw, index, shape)
        shape = raw.shape
        size = _work_size(shape, work_side)
        grey = _grey(_check_photo(photo, index, shape), size)
        raw_work = raw if size == (shape[1], shape[0]) else cv2.resize(raw, size, interpolation=cv2.INTER_AREA)
        own_scale, own_shift = _min_max_affine(raw)
        unaligned = raw_work * own_scale + own_shift

        scale, shift, fallback = own_scale, own_shift, "first frame"
        mask, fraction, change_a, change_u = None, 0.0, None, None
        if previous is not None:
            prev_grey, prev_aligned, prev_unaligned = previous
            mask, maps = _static_pixels(flow, prev_grey, grey, photo_tolerance)
            fraction = float(mask.mean())
            if fraction < min_static_fraction:
                fallback = (f"scene cut: {fraction:.1%} of the pixels static after motion compensation "
                            f"(fewer than {min_static_fraction:.0%}); restarted with the frame's own min-max")
                mask = None
                fraction = 0.0
            else:
                warped_aligned = cv2.remap(prev_aligned, *maps, cv2.INTER_NEAREST)
                fit = _robust_affine(raw_work[mask], warped_aligned[mask])
                fallback = _refusal(fit, raw, prev_aligned)
                if fallback is None:
                    scale, shift = fit
                aligned_work = raw_work * np.float32(scale) + np.float32(shift)
                warped_unaligned = cv2.remap(prev_unaligned, *maps, cv2.INTER_NEAREST)
                change_a = float(np.mean(np.abs(aligned_work[mask] - warped_aligned[mask])))
                change_u = float(np.mean(np.abs(unaligned[mask] - warped_unaligned[mask])))
        aligned = raw * np.float32(scale) + np.float32(shift)
        aligned_work = raw_work * np.float32(scale) + np.float32(shift)
        previous = (grey, aligned_work, unaligned.astype(np.float32))
        stats = FrameStats(index=index, scale=float(scale), shift=float(shift), fallback=fallback,
                           static_fraction=fraction, static_pixels=int(mask.sum()) if mask is not None else 0,
                           change_aligned=change_a, change_unaligned=change_u, low=float(aligned.min()),
                           high=float(aligned.max()), seconds=time.perf_counter() - start)
        yield aligned, stats
        index += 1


def flicker(stats: Iterable[FrameStats]) -> dict:
    """The flicker figures of an aligned sequence from its FrameStats (all frames, in order).

    Returns {"frames": N, "flicker_aligned": mean |change| on static pixels / (sequence max - min of the aligned
    frames), "flicker_unaligned": the same with per-frame min-max normalisation (range 1), "static_fraction":
    mean share of static pixels over the consecutive pairs (0..1)}; the means pool every static pixel of every
    pair. Both figures are 0.0 when no pair had static pixels (a sequence of one frame, or only cuts).
    """
    stats = list(stats)
    pixels = sum(s.static_pixels for s in stats if s.change_aligned is not None)
    low = min((s.low for s in stats), default=0.0)
    high = max((s.high for s in stats), default=0.0)
    span = high - low
    total_a = sum(s.change_aligned * s.static_pixels for s in stats if s.change_aligned is not None)
    total_u = sum(s.change_unaligned * s.static_pixels for s in stats if s.change_unaligned is not None)
    pairs = stats[1:]
    return {
        "frames": len(stats),
        "flicker_aligned": float(total_a / pixels / span) if pixels and span > EPS else 0.0,
        "flicker_unaligned": float(total_u / pixels) if pixels else 0.0,
        "static_fraction": float(np.mean([s.static_fraction for s in pairs])) if pairs else 0.0,
    }



def align_job(job_dir: Path, frames: list, *, report: Callable[[FrameStats], None] | None = None,
              **options) -> dict:
    """Align the raw depth files of a job and write the aligned outputs; returns the flicker summary.

    job_dir: folder for ``flicker.json`` (created if needed; a job's ``DIR/.boost_depth_job``).
    frames: in sequence order, ``(photo, raw_depth, outputs)`` each: photo a file path (read with
    ``image_io.read_image``) or a zero-argument callable returning (H, W, 3) float 0..1 RGB (e.g. a movie frame);
    raw_depth a depth file (``.npy`` float32 as the job keeps them, or any ``image_io.read_depth`` format);
    outputs ``{format: path}`` as ``image_io.output_paths`` gives (png16, exr, npy, color).
    options: align_sequence's keywords. report: called with each frame's FrameStats as it is aligned.

    Two passes: the first aligns (keeping only each frame's scale, shift and range), the second reads each raw
    map again and writes ``(scale * raw + shift - low) / (high - low)`` with the sequence's low..high, so every
    format of every frame is in one common 0..1 range (png16 quantised over 0..1, not per file); each frame's
    outputs are written all-or-nothing (``image_io.write_depth_files``). ``flicker.json`` (written atomically) is
    the summary: flicker(...)'s keys plus "fallback_frames" (indices of frames after the first that were not
    fitted) and "seconds_per_frame" (mean alignment time, without reading and writing files).
    """
    from ..image_io import read_depth, read_image, write_depth_files

    def photo_of(source):
        return source() if callable(source) else read_image(source)

    stats: list[FrameStats] = []
    for _, frame_stats in align_sequence((photo_of(frame[0]) for frame in frames),
                                         (read_depth(frame[1]) for frame in frames), **options):
        stats.append(frame_stats)
        if report is not None:
            report(frame_stats)
    low = min(s.low for s in stats) if stats else 0.0
    high = max(s.high for s in stats) if stats else 1.0
    span = high - low if high - low > EPS else 1.0
    for frame, frame_stats in zip(frames, stats):
        depth = read_depth(frame[1]).astype(np.float64)
        common = ((depth * frame_stats.scale + frame_stats.shift - low) / span).astype(np.float32)
        write_depth_files(common, frame[2], value_range=(0.0, 1.0))
    summary = flicker(stats)
    summary["fallback_frames"] = [s.index for s in stats[1:] if not s.fitted]
    summary["seconds_per_frame"] = float(np.mean([s.seconds for s in stats])) if stats else 0.0
    _write_json_atomically(Path(job_dir) / "flicker.json", summary)
    return summary


# --- motion and static pixels -------------------------------------------------------------------------------------

def _static_pixels(flow, prev_grey: np.ndarray, grey: np.ndarray, tolerance: float):
    """(mask (h, w) bool of static pixels of the current frame, (map_x, map_y) float32 sampling the previous frame
    at each current pixel's source)."""
    backward = flow.calc(grey, prev_grey, None)  # grey(x) ~ prev_grey(x + backward(x))
    forward = flow.calc(prev_grey, grey, None)   # prev_grey(y) ~ grey(y + forward(y))
    h, w = grey.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + backward[..., 0], ys + backward[..., 1]
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    forward_there = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = np.sum((backward + forward_there) ** 2, axis=-1)
    lengths = np.sum(backward ** 2, axis=-1) + np.sum(forward_there ** 2, axis=-1)
    consistent = round_trip <= 0.01 * lengths + 0.5
    warped = cv2.remap(prev_grey, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    difference = warped.astype(np.float32) - grey.astype(np.float32)
    candidates = inside & consistent
    if candidates.any():  # a global brightness change (auto exposure, a light dimming) is not a change of picture
        difference -= np.median(difference[candidates])
    same = np.abs(difference) <= tolerance * 255.0
    return candidates & same, (map_x, map_y)


def _work_size(shape: tuple[int, int], work_side: int) -> tuple[int, int]:
    """(width, height) at most work_side long (cv2's order), the depth's own size when already smaller."""
    h, w = shape
    factor = min(1.0, work_side / max(h, w))
    return max(1, round(w * factor)), max(1, round(h * factor))


def _grey(photo: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 grey of a float 0..1 RGB photo at ``size`` (width, height)."""
    image = np.asarray(photo, np.float32)
    if (image.shape[1], image.shape[0]) != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    image = np.clip(image, 0.0, 1.0)
    return np.round(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) * 255.0).astype(np.uint8)


# --- the fit ------------------------------------------------------------------------------------------------------

def _robust_affine(x: np.ndarray, y: np.ndarray, iterations: int = 30) -> tuple[float, float] | None:
    """(scale, shift) of y ~ scale * x + shift, robust to outliers; None when x is (nearly) constant.

    Weighted reduced-major-axis fit (scale = sign(cov) sqrt(var_y / var_x), shift through the weighted means:
    unbiased when x and y carry relative noise of the same size, as two frames of one network do) with Huber
    IRLS weights on the residuals scale * x + shift - y from the unweighted fit on (delta = 1.345 x 1.4826 x
    median |residual|, re-estimated every iteration), stopping when scale and shift change by less than 1e-9
    relative. At most FIT_PIXELS pixels are used (a regular subsample).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.size > FIT_PIXELS:
        step = math.ceil(x.size / FIT_PIXELS)
        x, y = x[::step], y[::step]
    if x.size < 2:
        return None
    weights = np.ones_like(x)
    scale = shift = None
    for _ in range(iterations):
        total = weights.sum()
        mean_x, mean_y = (weights * x).sum() / total, (weights * y).sum() / total
        dx = x - mean_x
        variance = (weights * dx * dx).sum()
        if not variance > EPS * max(1.0, float(np.abs(x).max())) ** 2 * total:
            return None
        dy = y - mean_y
        covariance = (weights * dx * dy).sum()
        # reduced major axis: both sides are estimates with the same kind of noise, so the least-squares slope
        # (cov / var_x) would shrink by var_noise / var_x every frame and the shrinkage would compound along the
        # chain; the geometric mean of the two regressions' slopes does not
        new_scale = math.copysign(math.sqrt((weights * dy * dy).sum() / variance), covariance)
        new_shift = mean_y - new_scale * mean_x
        converged = scale is not None and abs(new_scale - scale) <= 1e-9 * abs(scale) + 1e-15 \
            and abs(new_shift - shift) <= 1e-9 * (abs(shift) + abs(scale)) + 1e-15
        scale, shift = new_scale, new_shift
        if converged:
            break
        residual = np.abs(scale * x + shift - y)
        sigma = 1.4826 * np.median(residual)
        if not sigma > 0:
            break  # an exact fit on at least half of the pixels
        delta = 1.345 * sigma
        weights = np.minimum(1.0, delta / np.maximum(residual, 1e-300))
    return float(scale), float(shift)


def _refusal(fit, raw: np.ndarray, prev_aligned: np.ndarray) -> str | None:
    """Why a fit cannot be used (None when it can): flat map, non-finite or non-positive scale, or a range ratio
    against the previous aligned frame beyond MAX_RANGE_RATIO."""
    if fit is None:
        return "flat depth: the frame's static pixels have one depth value; used the frame's own min-max"
    scale, shift = fit
    if not (math.isfinite(scale) and math.isfinite(shift)):
        return "refused scale: the fit did not give finite numbers; used the frame's own min-max"
    if scale <= 0:
        return (f"refused scale {scale:.3g}: not positive (depth order reversed against the previous frame); "
                "used the frame's own min-max")
    prev_span = float(prev_aligned.max() - prev_aligned.min())
    span = scale * float(raw.max() - raw.min())
    if prev_span > EPS and not (1 / MAX_RANGE_RATIO <= span / prev_span <= MAX_RANGE_RATIO):
        return (f"refused scale {scale:.3g}: it makes the frame's range {span / prev_span:.3g} times the previous "
                f"frame's (allowed 1/{MAX_RANGE_RATIO:g}..{MAX_RANGE_RATIO:g}); used the frame's own min-max")
    return None


def _min_max_affine(raw: np.ndarray) -> tuple[float, float]:
    """(scale, shift) of ``normalise.min_max``: (raw - min) / (max - min); (0, 0) for a constant map."""
    low, high = float(raw.min()), float(raw.max())
    if not high - low > EPS:
        return 0.0, 0.0
    return 1.0 / (high - low), -low / (high - low)


# --- checks -------------------------------------------------------------------------------------------------------

def _check_depth(raw, index: int, shape) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2:
        raise SequenceError(f"frame {index + 1}: depth must be a single-channel (H, W) map, got shape {raw.shape}")
    if shape is not None and raw.shape != shape:
        raise SequenceError(f"frame {index + 1}: depth is {raw.shape[1]}x{raw.shape[0]} but the sequence's first "
                            f"frame is {shape[1]}x{shape[0]}; give every frame's depth at one size")
    raw = raw.astype(np.float32)
    if not np.isfinite(raw).all():
        raise SequenceError(f"frame {index + 1}: depth has NaN or infinite values; fill or mask them before "
                            "aligning")
    return raw


def _check_photo(photo, index: int, shape) -> np.ndarray:
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] < 3:
        raise SequenceError(f"frame {index + 1}: photo must be (H, W, 3) RGB, got shape {photo.shape}")
    photo = photo[..., :3]
    if photo.dtype == np.uint8:
        photo = photo.astype(np.float32) / 255.0
    elif photo.dtype == np.uint16:
        photo = photo.astype(np.float32) / 65535.0
    h, w = shape
    if abs(photo.shape[1] / photo.shape[0] - w / h) > 0.02 * (w / h):
        raise SequenceError(f"frame {index + 1}: photo is {photo.shape[1]}x{photo.shape[0]} but its depth is "
                            f"{w}x{h} (another aspect ratio); pair each depth map with the photo it was made from")
    return photo


def _write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.chmod(name, 0o666 & ~_umask())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    from ..host.atomic_files import umask

    return umask()
