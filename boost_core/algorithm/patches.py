"""Local boosting, part 1 (paper §6): target resolution, patch grid, discard and growth of patches.

Everything here depends on the image alone (Sobel gradients, resizes, thresholds), never on network weights.
Rectangles are ``(x, y, w, h)`` in pixels of the upsampled target image ``img_T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .resolution import edge_magnitude

MIN_FACTOR = 0.2
GRID_STRIDE = 0.75  # grid stride as a fraction of the patch half-size
GROWTH_STEP = 32  # patches grow by int(32 / factor) px per step


@dataclass(frozen=True)
class Patch:
    """A patch to boost: ``rect = (x, y, w, h)`` in target pixels; ``id`` is its index among kept patches."""

    id: int
    rect: tuple[int, int, int, int]

    @property
    def size(self) -> int:
        return self.rect[2]


def boost_factor(patch_scale: float, R: int) -> float:
    """Downscale from 2R applied to the target (paper's "K" rule), clamped to [0.2, 1]."""
    return max(min(1.0, 4 * patch_scale * R / 3000), MIN_FACTOR)


def target_shape(image_shape: tuple[int, int], R: int, factor: float, max_res: float) -> tuple[int, int]:
    """(H_T, W_T) of the upsampled image: long side 2R / factor, capped to max_res on the long side."""
    height, width = image_shape
    if height > width:
        a, b = 2 * R, round(2 * R * width / height)
    else:
        a, b = round(2 * R * height / width), 2 * R
    a, b = int(round(a / factor)), int(round(b / factor))
    if max(a, b) > max_res:
        if height > width:
            a, b = max_res, round(max_res * width / height)
        else:
            a, b = round(max_res * height / width), max_res
        a, b = int(a), int(b)
    return a, b


def upsample_image(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cubic resize of a float64 (H, W, 3) image to ``shape`` = (H_T, W_T); may overshoot [0, 1]."""
    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)  # (width, height)


class _Density:
    """Mean thresholded gradient over rectangles, via an integral image."""

    def __init__(self, rgb_t: np.ndarray):
        grad = edge_magnitude(rgb_t)
        positive = grad[grad > 0]
        threshold = positive.mean() if positive.size else 0.0
        grad[grad < threshold] = 0
        self.image_mean = grad.sum() / grad.size
        self.integral = cv2.integral(grad)  # float64, (H_T + 1, W_T + 1)

    def __call__(self, rect) -> float:
        x, y, w, h = rect
        s = self.integral
        total = s[y + h, x + w] - s[y, x + w] - s[y + h, x] + s[y, x]
        return total / (w * h)


def grid(shape: tuple[int, int], receptive_field: int) -> list[tuple[int, int, int, int]]:
    """Initial 2·RF-square patches, centres on a 0.75·RF stride, column-major (x outer, y inner)."""
    height, width = shape
    half = round(2 * receptive_field / 2)
    stride = int(round(GRID_STRIDE * half))
    return [
        (cx - half, cy - half, 2 * half, 2 * half)
        for cx in range(half, width - half, stride)
        for cy in range(half, height - half, stride)
    ]


def select_patches(rgb_t: np.ndarray, receptive_field: int, factor: float) -> list[Patch]:
    """Keep detail-rich grid patches, grow each while it stays detail-rich, biggest first.

    rgb_t: the upsampled float64 (H_T, W_T, 3) image. A patch is kept if its gradient density is at least the
    image's; it then grows by ``int(32 / factor)`` px per step until growing would leave the image (touching the
    last row/column counts as leaving) or drop below the image density.
    """
    height, width = rgb_t.shape[:2]
    density = _Density(rgb_t)
    step = int(GROWTH_STEP / factor)
    kept: list[Patch] = []
    for rect in grid((height, width), receptive_field):
        if density(rect) < density.image_mean:
            continue
        while True:
            x, y, w, h = rect
            grown = (x - int(step / 2), y - int(step / 2), w + step, h + step)
            gx, gy, gw, gh = grown
            if gx < 0 or gy < 0 or gy + gh >= height or gx + gw >= width:
                break
            if density(grown) < density.image_mean:
                break
            rect = grown
        kept.append(Patch(id=len(kept), rect=tuple(int(v) for v in rect)))
    return sorted(kept, key=lambda p: p.size, reverse=True)  # stable: ties keep grid order


def scale_rect(rect, scale: float) -> tuple[int, int, int, int]:
    """Rectangle in target pixels -> pixels of the merge canvas (``np.round``, half to even)."""
    return tuple(int(v) for v in np.round(np.asarray(rect, dtype=np.float64) * scale).astype(int))


def merge_canvas_shape(shape_t: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of the canvas patches are merged on: the target scaled by ``scale`` (Python round)."""
    return round(shape_t[0] * scale), round(shape_t[1] * scale)

