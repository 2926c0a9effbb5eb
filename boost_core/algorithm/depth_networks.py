"""The two networks of a job, loaded once: timed forwards, cancel checks and batching of equal-size inputs.

    networks = DepthNetworks.load("midas_v2", base_path, merge_path)
    networks.singles([rgb_a, rgb_b], 384)     # base-network estimates, [(h_i, w_i) float32, ...]
    networks.merges([low_a], [high_a])        # merge-net outputs, [(1024, 1024) float32 in [0, 1], ...]

Every sample goes through the same per-sample steps whether it runs alone or stacked with others (the input
preparation and post-processing of ``networks.estimate``, the merge net's per-sample min-max to [-1, 1]); only the
forward runs on an (N, C, h, w) batch, so results equal the one-at-a-time ones to float32 rounding of the kernels.
Batch sizes are bounded by an activation-memory budget (estimated per sample from the input size) and by
``max_batch``; on CPU the base network's inputs above ``CPU_MAX_BATCHED_BASE_PIXELS`` go one at a time (batching
them was measured slower there). With lanes (``speed.lanes``, CPU), the forwards of one call are spread over them,
the samples split evenly (a pair: one each) and the budget shared; a call with one forward keeps every thread.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..normalise import min_max

MERGE_SIZE = 1024  # px: the merge network's square working size ("do not change": it was trained at it)
#: default activation budget of one batched forward, bytes
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
#: default cap on samples per forward on an accelerator (beyond it batching gains nothing measurable)
DEFAULT_MAX_BATCH = 4
#: on CPU (measured per sample, channels-last, 2 threads, 2 samples a forward vs 1): the merge net at 1024² -8% and
#: MiDaS v2 at its receptive field (384²) -9%, but MiDaS v2 at 768² +5%; so patches go in pairs and base-network
#: inputs larger than this many pixels still go one at a time
CPU_MAX_BATCH = 2
CPU_MAX_BATCHED_BASE_PIXELS = 448 * 448
#: peak activation bytes per input pixel of one sample, measured (CPU, float32): MiDaS v2 at 768² peaks
#: at ~0.55 GB over its weights, the merge net at 1024² at ~0.25 GB
_BYTES_PER_PIXEL = {"base": 1000, "merge": 250}


class Cancelled(Exception):
    """The caller's cancel event was set; raised between network calls."""


def default_max_batch(device: str = "cpu") -> int:
    """Samples per batched forward: CPU_MAX_BATCH on CPU (pairs; the base network's high-resolution inputs stay
    single), DEFAULT_MAX_BATCH on an accelerator (which a single 384² sample leaves mostly idle)."""
    return CPU_MAX_BATCH if str(device).startswith("cpu") else DEFAULT_MAX_BATCH


def batch_size(kind: str, pixels: int, memory_budget: int = DEFAULT_MEMORY_BUDGET,
               max_batch: int = DEFAULT_MAX_BATCH) -> int:
    """Samples per forward for inputs of ``pixels`` (h·w) px: within the budget, at least 1, at most max_batch."""
    per_sample = _BYTES_PER_PIXEL[kind] * pixels
    return int(max(1, min(max_batch, memory_budget // max(per_sample, 1))))


def chunks(items: Sequence, size: int):
    """``items`` in consecutive lists of at most ``size`` (at least 1)."""
    size = max(1, size)
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


@dataclass
class DepthNetworks:
    """A base network and the merge network, on one device, with forward-time accounting.

    net: the registry entry (``boost_core.networks.registry.BaseNetwork``; None for a merge-only job).
    forward_seconds: wall time spent in forwards so far; calls: samples run per network ("base", "merge").
    acceleration: the ``speed.acceleration.Acceleration`` applied to the models (None: plain).
    lanes: a ``speed.lanes.ForwardLanes`` the forwards of one call run side by side in (None: in turn).
    """

    net: object
    base_model: object
    merge_model: object
    device: str = "cpu"
    cancel: object = None
    forward_seconds: float = 0.0
    calls: dict = field(default_factory=lambda: {"base": 0, "merge": 0})
    acceleration: object = None
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    lanes: object = None

    @classmethod
    def load(cls, net_name: str, base_weights: str | Path, merge_weights: str | Path | None, device: str = "cpu",
             cancel=None) -> DepthNetworks:
        """Load both networks (``merge_weights=None``: base network only, for the plain single pass)."""
        from ..networks import registry

        net = registry.get(net_name)
        base = registry.load_base(net, base_weights, device)
        merge = registry.load_merge_net(merge_weights, device) if merge_weights is not None else None
        return cls(net=net, base_model=base, merge_model=merge, device=device, cancel=cancel)

    def check_cancel(self) -> None:
        """Raise Cancelled when the job's cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")

    def _autocast(self):
        """Autocast context of a reduced-precision acceleration option (a no-op for fp32, the default)."""
        if self.acceleration is None:
            return contextlib.nullcontext()
        from ..speed.acceleration import autocast

        return autocast(self.acceleration, self.device)

    @contextlib.contextmanager
    def _timed(self, kind: str, samples: int):
        """Check the cancel event, then count the block's wall time as forward time of ``samples`` samples."""
        self.check_cancel()
        start = time.perf_counter()
        yield
        self.forward_seconds += time.perf_counter() - start
        self.calls[kind] += samples

    def _forward(self, model, batch):
        """``model`` on a stacked CPU batch (N, C, h, w) -> its output on the CPU, float32 (untimed)."""
        import torch

        with torch.inference_mode(), self._autocast():  # both are per thread: entered in the one that runs
            return model(batch.to(self.device)).float().cpu()

    def forward(self, model, batch, kind: str):
        """One timed forward of ``model`` on a stacked CPU batch (N, C, h, w); returns the output on the CPU,
        float32. kind: "base" or "merge" (for ``calls``)."""
        with self._timed(kind, batch.shape[0]):
            return self._forward(model, batch)

    def forwards(self, model, batches: list, kind: str) -> list:
        """``[forward(model, b, kind) for b in batches]``, side by side in the lanes when there are several and
        lanes (timed as one block: the wall time they took together). A cancel while they run stops them at their
        next layer and raises Cancelled."""
        if self.lanes is None or len(batches) < 2:
            return [self.forward(model, batch, kind) for batch in batches]
        from ..speed.lanes import LanesStopped

        with self._timed(kind, sum(batch.shape[0] for batch in batches)):
            try:
                return self.lanes.map(lambda batch: self._forward(model, batch), batches, cancel=self.cancel)
            except LanesStopped:  # the cancel event was set while they ran (a layer in, not a forward)
                self.check_cancel()
                raise

    def _chunk_size(self, kind: str, pixels: int, count: int, cap: int) -> int:
        """Samples per forward for ``count`` inputs of ``pixels`` px: ``batch_size`` within the budget (shared by
        the lanes) and ``cap``; with lanes, at most an even share of ``count`` per lane."""
        lanes = 1 if self.lanes is None else self.lanes.count
        size = batch_size(kind, pixels, self.memory_budget // lanes, cap)
        return min(size, -(-count // lanes)) if lanes > 1 and count > 1 else size

    def singles(self, rgbs: Sequence[np.ndarray], size: int, max_batch: int = 1) -> list[np.ndarray]:
        """Base-network estimates of float64 (h_i, w_i, 3) RGB crops in [0, 1] at network ``size`` -> float32
        (h_i, w_i) maps, each exactly as ``networks.estimate.single_estimate``; inputs of equal network size are
        stacked up to ``max_batch`` a forward."""
        import torch

        from ..networks.estimate import check_image, postprocess, prepare_input

        images = [check_image(rgb) for rgb in rgbs]
        inputs = [prepare_input(self.net, image, size) for image in images]
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for index, x in enumerate(inputs):
            groups.setdefault(tuple(x.shape), []).append(index)
        on_cpu = str(self.device).startswith("cpu")
        batched: list[list[int]] = []  # sample indices per forward, equal shapes in each
        for shape, indices in groups.items():
            pixels = shape[-2] * shape[-1]
            cap = 1 if on_cpu and pixels > CPU_MAX_BATCHED_BASE_PIXELS else max_batch
            batched.extend(chunks(indices, self._chunk_size("base", pixels, len(indices), cap)))
        outputs = self.forwards(self.base_model, [torch.cat([inputs[i] for i in chunk]) for chunk in batched], "base")
        for chunk, y in zip(batched, outputs):
            for row, index in enumerate(chunk):
                pred = y[row].reshape(y.shape[-2], y.shape[-1]).numpy()
                results[index] = postprocess(self.net, pred, images[index].shape[:2])
        return results

    def single(self, rgb: np.ndarray, size: int) -> np.ndarray:
        """``singles([rgb], size)[0]``: float32 (h, w)."""
        return self.singles([rgb], size)[0]

    def single_pass(self, rgb: np.ndarray) -> np.ndarray:
        """The network's own pass at its native size (no boosting) -> float32 (h, w), raw values."""
        from ..networks.estimate import single_pass

        with self._timed("base", 1):
            return single_pass(self.net, self.base_model, rgb, self.device)

    def merges(self, lows: Sequence[np.ndarray], highs: Sequence[np.ndarray], max_batch: int = 1) -> list[np.ndarray]:
        """Merge-net outputs (tanh + 1) / 2 for pairs of (1024, 1024) maps -> float32 (1024, 1024) in [0, 1].

        Each input is min-max normalised to [0, 1] then mapped to [-1, 1]; channel 0 is the low-resolution
        (structure) map, channel 1 the high-resolution (detail) map. No final normalisation here.
        """
        import torch

        if self.merge_model is None:
            raise RuntimeError("the merge network was not loaded (load_networks(..., merge_weights=...))")
        if len(lows) != len(highs):
            raise ValueError(f"merges needs as many low as high maps, got {len(lows)} and {len(highs)}")
        size = self._chunk_size("merge", MERGE_SIZE * MERGE_SIZE, len(lows), max_batch)
        batches = []
        for chunk in chunks(list(zip(lows, highs)), size):
            samples = []
            for low, high in chunk:
                pair = [min_max(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))) for x in (low, high)]
                samples.append(torch.stack(pair) * 2 - 1)
            batches.append(torch.stack(samples))
        results = []
        for fake_b in self.forwards(self.merge_model, batches, "merge"):
            results.extend(((fake_b[row] + 1) / 2).squeeze().numpy() for row in range(fake_b.shape[0]))
        return results

    def merge(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """``merges([low], [high])[0]``: float32 (1024, 1024) in [0, 1]."""
        return self.merges([low], [high])[0]


__all__ = ["DepthNetworks", "Cancelled", "MERGE_SIZE", "default_max_batch", "batch_size", "chunks"]
