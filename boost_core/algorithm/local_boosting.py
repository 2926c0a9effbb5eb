"""Local boosting (paper §5, Final mode): select detail-rich patches, merge a double estimate of each into the
R20 base, feathered, in selection order.

    local_boost(result, rgb, networks, max_res, output_size, report, lap, max_batch=2)

``max_batch`` is the one schedule knob: 1 runs one patch at a time (the reference's schedule); larger values
stack up to that many patches in each network forward (``DepthNetworks.singles`` / ``merges``). Either way each
patch is aligned and blended in order into the same :class:`PatchCanvas`, so the canvas sees exactly the
one-at-a-time sequence of operations and results agree to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import merging, patches
from .depth_networks import MERGE_SIZE, DepthNetworks, chunks, default_max_batch
from .double_estimation import STEPS, double_estimates


@dataclass
class PatchCanvas:
    """The selected patches and the arrays they are read from and blended into, all at the merge canvas's size.

    selected: the patches in merge order (rects in the upsampled image's pixels; :meth:`rect` scales them).
    scale: canvas pixels per upsampled-image pixel (1 for output_size "full", input / target height for "input").
    rgb: (h, w, 3) float, the image at the canvas size; patches' crops are read from it.
    base: (h, w) float32, the R20 whole-image estimate at the canvas size; never written (the reference aligns every
        patch to the untouched base, not to the accumulator).
    depth: (h, w) float32, the accumulator, a copy of ``base`` that each patch is feather-blended into.
    """

    selected: list[patches.Patch]
    scale: float
    rgb: np.ndarray
    base: np.ndarray
    depth: np.ndarray
    height: int  # of the input image, px
    width: int
    masks: merging.FeatherMasks

    @classmethod
    def open(cls, result, rgb: np.ndarray, receptive_field: int, max_res: float, output_size: str, report,
             lap) -> PatchCanvas:
        """Select the patches on the image upsampled to the target shape (``result.R`` and ``result.factor``) and
        set up the canvas; records ``result.target_shape`` and ``result.patches``, reports the "patches" stage and
        laps "patch_selection"."""
        height, width = rgb.shape[:2]
        report({"event": "stage", "stage": "patches"})
        shape_t = patches.target_shape((height, width), result.R, result.factor, max_res)
        rgb_t = patches.upsample_image(rgb, shape_t)
        selected = patches.select_patches(rgb_t, receptive_field, result.factor)
        result.target_shape = shape_t
        result.patches = selected
        lap("patch_selection")

        scale = height / shape_t[0] if output_size == "input" else 1.0
        canvas_shape = patches.merge_canvas_shape(shape_t, scale)
        rgb_canvas = merging.resize_cubic(rgb_t, canvas_shape)
        del rgb_t
        base = merging.resize_cubic(result.whole_estimate, canvas_shape)
        canvas = cls(selected, scale, rgb_canvas, base, base.copy(), height, width, merging.FeatherMasks())
        lap("patch_selection")
        return canvas

    def rect(self, patch: patches.Patch) -> tuple[int, int, int, int]:
        """(x, y, w, h) of ``patch`` on the canvas, px."""
        return patches.scale_rect(patch.rect, self.scale)

    def blend(self, rect, aligned: np.ndarray) -> None:
        """Feather-blend ``aligned`` ((h, w) float32, the patch's merged estimate aligned to its base crop and
        resized to the rect) into the accumulator at ``rect`` (x, y, w, h)."""
        merging.blend_into(self.depth, rect, aligned, self.masks(aligned.shape))

    def output_map(self, output_size: str) -> np.ndarray:
        """The accumulator as it stands, at the output size (the input's for "input"): what ``finish`` returns,
        for intermediate maps."""
        return (merging.resize_cubic(self.depth, (self.height, self.width)) if output_size == "input"
                else self.depth.copy())

    def finish(self, result, output_size: str, report) -> None:
        """Set ``result.depth`` (resized to the input for output_size "input") and ``result.boosted``, or warn
        that no patch qualified (the result stays the R20 one)."""
        if self.selected:
            count = len(self.selected)
            report({"event": "progress", "done": count, "of": count, "fraction": 1.0})
            result.boosted = True
            result.depth = (merging.resize_cubic(self.depth, (self.height, self.width)) if output_size == "input"
                            else self.depth)
        else:
            result.warnings.append("no patch qualified for local boosting (R20 result)")


GROUP_STEPS = STEPS + 1  # a patch group's sub-steps: the double estimate's three, then merge and blend


def local_boost(result, rgb: np.ndarray, networks: DepthNetworks, max_res: float, output_size: str, report, lap, *,
                max_batch: int | None = None, partial=None) -> None:
    """Final mode on ``result`` (whose R, factor and whole_estimate are set): sets ``result.depth``,
    ``target_shape``, ``patches`` and ``boosted``.

    rgb: float64 (H, W, 3) in [0, 1]. max_res: cap on the target's long side (px). report: progress callback
    (stage "patches", then {"event": "progress", "done", "of", "fraction"} per group of patches). lap(stage):
    timing callback. max_batch: patches per forward (None: ``default_max_batch`` for the device; 1: one at a time).
    Inside each group, sub-step events {"event": "progress", "stage": "patches", "step", "steps", "fraction"} keep
    the report alive between the per-group events (a group of patches is several network passes).
    partial(depth_fn, done, of, force=False): offered the canvas at the output size after each group (it decides
    whether to publish) and, forced, the finished map; see ``progressive.PartialPublisher``.
    """
    max_batch = default_max_batch(networks.device) if max_batch is None else max(1, max_batch)
    rf = networks.net.receptive_field
    canvas = PatchCanvas.open(result, rgb, rf, max_res, output_size, report, lap)
    total = len(canvas.selected)
    done = 0
    for group in chunks(canvas.selected, max_batch):
        report({"event": "progress", "done": done, "of": total, "fraction": done / total})

        def step(i, done=done, size=len(group)):
            report({"event": "progress", "stage": "patches", "step": i, "steps": GROUP_STEPS,
                    "fraction": round((done + size * i / GROUP_STEPS) / total, 4)})

        rects = [canvas.rect(patch) for patch in group]
        crops = [canvas.rgb[y:y + h, x:x + w] for x, y, w, h in rects]
        base_crops = [canvas.base[y:y + h, x:x + w] for x, y, w, h in rects]  # the untouched R20 base
        estimates = double_estimates(networks, crops, rf, 2 * rf, max_batch, on_step=step)  # (1024, 1024) each
        bases_1024 = [merging.resize_cubic(crop, (MERGE_SIZE,) * 2) for crop in base_crops]
        merged = networks.merges(bases_1024, estimates, max_batch)
        for rect, crop, one, base_1024 in zip(rects, base_crops, merged, bases_1024):
            canvas.blend(rect, merging.resize_cubic(merging.align_to_base(one, base_1024), crop.shape))
        step(GROUP_STEPS)
        done += len(group)
        lap("patch_merge")
        if partial is not None and done < total:
            partial(lambda: canvas.output_map(output_size), done, total)
            lap("partial")
    canvas.finish(result, output_size, report)
    if partial is not None and canvas.selected:
        partial(lambda: result.depth, total, total, force=True)
        lap("partial")


__all__ = ["PatchCanvas", "local_boost"]
