"""Resolution search (paper §5, "R0 / R20"): the largest input size at which (almost) every pixel still lies
within half a receptive field of an image edge.

Behaviour follows the published reference exactly (SPEC §3), including two quirks that change numbers:
both resizes inside the search are *linear* (the reference passes its interpolation flag where OpenCV expects
``dst``), and ``patch_scale`` is measured on the edge map of the last iteration executed, not the accepted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
EDGE_THRESHOLD = 0.4  # fraction of the gradient range above which a pixel counts as an edge
SEARCH_DOWNSCALE = 32  # the search works on maps of p_size = R / 32 pixels
MAX_UPSCALE = 3  # the input is never processed above 3x its largest side ...
MAX_WHOLE_SIZE = 3000  # ... nor above this (R_max)
R0_CONFIDENCE = 0.0
R20_CONFIDENCE = 0.2


@dataclass(frozen=True)
class ResolutionChoice:
    """Outcome of the search.

    R: processing resolution in pixels (a multiple of RF/2, at least RF), before the base network's size clamp.
    patch_scale: fraction of the search map within RF/128 of an edge, in [0, 1] (the paper's "K").
    """

    R: int
    patch_scale: float


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luma of an (H, W, 3) RGB float image -> (H, W) float64, same value range."""
    return np.dot(rgb[..., :3], GRAY_WEIGHTS)


def edge_magnitude(rgb: np.ndarray) -> np.ndarray:
    """|d/dy| + |d/dx| of the luma (3x3 Sobel, float64). (H, W, 3) -> (H, W), >= 0."""
    gray = rgb_to_gray(rgb)
    d_dx = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3)
    d_dy = cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)
    return np.abs(d_dy) + np.abs(d_dx)


def _max_pool_to(square: np.ndarray, p_size: int) -> np.ndarray:
    """Max-pool an (n, n) map with blocks of floor(n / p_size) (zero-padded at the end).

    The reference fails when p_size > n (a zero block size); a block of 1 (no pooling) is the defined
    continuation used here.
    """
    block = max(int(np.floor(square.shape[0] / p_size)), 1)
    rows, cols = (-(-side // block) for side in square.shape)  # ceil: a partial block at the end counts
    padded = np.zeros((rows * block, cols * block), square.dtype)
    padded[:square.shape[0], :square.shape[1]] = square
    return padded.reshape(rows, block, cols, block).max(axis=(1, 3))


def _binary_edges_at(edges: np.ndarray, p_size: int) -> np.ndarray:
    """Edge map pooled and resized to (p_size, p_size), thresholded at 0.5 -> float64 in {0, 1}."""
    pooled = _max_pool_to(edges, p_size)
    resized = cv2.resize(pooled, (p_size, p_size), interpolation=cv2.INTER_LINEAR)  # (width, height)
    return (resized >= 0.5).astype(np.float64)


def search_resolution(rgb: np.ndarray, receptive_field: int, confidence: float) -> ResolutionChoice:
    """Pick the processing resolution for ``rgb`` (float (H, W, 3) in [0, 1]).

    confidence: largest tolerated fraction of pixels farther than RF/2 from any edge
    (0 for R0, 0.2 for R20/Final).
    """
    height, width = rgb.shape[:2]
    image_dim = min(height, width)
    edges = edge_magnitude(rgb)
    edges = cv2.resize(edges, (image_dim, image_dim), interpolation=cv2.INTER_LINEAR)  # square, (w, h)
    middle = edges.min() + EDGE_THRESHOLD * (edges.max() - edges.min())
    edges = (edges >= middle).astype(np.float64)

    rf_kernel = np.ones((int(receptive_field / 32),) * 2, np.float64)
    scale_kernel = np.ones((int(receptive_field / 128),) * 2, np.float64)
    limit = min(MAX_WHOLE_SIZE, MAX_UPSCALE * max(height, width))

    chosen = receptive_field / SEARCH_DOWNSCALE
    binary = None
    for p_size in range(int(receptive_field / 32), int(limit / 32), int(receptive_field / 64)):
        binary = _binary_edges_at(edges, p_size)
        dilated = cv2.dilate(binary, rf_kernel, iterations=1)
        uncovered = float(np.mean(1 - dilated))
        if uncovered > confidence:
            break
        chosen = p_size
    if binary is None:
        # Tiny image: the reference's loop never runs and it crashes. Defined here as the network's own size,
        # with patch_scale measured on the first candidate map.
        binary = _binary_edges_at(edges, int(receptive_field / 32))
    patch_scale = float(np.mean(cv2.dilate(binary, scale_kernel, iterations=1)))
    return ResolutionChoice(R=int(chosen * SEARCH_DOWNSCALE), patch_scale=patch_scale)
