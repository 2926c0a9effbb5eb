"""Local boosting's frame: the patches of Final mode and the canvas their merged estimates are blended into.

Both schedules of Final (``pipeline._local_boost``, one patch at a time as the reference runs it, and
``schedule.local_boost``, the patches' network calls batched) open the same :class:`PatchCanvas`, blend each
patch's aligned estimate with :meth:`PatchCanvas.blend` in selection order, and end with :meth:`PatchCanvas.finish`;
only how the merged estimates are computed differs between them.

    canvas = PatchCanvas.open(result, rgb, rf, max_res, output_size, report, lap)
    for patch in canvas.selected:
        x, y, w, h = canvas.rect(patch)
        ...  # canvas.rgb[y:y + h, x:x + w] -> merged estimate, aligned to canvas.base[y:y + h, x:x + w]
        canvas.blend((x, y, w, h), aligned)
    canvas.finish(result, output_size)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import merging, patches


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


__all__ = ["PatchCanvas"]
