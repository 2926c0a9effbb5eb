"""Double estimation (paper §4): one base-network pass at low and one at high resolution, fused by the
pix2pix merge network at 1024².

    whole = double_estimate(networks, rgb, rf, R)                          # the whole image: RF and R
    estimates = double_estimates(networks, crops, rf, 2 * rf, max_batch=2)   # Final's patches: RF and 2·RF

Results are float32 (1024, 1024) in [0, 1]: the image's aspect ratio squashed to the merge network's square.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..normalise import min_max
from .depth_networks import MERGE_SIZE, DepthNetworks


def to_merge_size(depth: np.ndarray) -> np.ndarray:
    """Cubic resize of an (h, w) map to the square (1024, 1024) working size (aspect ratio squashed)."""
    return cv2.resize(depth, (MERGE_SIZE, MERGE_SIZE), interpolation=cv2.INTER_CUBIC)  # cv2 takes (W, H)


STEPS = 3  # low pass, high pass, merge: the sub-steps ``on_step`` is told about


def double_estimates(networks: DepthNetworks, rgbs: Sequence[np.ndarray], low_size: int, high_size: int,
                     max_batch: int = 1, on_step=None) -> list[np.ndarray]:
    """Merges of base estimates at ``low_size`` and ``high_size`` (network px) -> float32 (1024, 1024) in [0, 1].

    rgbs: float64 (h_i, w_i, 3) RGB in [0, 1]. max_batch: samples per forward (1: one at a time).
    on_step(i): called after each of the ``STEPS`` sub-steps (i = 1, 2, 3), for progress reports.
    """
    step = on_step or (lambda i: None)
    lows = [to_merge_size(x) for x in networks.singles(rgbs, low_size, max_batch)]
    step(1)
    highs = [to_merge_size(x) for x in networks.singles(rgbs, high_size, max_batch)]
    step(2)
    merged = [min_max(m) for m in networks.merges(lows, highs, max_batch)]
    step(3)
    return merged


def double_estimate(networks: DepthNetworks, rgb: np.ndarray, low_size: int, high_size: int,
                    on_step=None) -> np.ndarray:
    """``double_estimates(networks, [rgb], low_size, high_size, on_step=on_step)[0]``."""
    return double_estimates(networks, [rgb], low_size, high_size, on_step=on_step)[0]


__all__ = ["STEPS", "double_estimate", "double_estimates", "to_merge_size"]
