"""He et al.'s guided filter, box-filter form, as the reference's training data loader uses it (SPEC §A.4).

``guided_filter(guide, src, radius, eps)`` keeps the edges and details of ``guide`` but takes its local offset
and contrast from ``src``: with window means over (2r+1)x(2r+1) boxes truncated at the borders,
``a = cov(I, p) / (var(I) + eps)``, ``b = mean(p) - a·mean(I)``, output ``mean(a)·I + mean(b)``.
Computed in float64 (the reference computes in float32).
"""

from __future__ import annotations

import numpy as np


def box_sum(x: np.ndarray, radius: int) -> np.ndarray:
    """Sum over the (2r+1)x(2r+1) window around each pixel, truncated at the borders; (H, W) float64."""
    height, width = x.shape
    c = np.zeros((height + 1, width + 1), np.float64)
    c[1:, 1:] = np.cumsum(np.cumsum(x, axis=0, dtype=np.float64), axis=1)
    r0 = np.clip(np.arange(height) - radius, 0, height)
    r1 = np.clip(np.arange(height) + radius + 1, 0, height)
    c0 = np.clip(np.arange(width) - radius, 0, width)
    c1 = np.clip(np.arange(width) + radius + 1, 0, width)
    return (c[r1][:, c1] - c[r0][:, c1] - c[r1][:, c0] + c[r0][:, c0])


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int = 64, eps: float = 1e-8) -> np.ndarray:
    """Filter ``src`` guided by ``guide`` (both (H, W)); returns float64 (H, W).

    radius: window radius in pixels (the reference: 64); eps: regularisation (the reference: 1e-8 in training).
    """
    guide = np.asarray(guide, np.float64)
    src = np.asarray(src, np.float64)
    if guide.shape != src.shape or guide.ndim != 2:
        raise ValueError(f"guide and input must be (H, W) maps of one size, got {guide.shape} and {src.shape}")
    count = box_sum(np.ones_like(guide), radius)
    mean_i = box_sum(guide, radius) / count
    mean_p = box_sum(src, radius) / count
    cov_ip = box_sum(guide * src, radius) / count - mean_i * mean_p
    var_i = box_sum(guide * guide, radius) / count - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_sum(a, radius) / count * guide + box_sum(b, radius) / count
