"""The paper's pipeline, end to end: resolution search -> double estimation -> local boosting.

    result = boost(rgb, net="midas_v2", mode="final", base_weights=..., merge_weights=...)
    result.depth  # float32 (H, W), relative depth of kind result.kind

Modes: ``r0`` / ``r20`` (whole-image double estimate at R0 / R20), ``final`` (R20 base plus merged patches) and
``single`` (the base network's own pass at its native size, no boosting, for comparison).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import merging, patches, resolution
from .depth_networks import MERGE_SIZE, Cancelled, DepthNetworks
from .double_estimation import STEPS, double_estimate
from .local_boosting import local_boost
from .progressive import JobClock

MODES = ("single", "r0", "r20", "final")
OUTPUT_SIZES = ("input", "full")
MIN_SIDE = 8  # px; below this no network sees anything meaningful


class InputError(ValueError):
    """The image cannot be processed; the message names the problem and the fix."""


@dataclass
class BoostResult:
    """Output of :func:`boost`.

    depth: float32 (H, W) at the input size (output_size="input") or the boosted size ("full").
        MiDaS/SGR: min-max normalised inverse depth (large = near); LeReS: depth (large = far).
    kind: "inverse_depth" or "depth".
    R: resolution chosen by the search (px, before the base network's 1568 clamp).
    patch_scale: edge density measure of the search ("K"), in [0, 1].
    factor: local-boosting downscale (Final only, else None); target_shape: (H_T, W_T) (Final only).
    patches: processed patches, in merge order, rects in target pixels.
    whole_estimate: float32 (1024, 1024) whole-image double estimate in [0, 1].
    boosted: False when Final skipped local boosting (max_res < R, or no patch qualified).
    """

    depth: np.ndarray
    kind: str
    net: str
    mode: str
    R: int
    patch_scale: float
    factor: float | None = None
    target_shape: tuple[int, int] | None = None
    patches: list = field(default_factory=list)
    whole_estimate: np.ndarray | None = None
    boosted: bool = False
    warnings: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """JSON-friendly description (no arrays)."""
        return {
            "kind": self.kind, "net": self.net, "mode": self.mode, "R": self.R,
            "patch_scale": self.patch_scale, "factor": self.factor,
            "target_shape": list(self.target_shape) if self.target_shape else None,
            "patches": [{"id": p.id, "rect": list(p.rect)} for p in self.patches],
            "boosted": self.boosted, "shape": list(self.depth.shape), "warnings": list(self.warnings),
            "timings": dict(self.timings),
        }


def as_rgb_float(image: np.ndarray) -> np.ndarray:
    """Any photo array -> float64 (H, W, 3) RGB in [0, 1].

    Accepts (H, W) grey, (H, W, 1|3|4) (alpha dropped), uint8 / uint16 (scaled by their range) or floats
    (taken as [0, 1]). Raises InputError for empty, non-finite or too small images.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an (H, W) or (H, W, 3) image array, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = image[..., :3]
    if image.dtype == np.uint8:
        image = image.astype(np.float64) / 255
    elif image.dtype == np.uint16:
        image = image.astype(np.float64) / 65535
    else:
        image = image.astype(np.float64)
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(
            f"image is {width}x{height} px; Boost Depth needs at least {MIN_SIDE} px on each side "
            "(crop or pad it to a larger size)")
    if not np.isfinite(image).all():
        raise InputError("image holds NaN or infinite values; save it as an ordinary 8/16-bit photo")
    return image


def boost(image: np.ndarray, net: str = "midas_v2", mode: str = "final", max_res: float | None = None, *,
          base_weights: str | Path | None = None, merge_weights: str | Path | None = None,
          models_dir: str | Path | None = None, device: str = "cpu", output_size: str = "input",
          progress: Callable[[dict], None] | None = None, cancel=None,
          networks: DepthNetworks | None = None, max_batch: int | None = None, partial=None) -> BoostResult:
    """Boosted relative depth of one photo.

    image: (H, W, 3) RGB, float in [0, 1] (float64 gives bit-parity with the reference) or uint8/uint16.
    mode: "r0", "r20" or "final". max_res: cap on the long side of the boosted target (px; None = no cap).
    base_weights / merge_weights: checkpoint paths; when None they are located in the models folder.
    networks: already loaded networks (reused across images of one job; takes precedence over the paths).
    progress: called with {"event": "stage", "stage": ...}, {"event": "progress", "done", "of", "fraction"} (one per
        patch group) and sub-step events {"event": "progress", "stage", "step", "steps", "fraction"} (inside the
        whole-image stage and inside each patch group); every event carries ``elapsed_s`` (since the call) and,
        once measurable, ``eta_s`` (see ``progressive.JobClock``).
    partial: Final mode's intermediate maps: a ``progressive.PartialPublisher`` (or any callable
        ``partial(depth_fn, done, of, force=False)``) given the whole-image map (done 0, of None) and the canvas
        as patches are merged (at the output size); it decides whether to compute and publish. The result is the
        same with or without it.
    cancel: an object with ``is_set()`` (threading.Event); checked between network calls -> Cancelled.
    max_batch: patches per batched network call in Final: 1 is one patch at a time (the reference's schedule);
        >1 batches the patches' forwards (same numbers per patch to float32 rounding); None (default) picks
        ``depth_networks.default_max_batch`` for the device (pairs on CPU, 4 on GPUs).
    """
    mode = mode.lower()
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if output_size not in OUTPUT_SIZES:
        raise InputError(f"unknown output_size {output_size!r}; choose one of {', '.join(OUTPUT_SIZES)}")
    max_res = math.inf if max_res is None else max_res
    if max_res <= 0:
        raise InputError(f"max_res must be positive, got {max_res}")
    rgb = as_rgb_float(image)
    report = progress if isinstance(progress, JobClock) else JobClock(progress)

    if networks is None:
        networks = load_networks(net, base_weights, merge_weights, models_dir=models_dir, device=device,
                                 with_merge=mode != "single")
    networks.cancel = cancel
    spec = networks.net
    rf = spec.receptive_field
    timings: dict[str, float] = {}
    forward_before = networks.forward_seconds
    clock = time.perf_counter()

    def lap(stage: str):
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + now - clock
        clock = now

    if mode == "single":
        report({"event": "stage", "stage": "whole_image"})
        depth = networks.single_pass(rgb)
        lap("whole_image")
        if output_size == "full":
            depth = merging.resize_cubic(depth, _long_side(rgb.shape[:2], spec.single_size or rf))
        timings["network_forwards"] = networks.forward_seconds - forward_before
        return BoostResult(depth=depth, kind=spec.output_kind, net=spec.name, mode=mode,
                           R=spec.single_size or rf, patch_scale=0.0, timings=timings)

    report({"event": "stage", "stage": "resolution_search"})
    if np.ptp(rgb) == 0:
        return _flat_result(rgb, spec, mode)
    confidence = resolution.R0_CONFIDENCE if mode == "r0" else resolution.R20_CONFIDENCE
    choice = resolution.search_resolution(rgb, rf, confidence)
    lap("resolution_search")

    report({"event": "stage", "stage": "whole_image"})
    whole = double_estimate(networks, rgb, rf, choice.R, on_step=lambda i: report({
        "event": "progress", "stage": "whole_image", "step": i, "steps": STEPS, "fraction": round(i / STEPS, 4)}))
    lap("whole_image")
    result = BoostResult(depth=whole, kind=spec.output_kind, net=spec.name, mode=mode, R=choice.R,
                         patch_scale=choice.patch_scale, whole_estimate=whole, timings=timings)

    if mode == "final":
        result.factor = patches.boost_factor(choice.patch_scale, choice.R)
        if max_res < choice.R:
            result.warnings.append(f"max_res {max_res:g} < R {choice.R}: local boosting skipped (R20 result)")
        else:
            if partial is not None:  # the first depth the user sees: the whole-image estimate
                partial(lambda: _whole_to_output(whole, rgb.shape[:2], choice.R, output_size), 0, None, force=True)
                lap("partial")
            local_boost(result, rgb, networks, max_res, output_size, report, lap, max_batch=max_batch,
                        partial=partial)
    if not result.boosted:
        result.depth = _whole_to_output(whole, rgb.shape[:2], choice.R, output_size)
    lap("output")
    timings["network_forwards"] = networks.forward_seconds - forward_before
    return result


def load_networks(net: str, base_weights=None, merge_weights=None, *, models_dir=None,
                  device: str = "cpu", with_merge: bool = True, acceleration=None) -> DepthNetworks:
    """Load the base network ``net`` and the merge network once, locating missing paths in the models folder.

    with_merge=False loads the base network alone (enough for mode "single").
    acceleration: an ``acceleration.Acceleration``; None means ``Acceleration()``, the parity-safe optimisations
    (BatchNorm folded, channels-last for convolutional networks, freed memory reused; float32 rounding
    differences only, verified by the parity goldens). ``acceleration.PLAIN`` runs the models exactly as loaded
    (the benchmarks' baseline); bf16/fp16 precision is faster on some hardware and breaks parity.
    """
    from ..networks import registry

    spec = registry.get(net)
    if not with_merge:
        merge_weights = None
    if base_weights is None or (with_merge and merge_weights is None):
        from ..weights import store as weights

        folder = weights.models_dir(models_dir)
        if base_weights is None:
            base_weights = weights.locate_first(spec.weights, folder)
        if with_merge and merge_weights is None:
            merge_weights = weights.locate("merge_net", folder)
    from ..speed import acceleration as speed

    networks = DepthNetworks.load(net, base_weights, merge_weights, device=device)
    return speed.accelerate_networks(networks, speed.Acceleration() if acceleration is None else acceleration)


def _long_side(shape: tuple[int, int], side: int) -> tuple[int, int]:
    """(h, w) scaled so that the longer side is ``side`` px (aspect ratio kept)."""
    height, width = shape
    return round(side * height / max(shape)), round(side * width / max(shape))


def _whole_to_output(whole: np.ndarray, shape: tuple[int, int], R: int, output_size: str) -> np.ndarray:
    """Whole-image estimate (1024²) -> the input size, or for "full" the aspect-correct size with long side R."""
    return merging.resize_cubic(whole, _long_side(shape, R) if output_size == "full" else shape)


def _flat_result(rgb: np.ndarray, spec, mode: str) -> BoostResult:
    """A single-colour image has no depth cue: a defined, flat map instead of the reference's crash."""
    depth = np.zeros(rgb.shape[:2], np.float32)
    return BoostResult(depth=depth, kind=spec.output_kind, net=spec.name, mode=mode, R=spec.receptive_field,
                       patch_scale=0.0, whole_estimate=np.zeros((MERGE_SIZE, MERGE_SIZE), np.float32),
                       warnings=["image is a single colour: no depth cue, the map is flat (all zeros)"])


__all__ = ["boost", "BoostResult", "Cancelled", "InputError", "load_networks", "as_rgb_float"]
