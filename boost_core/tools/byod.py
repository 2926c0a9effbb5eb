"""Boost Your Own Depth (SPEC part two §C): merge two depth maps of one scene with the merge network.

The user supplies a *low-resolution* map (consistent structure, e.g. a network run at its receptive field) and a
*high-resolution* map (details, e.g. the same network run at R20: ``python -m boost_core resolution IMAGE``).
The merge network fuses them as in the paper's double estimation; there is no resolution search, no patch
selection and no local boosting.

    depth = global_merge(low, high, networks)  # float32 (1024, 1024) in [0, 1]

Command line: ``python -m boost_core merge`` (``boost_core.cli.merge``).

Differences from the reference (``boost_depth.py``), on purpose:

* inputs (16/8-bit PNG, TIFF, EXR, NPY, PFM) are read at **full precision**; the reference reads them with
  ``IMREAD_GRAYSCALE``, which cuts 16-bit PNGs to 8 bits and turns colour-mapped pictures into luminance
  (refused here);
* folders are paired **by file stem** (the behaviour before the reference's commit 2c2ada2, which pairs the
  low-res map with itself and writes over the input); an output never replaces an input file, and an existing
  output only with ``--overwrite``; files are written atomically;
* a constant or non-finite input is a clear error (the reference crashes later);
* the device is chosen (CPU, CUDA, MPS), not hard-coded to CUDA.

As in the reference, both maps are squashed to 1024x1024 (aspect ratio lost), and the result is resized back
to the low-resolution map's size (``--output-size low``, the default) or kept at 1024x1024.
The merge network was trained on MiDaS *inverse depth* (large = near); give it maps of that polarity for the
results the paper shows (depth-polarity maps are merged as they are, as the reference does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUTPUT_SIZES = ("low", "1024")
INPUT_SUFFIXES = (".png", ".tif", ".tiff", ".exr", ".npy", ".pfm")


class MergeInputError(ValueError):
    """A depth map cannot be merged; the message names the map and the fix."""


def _prepare(depth: np.ndarray, role: str) -> np.ndarray:
    """One input -> float32 (1024, 1024) in [0, 1]: cubic resize to the square, then min-max (SPEC §C.4 1-3)."""
    from ..algorithm.double_estimation import to_merge_size
    from ..normalise import min_max

    depth = np.asarray(depth)
    if depth.ndim != 2 or min(depth.shape) < 1:
        raise MergeInputError(f"the {role} map must be a single-channel (H, W) array, got shape {depth.shape}")
    if not np.all(np.isfinite(depth)):
        raise MergeInputError(f"the {role} map contains non-finite values (NaN or inf); fill or clip them first")
    square = to_merge_size(np.ascontiguousarray(depth, dtype=np.float32))
    # a constant map stays constant up to resampling noise, which min-max would blow up: test the input too
    if not depth.max() > depth.min() or not float(square.max()) - float(square.min()) > np.finfo(float).eps:
        raise MergeInputError(f"the {role} map is constant: it holds no depth to merge")
    return min_max(square)


def global_merge(low: np.ndarray, high: np.ndarray, networks) -> np.ndarray:
    """Merge a low- and a high-resolution depth map of one scene -> float32 (1024, 1024) in [0, 1].

    low, high: (H, W) float maps of any, possibly different, sizes and value ranges (each is min-max
    normalised independently). networks: an object with ``merge(low1024, high1024)``, normally a
    ``DepthNetworks`` from :func:`load_merge_network`. The result is min-max normalised (SPEC §C.4 5).
    Raises MergeInputError for a map that is not 2-D, not finite or constant.
    """
    from ..normalise import min_max

    merged = networks.merge(_prepare(low, "low-resolution"), _prepare(high, "high-resolution"))
    return min_max(np.asarray(merged, np.float32))


def load_merge_network(merge_weights: str | Path | None = None, models_dir: str | Path | None = None,
                       device: str = "cpu"):
    """The merge network alone, wrapped in a ``DepthNetworks`` (no base network), on ``device``.

    merge_weights: ``latest_net_G.pth``; when None it is located in the models folder (weights registry name
    ``merge_net``). Raises the weights registry's MissingWeightsError (its message says how to get the file, or
    to pass --merge-weights) or CheckpointError for a wrong file.
    """
    from ..algorithm.depth_networks import DepthNetworks
    from ..networks import registry

    if merge_weights is None:
        try:
            from ..weights import store as weights
        except ImportError as error:  # pragma: no cover - the weights registry ships with boost_core
            raise FileNotFoundError("no weights registry available: pass --merge-weights PATH "
                                    "(the merge network's latest_net_G.pth)") from error
        merge_weights = weights.locate("merge_net", weights.models_dir(models_dir))
    model = registry.load_merge_net(merge_weights, device)
    return DepthNetworks(net=None, base_model=None, merge_model=model, device=device)


def aspect_mismatch(low_shape, high_shape, tolerance: float = 0.01) -> float:
    """The relative difference of two (H, W) shapes' aspect ratios when over ``tolerance`` (1%), else 0."""
    a = low_shape[1] / low_shape[0]
    b = high_shape[1] / high_shape[0]
    difference = abs(a - b) / min(a, b)
    return difference if difference > tolerance else 0.0


def merge_files(low_path: str | Path, high_path: str | Path, networks, output_size: str = "low",
                warnings: list | None = None) -> np.ndarray:
    """Read two depth files at full precision, merge them, and size the result.

    output_size: "low" resizes (cubic) to the low-resolution map's (H, W), as the reference's default;
    "1024" keeps the (1024, 1024) square. Returns float32 in [0, 1] (cubic overshoot may leave it slightly).
    """
    from ..algorithm.depth_networks import MERGE_SIZE
    from ..image_io import read_depth
    from ..algorithm.merging import resize_cubic

    if output_size not in OUTPUT_SIZES:
        raise ValueError(f"unknown output size {output_size!r}; choose one of {', '.join(OUTPUT_SIZES)}")
    low = read_depth(low_path)
    high = read_depth(high_path)
    stretch = aspect_mismatch(low.shape, high.shape)
    if stretch and warnings is not None:
        warnings.append(f"{Path(high_path).name} is {high.shape[1]}x{high.shape[0]} but {Path(low_path).name} is "
                        f"{low.shape[1]}x{low.shape[0]}: aspect ratios differ by {stretch:.0%}, so the high map is "
                        "stretched to fit; crop both maps to the same framing for a faithful merge")
    try:
        merged = global_merge(low, high, networks)
    except MergeInputError as error:
        raise MergeInputError(f"{low_path} + {high_path}: {error}") from None
    if output_size == "low" and low.shape != (MERGE_SIZE, MERGE_SIZE):
        merged = resize_cubic(merged, low.shape)
    return np.asarray(merged, np.float32)
