"""Double estimation (paper §4): one base-network pass at low and one at high resolution, fused by the
pix2pix merge network at 1024².

``DepthNetworks`` holds the two networks of a job, loaded once, and counts the time spent in forwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

MERGE_SIZE = 1024  # pix2pix working size ("do not change": the merge net was trained at it)


class Cancelled(Exception):
    """The caller's cancel event was set; raised between network calls."""


def min_max(x: np.ndarray) -> np.ndarray:
    """(x - min) / (max - min) in x's dtype; a constant map becomes zeros instead of NaN."""
    lo, hi = x.min(), x.max()
    span = hi - lo
    if not span > 0:
        return np.zeros_like(x)
    return (x - lo) / span


def to_merge_size(depth: np.ndarray) -> np.ndarray:
    """Cubic resize of an (h, w) map to the square (1024, 1024) working size (aspect ratio squashed)."""
    return cv2.resize(depth, (MERGE_SIZE, MERGE_SIZE), interpolation=cv2.INTER_CUBIC)


@dataclass
class DepthNetworks:
    """A base network and the merge network, on one device, with forward-time accounting.

    net: the registry entry (``boost_core.networks.registry.BaseNetwork``).
    """

    net: object
    base_model: object
    merge_model: object
    device: str = "cpu"
    cancel: object = None
    forward_seconds: float = 0.0
    calls: dict = field(default_factory=lambda: {"base": 0, "merge": 0})
    acceleration: object = None  # the acceleration.Acceleration applied to the models (None: plain)

    @classmethod
    def load(cls, net_name: str, base_weights: str | Path, merge_weights: str | Path | None, device: str = "cpu",
             cancel=None) -> "DepthNetworks":
        """Load both networks (``merge_weights=None``: base network only, for the plain single pass)."""
        from .networks import registry

        net = registry.get(net_name)
        base = registry.load_base(net, base_weights, device)
        merge = registry.load_merge_net(merge_weights, device) if merge_weights is not None else None
        return cls(net=net, base_model=base, merge_model=merge, device=device, cancel=cancel)

    def _autocast(self):
        """Autocast context of a reduced-precision acceleration option (a no-op for fp32, the default)."""
        import contextlib

        if self.acceleration is None or self.acceleration.precision == "fp32":
            return contextlib.nullcontext()
        from .acceleration import autocast

        return autocast(self.acceleration, self.device)

    def _check_cancel(self):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")

    def single(self, rgb: np.ndarray, size: int) -> np.ndarray:
        """Base-network estimate of float64 (h, w, 3) RGB in [0, 1] at ``size`` -> float32 (h, w)."""
        from .networks.estimate import single_estimate

        self._check_cancel()
        start = time.perf_counter()
        with self._autocast():
            out = single_estimate(self.net, self.base_model, rgb, size, self.device)
        self.forward_seconds += time.perf_counter() - start
        self.calls["base"] += 1
        return out

    def single_pass(self, rgb: np.ndarray) -> np.ndarray:
        """The network's own pass at its native size (no boosting) -> float32 (h, w), raw values."""
        from .networks.estimate import single_pass

        self._check_cancel()
        start = time.perf_counter()
        out = single_pass(self.net, self.base_model, rgb, self.device)
        self.forward_seconds += time.perf_counter() - start
        self.calls["base"] += 1
        return out

    def merge(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Merge-net output (tanh + 1) / 2 for two (1024, 1024) maps -> float32 (1024, 1024) in [0, 1].

        Each input is min-max normalised to [0, 1] then mapped to [-1, 1]; channel 0 is the low-resolution
        (structure) map, channel 1 the high-resolution (detail) map. No final normalisation here.
        """
        import torch

        if self.merge_model is None:
            raise RuntimeError("the merge network was not loaded (load_networks(..., merge_weights=...))")
        self._check_cancel()
        start = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            pair = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in (low, high)]
            pair = [_unit_range(x) * 2 - 1 for x in pair]
            real_a = torch.stack(pair)[None].to(self.device)  # (1, 2, 1024, 1024)
            fake_b = self.merge_model(real_a)
            out = ((fake_b + 1) / 2).squeeze().float().cpu().numpy()
        self.forward_seconds += time.perf_counter() - start
        self.calls["merge"] += 1
        return out


def _unit_range(x):
    """Torch min-max to [0, 1]; a constant tensor becomes zeros."""
    lo, hi = x.min(), x.max()
    if not bool(hi > lo):
        return x * 0
    return (x - lo) / (hi - lo)


def double_estimate(networks: DepthNetworks, rgb: np.ndarray, low_size: int, high_size: int) -> np.ndarray:
    """Merge of base estimates at ``low_size`` and ``high_size`` -> float32 (1024, 1024) in [0, 1].

    rgb: float64 (h, w, 3) in [0, 1]. The result has the image's aspect ratio squashed to a square.
    """
    low = to_merge_size(networks.single(rgb, low_size))
    high = to_merge_size(networks.single(rgb, high_size))
    return min_max(networks.merge(low, high))
