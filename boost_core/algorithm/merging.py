"""Local boosting, part 2 (paper §6): align a patch's double estimate to the base and blend it in.

Maps are float arrays of relative depth; the canvas (accumulator) is float32 (H_c, W_c).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import cv2
import numpy as np

MASK_TEMPLATE_SIZE = 3000
MASK_MARGIN = 0.15  # the template is 1 inside [15%, 85%] before feathering


@lru_cache(maxsize=1)
def feather_mask_template() -> np.ndarray:
    """The 3000x3000 float32 feathered square in [0, 1]: 1 in the centre 70%, ~0 at the border.

    The reference Gaussian-blurs the square (kernel 749, sigma 187, OpenCV's default border, reflect-101) and
    min-max normalises it. The square is the outer product of a 1-D box with itself and the Gaussian is separable,
    so the blurred square is the outer product of the blurred box: computed that way in float64 with OpenCV's own
    kernel (0.3 s instead of 4.4 s for the 2-D blur, a fixed cost of every Final job), it matches the 2-D blur
    within 1.4e-6 (float32 rounding of the latter). Built once per process (read-only).
    """
    size = MASK_TEMPLATE_SIZE
    margin = int(MASK_MARGIN * size)
    box = np.zeros(size)
    box[margin:size - margin] = 1
    sigma = int(size / 16)
    kernel = int(2 * np.ceil(2 * sigma) + 1)
    taps = cv2.getGaussianKernel(kernel, sigma, cv2.CV_64F)[:, 0]  # symmetric, sums to 1
    index = np.abs(np.arange(-(kernel // 2), size + kernel // 2))  # reflect-101 border: -i -> i ...
    index = np.where(index > size - 1, 2 * (size - 1) - index, index)  # ... size-1+i -> size-1-i
    blurred = np.convolve(box[index], taps, mode="valid")  # (size,) float64, >= 0
    low, high = blurred.min() ** 2, blurred.max() ** 2  # the extremes of the outer product
    mask = ((np.outer(blurred, blurred) - low) / (high - low)).astype(np.float32)
    mask.flags.writeable = False
    return mask


class FeatherMasks:
    """Feathered masks at patch sizes: the template resized linearly, cached per (h, w)."""

    def __init__(self):
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, shape: tuple[int, int]) -> np.ndarray:
        """(h, w) -> float32 (h, w) mask in [0, 1]."""
        if shape not in self._cache:
            template = feather_mask_template()
            self._cache[shape] = cv2.resize(template, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return self._cache[shape]


def align_to_base(merged: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Shift/scale of ``merged`` onto ``base`` (same shape, float32): p0·merged + p1 by ``np.polyfit``, float64.

    Parity quirk, kept on purpose: the reference hands polyfit float32 maps, so its default cut-off
    ``rcond = len(x)·eps(float32)`` (≈ 0.125 for 1024² pixels) applies. When the merged map's values vary
    little around their mean, the fit is truncated to rank 1 and comes out nearly flat, damping the patch's
    contribution. Fitting in float64 instead changes Final results by up to ~0.3 (measured on the goldens).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RankWarning: the truncation above is the reference's behaviour
        p = np.polyfit(merged.reshape(-1), base.reshape(-1), deg=1)
    return np.polyval(p, merged.reshape(-1)).reshape(merged.shape)


def resize_cubic(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cubic resize to ``shape`` = (h, w); same dtype. OpenCV copies when the size already matches."""
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)  # (width, height)


def blend_into(canvas: np.ndarray, rect, patch_depth: np.ndarray, mask: np.ndarray) -> None:
    """canvas[rect] = canvas·(1 - mask) + patch_depth·mask, in place (canvas keeps its float32 dtype).

    rect = (x, y, w, h) in canvas pixels; patch_depth and mask have the shape of the (clipped) crop.
    """
    x, y, w, h = rect
    window = canvas[y:y + h, x:x + w]
    window[...] = window * (1 - mask) + patch_depth * mask
