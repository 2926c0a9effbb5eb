"""Batched network calls for local boosting: several patches' double estimates in one forward per size.

All patches of Final mode are square crops, so their double estimates call the base network at the same two
sizes (RF and 2·RF) and the merge network at 1024²: those calls can be stacked into batches. Every sample
goes through exactly the per-sample steps of the one-at-a-time path (``double_estimation.double_estimate``
and ``DepthNetworks.merge``): the same input preparation, the same per-sample min-max normalisations, the
same resizes; only the forward runs on an (N, C, h, w) batch. Results equal the one-at-a-time ones to
float32 rounding of the convolution kernels (checked by tests/test_acceleration.py).

    estimates = batched_patch_estimates(networks, [rgb_a, rgb_b], rf)   # [(1024, 1024) float32, ...]
    merged = batched_merge(networks, [base_a, base_b], estimates)         # as networks.merge per pair

Batch sizes are bounded by a memory budget (``memory_budget`` bytes of activations, estimated per sample
from the input size) and by ``max_batch``; on CPU the base network's inputs above CPU_MAX_BATCHED_BASE_PIXELS go one
at a time (batching them was measured slower there).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .double_estimation import MERGE_SIZE, min_max, to_merge_size

#: default activation budget of one batched forward, bytes
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
#: default cap on samples per forward (beyond it batching gains nothing measurable on CPU)
DEFAULT_MAX_BATCH = 4
#: on CPU (measured per sample, channels-last, 2 threads, 2 samples a forward vs 1): the merge net at 1024² -8% and
#: MiDaS v2 at its receptive field (384²) -9%, but MiDaS v2 at 768² +5%; so patches go in pairs and base-network
#: inputs larger than this many pixels still go one at a time
CPU_MAX_BATCH = 2
CPU_MAX_BATCHED_BASE_PIXELS = 448 * 448
#: peak activation bytes per input pixel of one sample, measured (CPU, float32): MiDaS v2 at 768² peaks
#: at ~0.55 GB over its weights, the merge net at 1024² at ~0.25 GB
_BYTES_PER_PIXEL = {"base": 1000, "merge": 250}


def batch_size(kind: str, pixels: int, memory_budget: int = DEFAULT_MEMORY_BUDGET,
               max_batch: int = DEFAULT_MAX_BATCH) -> int:
    """Samples per forward for inputs of ``pixels`` (h·w) px: within the budget, at least 1, at most max_batch."""
    per_sample = _BYTES_PER_PIXEL[kind] * pixels
    return int(max(1, min(max_batch, memory_budget // max(per_sample, 1))))


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _forward(networks, model, batch, kind: str):
    """One timed forward of ``model`` on a stacked CPU batch; returns the output on the CPU, float32."""
    import torch

    networks._check_cancel()
    start = time.perf_counter()
    with torch.inference_mode(), _autocast(networks):
        out = model(batch.to(networks.device))
        out = out.float().cpu()
    networks.forward_seconds += time.perf_counter() - start
    networks.calls[kind] += batch.shape[0]
    return out


def _autocast(networks):
    import contextlib

    options = getattr(networks, "acceleration", None)
    if options is None:
        return contextlib.nullcontext()
    from .acceleration import autocast

    return autocast(options, networks.device)


def batched_single_estimates(networks, rgbs: Sequence[np.ndarray], size: int, *,
                             memory_budget: int = DEFAULT_MEMORY_BUDGET,
                             max_batch: int = DEFAULT_MAX_BATCH) -> list[np.ndarray]:
    """``[networks.single(rgb, size) for rgb in rgbs]`` with inputs of equal network size stacked.

    rgbs: float64 (h_i, w_i, 3) RGB in [0, 1]. Returns float32 (h_i, w_i) maps, the base network's
    estimate post-processed per sample exactly as ``networks.estimate.single_estimate``.
    """
    import torch

    from .networks.estimate import _check_image, _min_max, prepare_input, resize_back

    net = networks.net
    images = [_check_image(rgb) for rgb in rgbs]
    inputs = [prepare_input(net, image, size) for image in images]
    results: list[np.ndarray | None] = [None] * len(images)
    groups: dict[tuple, list[int]] = {}
    for index, x in enumerate(inputs):
        groups.setdefault(tuple(x.shape), []).append(index)
    out_spec = net.output
    on_cpu = str(networks.device).startswith("cpu")
    for shape, indices in groups.items():
        pixels = shape[-2] * shape[-1]
        cap = 1 if on_cpu and pixels > CPU_MAX_BATCHED_BASE_PIXELS else max_batch
        for chunk in _chunks(indices, batch_size("base", pixels, memory_budget, cap)):
            y = _forward(networks, networks.base_model, torch.cat([inputs[i] for i in chunk]), "base")
            for row, index in enumerate(chunk):
                pred = y[row].reshape(y.shape[-2], y.shape[-1]).numpy()
                if out_spec.normalize and out_spec.normalize_at == "before_resize":
                    pred = _min_max(pred)
                pred = resize_back(net, pred, images[index].shape[:2])
                if out_spec.normalize and out_spec.normalize_at == "after_resize":
                    pred = _min_max(pred)
                results[index] = pred.astype(np.float32, copy=False)
    return results


def batched_merge(networks, lows: Sequence[np.ndarray], highs: Sequence[np.ndarray], *,
                  memory_budget: int = DEFAULT_MEMORY_BUDGET,
                  max_batch: int = DEFAULT_MAX_BATCH) -> list[np.ndarray]:
    """``[networks.merge(low, high) for low, high in zip(lows, highs)]`` in batches.

    lows, highs: (1024, 1024) maps (any float dtype). Each is min-max normalised per sample to [0, 1] then
    mapped to [-1, 1] (as ``DepthNetworks.merge``). Returns float32 (1024, 1024) maps (tanh + 1) / 2.
    """
    import torch

    from .double_estimation import _unit_range

    if networks.merge_model is None:
        raise RuntimeError("the merge network was not loaded (load_networks(..., merge_weights=...))")
    if len(lows) != len(highs):
        raise ValueError(f"batched_merge needs as many low as high maps, got {len(lows)} and {len(highs)}")
    results = []
    pixels = MERGE_SIZE * MERGE_SIZE
    pairs = list(zip(lows, highs))
    for chunk in _chunks(pairs, batch_size("merge", pixels, memory_budget, max_batch)):
        with torch.inference_mode():
            samples = []
            for low, high in chunk:
                pair = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in (low, high)]
                samples.append(torch.stack([_unit_range(x) * 2 - 1 for x in pair]))
            fake_b = _forward(networks, networks.merge_model, torch.stack(samples), "merge")
            for row in range(len(chunk)):
                results.append(((fake_b[row] + 1) / 2).squeeze().float().numpy())
    return results


def batched_patch_estimates(networks, patch_rgbs: Sequence[np.ndarray], rf: int, *,
                            memory_budget: int = DEFAULT_MEMORY_BUDGET,
                            max_batch: int = DEFAULT_MAX_BATCH) -> list[np.ndarray]:
    """``[double_estimate(networks, rgb, rf, 2 * rf) for rgb in patch_rgbs]``, batched per network size.

    patch_rgbs: float64 (h_i, w_i, 3) RGB crops in [0, 1]. Returns float32 (1024, 1024) maps in [0, 1].
    """
    options = dict(memory_budget=memory_budget, max_batch=max_batch)
    lows = [to_merge_size(x) for x in batched_single_estimates(networks, patch_rgbs, rf, **options)]
    highs = [to_merge_size(x) for x in batched_single_estimates(networks, patch_rgbs, 2 * rf, **options)]
    return [min_max(m) for m in batched_merge(networks, lows, highs, **options)]


def default_max_batch(device: str = "cpu") -> int:
    """Patches per batched forward: CPU_MAX_BATCH on CPU (pairs; see CPU_MAX_BATCHED_BASE_PIXELS for the base
    network's high-resolution inputs, which stay single), DEFAULT_MAX_BATCH on an accelerator (which a single 384²
    sample leaves mostly idle)."""
    return CPU_MAX_BATCH if str(device).startswith("cpu") else DEFAULT_MAX_BATCH


def local_boost(result, rgb, networks, max_res, output_size, report, lap, *, max_batch: int | None = None,
                memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
    """Drop-in for ``pipeline._local_boost`` with the patches' network calls batched (same arguments).

    Patches are taken in merge order in groups of ``max_batch`` (default :func:`default_max_batch`); the
    group's double estimates and merges run batched, then each patch is aligned and blended in order, so
    the canvas sees exactly the one-at-a-time sequence of operations.
    """
    from . import merging
    from .local_boosting import PatchCanvas

    max_batch = default_max_batch(networks.device) if max_batch is None else max_batch
    options = dict(memory_budget=memory_budget, max_batch=max_batch)
    rf = networks.net.receptive_field
    canvas = PatchCanvas.open(result, rgb, rf, max_res, output_size, report, lap)
    selected = canvas.selected
    done = 0
    for group in _chunks(selected, max(1, max_batch)):
        report({"event": "progress", "done": done, "of": len(selected), "fraction": done / len(selected)})
        rects = [canvas.rect(patch) for patch in group]
        patch_rgbs = [canvas.rgb[y:y + h, x:x + w] for x, y, w, h in rects]
        base_crops = [canvas.base[y:y + h, x:x + w] for x, y, w, h in rects]  # the untouched R20 base
        estimates = batched_patch_estimates(networks, patch_rgbs, rf, **options)  # already (1024, 1024)
        bases_1024 = [merging.resize_cubic(crop, (MERGE_SIZE,) * 2) for crop in base_crops]
        merged = batched_merge(networks, bases_1024, estimates, **options)
        for rect, crop, one, base_1024 in zip(rects, base_crops, merged, bases_1024):
            canvas.blend(rect, merging.resize_cubic(merging.align_to_base(one, base_1024), crop.shape))
        done += len(group)
        lap("patch_merge")
    canvas.finish(result, output_size, report)
