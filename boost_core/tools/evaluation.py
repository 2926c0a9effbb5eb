"""Depth-map evaluation as the reference's MATLAB scripts define it (SPEC part two §B): ORD, D³R, RMSE, δ.

Entry point: :func:`evaluate` (one estimate against one ground truth) -> :class:`Scores`.

What is computed, per image (``evaluatedataset.m``):

1. **Ground truth** (§B.1). Invalid pixels (non-finite, zero, or negative) become NaN. Disparity GT:
   ``min_gt_disp = nanmin(gt_disp)``, ``gt_depth = 1/gt_disp``; depth GT: ``gt_disp = 1/gt_depth``,
   divided by its maximum, ``min_gt_disp = nanmin(gt_disp)``. Both maps are then min-max rescaled to [0, 1]
   (MATLAB ``rescale``, NaN ignored), so the nearest valid pixel has depth exactly 0.
2. **Alignment of the estimate** (no least squares anywhere): the estimate disparity is min-max mapped onto
   ``[min_gt_disp, 1]``, inverted and rescaled to [0, 1]: ``est_depth = rescale(1/rescale(est, min_gt_disp, 1))``.
   The estimate must therefore be *disparity-like* (inverse depth: large = near), as MiDaS and SGR outputs are.
3. **Superpixels** on the rescaled GT disparity, resized by ``superpixel_scale`` with MATLAB's nearest-neighbour
   ``imresize`` index rule, NaN set to 0: 5000 requested, compactness 20 (§B.3). Per superpixel (labels 1..N):
   its 4-adjacent neighbour labels, three random partner labels ``ceil(u·N)`` drawn from the MATLAB default
   stream (numpy ``RandomState(5489)``, §B.6), and its centre ``(floor(mean row), floor(mean col))`` in
   1-based coordinates, mapped back to the full grid by dividing by ``superpixel_scale``.
4. **D³R** = pair score over neighbour pairs with GT ratio filter 1.1 and ordinal threshold 1.01;
   **ORD** = pair score over random pairs, GT values must differ at all, threshold 1.03 (§B.4). Each kept
   pair adds ``|ord(gt) - ord(est)|`` (0, 1 or 2) to the error, so both are means in **[0, 2]**.
5. **RMSE** on [0, 1] disparity: rescaled GT disparity against the *raw* estimate, both 0 at invalid pixels,
   averaged over all H·W pixels (invalid pixels count with zero error).
6. **δ error fractions**: over pixels valid in the GT with non-zero rescaled GT and estimate depth, the
   fraction where ``max(g/e, e/g)`` exceeds 1.25, 1.25², 1.25³ (lower is better); also log10, abs_rel, sq_rel.

Where this port differs from MATLAB (so D³R and ORD will not match the published numbers bit for bit):

* **Superpixels**: MATLAB's ``superpixels(gt, 5000, 'Compactness', 20)`` (SLIC-0 by default) is replaced by
  ``skimage.segmentation.slic(..., n_segments=5000, compactness=20, slic_zero=True, max_num_iter=10,
  channel_axis=None, start_label=1, enforce_connectivity=True)``. The seeding, the compactness scaling for a
  single-channel double image and the connectivity clean-up differ, so the labels, their number and hence
  the pairs differ; expect small numeric deviations in D³R and ORD (RMSE and δ are unaffected).
* Labels are renumbered 1..N in increasing skimage label order (MATLAB's own numbering is not reproducible).
* Centres mapped back with a non-integer ``row / superpixel_scale`` (scales other than 1 and 0.2) are rounded
  and clamped into the image; MATLAB would index with the exact quotient.
* Float ground-truth files (PFM, EXR, NPY) have no fixed scale; ``gt_scale="max"`` divides the GT by its
  largest valid value first, as a 16-bit PNG whose maximum is 65535 would be (see :func:`prepare_ground_truth`).
* Negative ground-truth values are treated as invalid (the reference's PNG inputs cannot hold them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MATLAB_EPS = float(np.finfo(np.float64).eps)  # MATLAB eps = 2^-52
MATLAB_SEED = 5489  # MATLAB's default Mersenne-Twister stream == numpy RandomState(5489)
N_SUPERPIXELS = 5000
COMPACTNESS = 20.0
RANDOM_PARTNERS = 3
D3R_GT_RATIO = 0.1  # hf_ratio: a neighbour pair counts only if its GT depths differ by more than 10%
D3R_RATIO = 0.01  # ordinal threshold 1.01
ORD_GT_RATIO = 0.0  # any two different GT values count
ORD_RATIO = 0.03  # ordinal threshold 1.03
DELTA = 1.25
GT_KINDS = ("disparity", "depth")
GT_SCALES = ("file", "max")


@dataclass(frozen=True)
class Scores:
    """Metrics of one estimate against its ground truth (SPEC part two §B). Lower is better for all.

    ord, d3r: mean ordinal error in [0, 2] (NaN when no pair qualifies). rmse: on [0, 1] disparity.
    delta, delta2, delta3: fraction of pixels with max(g/e, e/g) > 1.25, 1.25², 1.25³ (error rates, 1 - δ).
    log10, abs_rel, sq_rel: on the rescaled depths. superpixels: label count N; d3r_pairs, ord_pairs: the
    pairs kept (the "confidence" denominators).
    """

    ord: float
    d3r: float
    rmse: float
    delta: float
    delta2: float
    delta3: float
    log10: float
    abs_rel: float
    sq_rel: float
    superpixels: int
    d3r_pairs: int
    ord_pairs: int

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# MATLAB building blocks


def ordinal_label(a, b, delta: float) -> np.ndarray:
    """``ord.m``: +1 where (a+eps)/(b+eps) > delta, -1 where it is < 1/delta, else 0 (int8 array).

    a, b: arrays (or scalars) of depths >= 0, float64. Equal values always give 0.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    r = (a + MATLAB_EPS) / (b + MATLAB_EPS)
    return np.where(r > delta, 1, np.where(r < 1.0 / delta, -1, 0)).astype(np.int8)


def rescale(x: np.ndarray, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """MATLAB ``rescale``: linear map of [nanmin, nanmax] onto [lower, upper]; NaN stays NaN (float64).

    A constant (or all-NaN-but-constant) input maps to ``lower``, as MATLAB does.
    """
    x = np.asarray(x, np.float64)
    finite = x[~np.isnan(x)]
    if finite.size == 0:
        return x.copy()
    lo, hi = finite.min(), finite.max()
    if not hi > lo:
        out = np.full_like(x, lower)
        out[np.isnan(x)] = np.nan
        return out
    return lower + (x - lo) / (hi - lo) * (upper - lower)


def nearest_indices(length: int, scale: float) -> np.ndarray:
    """0-based source indices of MATLAB ``imresize(·, scale, 'nearest')`` along one axis of ``length``.

    Output size ``ceil(scale·length)``; output pixel x (1-based) takes source ``round(x/scale + (1 - 1/scale)/2)``
    (half up), clamped to [1, length]. For scale 0.2: source rows 3, 8, 13, ... (1-based).
    """
    out_len = math.ceil(scale * length)
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    src = np.clip(np.floor(u + 0.5), 1, length).astype(np.int64)
    return src - 1


def imresize_nearest(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(image, scale, 'nearest')`` of an (H, W) array (NaN kept)."""
    if scale == 1:
        return np.array(image, copy=True)
    rows = nearest_indices(image.shape[0], scale)
    cols = nearest_indices(image.shape[1], scale)
    return image[np.ix_(rows, cols)]


def matlab_stream(seed: int = MATLAB_SEED) -> np.random.RandomState:
    """A fresh MATLAB default random stream: ``rand`` outputs equal ``RandomState(5489).random_sample()``."""
    return np.random.RandomState(seed)


def random_partners(n_labels: int, rng: np.random.RandomState, count: int = RANDOM_PARTNERS) -> np.ndarray:
    """``randi([1, N], count, 1)`` for each label in order -> int64 (N, count) of 1-based labels.

    One double per draw, ``ceil(u·N)`` (MATLAB's documented ``randi(10,1,5)`` = 9 10 2 10 7 from a fresh stream).
    """
    u = rng.random_sample(n_labels * count)
    labels = np.maximum(np.ceil(u * n_labels), 1).astype(np.int64)
    return labels.reshape(n_labels, count)


# ---------------------------------------------------------------------------------------------------------
# Superpixels and the pairs


def superpixels(image: np.ndarray, n_segments: int = N_SUPERPIXELS, compactness: float = COMPACTNESS) -> np.ndarray:
    """Superpixel labels of a single-channel float image -> int64 (H, W) with labels 1..N (all present).

    Uses skimage SLIC-zero in place of MATLAB ``superpixels`` (see the module docstring for the differences).
    NaN must have been replaced (the reference sets NaN to 0 first).
    """
    from skimage.segmentation import slic

    image = np.asarray(image, np.float64)
    if image.ndim != 2:
        raise ValueError(f"superpixels need a single-channel (H, W) map, got shape {image.shape}")
    labels = slic(image, n_segments=n_segments, compactness=compactness, max_num_iter=10, slic_zero=True,
                  channel_axis=None, start_label=1, enforce_connectivity=True)
    _, relabelled = np.unique(labels, return_inverse=True)
    return relabelled.reshape(image.shape).astype(np.int64) + 1


def label_neighbours(labels: np.ndarray) -> list[np.ndarray]:
    """For labels 1..N: sorted unique labels 4-adjacent to each region (``bwdist(L==i) == 1``).

    Returns a list of N int64 arrays (index i-1 holds label i's neighbours, 1-based). Never contains i itself;
    the relation is symmetric.
    """
    n = int(labels.max())
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        differ = a != b
        pairs.append(np.stack([a[differ], b[differ]], 1))
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    pairs = np.concatenate([pairs, pairs[:, ::-1]])  # both directions
    codes = np.unique(pairs[:, 0] * (n + 1) + pairs[:, 1])  # sorted by (label, neighbour)
    first, second = codes // (n + 1), codes % (n + 1)
    bounds = np.searchsorted(first, np.arange(1, n + 2))
    return [second[bounds[i]:bounds[i + 1]].astype(np.int64) for i in range(n)]


def label_centres(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre of each label 1..N as in ``extractD3Rpoints.m``: 1-based (floor(mean row), floor(mean col)).

    Returns two int64 arrays of length N (1-based rows, 1-based columns). A non-convex region's centre may lie
    outside the region.
    """
    n = int(labels.max())
    height, width = labels.shape
    rows, cols = np.indices((height, width))
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:]
    if np.any(counts == 0):
        raise ValueError("labels must be 1..N with every label present")
    # sums of integers are exact in float64, so floor(sum / count) equals MATLAB's floor(mean(...))
    row_sum = np.bincount(flat, weights=(rows.ravel() + 1).astype(np.float64), minlength=n + 1)[1:]
    col_sum = np.bincount(flat, weights=(cols.ravel() + 1).astype(np.float64), minlength=n + 1)[1:]
    return np.floor(row_sum / counts).astype(np.int64), np.floor(col_sum / counts).astype(np.int64)


@dataclass(frozen=True)
class PairPoints:
    """Output of :func:`extract_d3r_points`: centres (1-based rows/cols on the map it was computed on),
    neighbour lists and random partner lists (1-based labels, one entry per label)."""

    rows: np.ndarray
    cols: np.ndarray
    neighbours: list
    partners: list
    labels: np.ndarray


def extract_d3r_points(gt_small: np.ndarray, rng: np.random.RandomState, n_segments: int = N_SUPERPIXELS,
                       compactness: float = COMPACTNESS) -> PairPoints:
    """``extractD3Rpoints.m`` on a (h, w) map (NaN -> 0 first): superpixels, neighbours, 3 random partners, centres.

    rng: the MATLAB stream (see :func:`matlab_stream`); 3·N draws are consumed, in label order.
    """
    image = np.nan_to_num(np.asarray(gt_small, np.float64), nan=0.0)
    labels = superpixels(image, n_segments, compactness)
    n = int(labels.max())
    neighbours = label_neighbours(labels)
    partners = list(random_partners(n, rng))
    rows, cols = label_centres(labels)
    return PairPoints(rows=rows, cols=cols, neighbours=neighbours, partners=partners, labels=labels)


def effective_pairs(lists) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``D3R.m`` visits, with its removal rule (SPEC §B.4), as two 1-based label arrays (i, j).

    lists: for each label i = 1..N (index i-1), a sequence of partner labels (repeats allowed). For i in order,
    the list of i *as it stands then* is walked; for each entry j (repeats visited again) every occurrence of i
    is removed from j's list and the pair (i, j) is emitted. So a pair listed on both sides counts once per
    occurrence on the side visited first.
    """
    work = [list(map(int, p)) for p in lists]
    first, second = [], []
    for i in range(1, len(work) + 1):
        for j in list(work[i - 1]):
            if not 1 <= j <= len(work):
                raise ValueError(f"label {i} lists partner {j}, outside 1..{len(work)}")
            if i in work[j - 1]:
                work[j - 1] = [x for x in work[j - 1] if x != i]
            first.append(i)
            second.append(j)
    return np.asarray(first, np.int64), np.asarray(second, np.int64)


def pair_error(gt_values: np.ndarray, est_values: np.ndarray, lists, gt_ratio: float,
               ratio: float) -> tuple[float, int]:
    """``D3R.m``: (error, confidence) over the pairs of ``lists`` (see :func:`effective_pairs`).

    gt_values, est_values: depth at each label's centre (index label-1), float64; a GT value of 0 marks an
    invalid or nearest pixel and drops the pair. A pair is kept when ``ord(gt_i, gt_j, 1 + gt_ratio) != 0``;
    it adds ``|ord(gt_i, gt_j, 1 + ratio) - ord(est_i, est_j, 1 + ratio)|`` (0, 1 or 2) to the error.
    The metric is error / confidence (NaN when confidence is 0).
    """
    i, j = effective_pairs(lists)
    if i.size == 0:
        return 0.0, 0
    gi, gj = gt_values[i - 1], gt_values[j - 1]
    ei, ej = est_values[i - 1], est_values[j - 1]
    keep = (gi != 0) & (gj != 0)
    keep &= ordinal_label(gi, gj, 1.0 + gt_ratio) != 0
    cost = np.abs(ordinal_label(gi, gj, 1.0 + ratio).astype(np.int64) - ordinal_label(ei, ej, 1.0 + ratio))
    return float(cost[keep].sum()), int(keep.sum())


# ---------------------------------------------------------------------------------------------------------
# Per-image evaluation


@dataclass(frozen=True)
class GroundTruth:
    """Prepared ground truth (float64 (H, W), NaN = invalid): disparity and depth rescaled to [0, 1],
    and ``min_gt_disp`` (the smallest valid disparity on the file's scale, the alignment's lower bound)."""

    disparity: np.ndarray
    depth: np.ndarray
    min_disparity: float


def prepare_ground_truth(gt: np.ndarray, kind: str = "disparity", scale: str = "file") -> GroundTruth:
    """``evaluatedataset.m`` lines 21-37 on a GT map (float, (H, W)).

    kind: "disparity" (Middlebury) or "depth" (IBims-1, NYU). Non-finite, zero or negative values are invalid.
    scale: "file" uses the values as read (MATLAB im2double: a 16-bit PNG divided by 65535); "max" first divides
    by the largest valid value. Only the disparity branch depends on it (through ``min_gt_disp``, ⚠ SPEC §B.1);
    use "max" for float files (PFM in pixels, EXR, NPY), whose values are not on the [0, 1] scale.
    """
    if kind not in GT_KINDS:
        raise ValueError(f"unknown ground-truth kind {kind!r}; choose one of {', '.join(GT_KINDS)}")
    if scale not in GT_SCALES:
        raise ValueError(f"unknown ground-truth scale {scale!r}; choose one of {', '.join(GT_SCALES)}")
    gt = np.array(gt, dtype=np.float64)
    if gt.ndim != 2:
        raise ValueError(f"ground truth must be a single-channel (H, W) map, got shape {gt.shape}")
    gt[~np.isfinite(gt) | (gt <= 0)] = np.nan
    if np.all(np.isnan(gt)):
        raise ValueError("the ground truth has no valid pixel (all are zero, negative or non-finite)")
    if scale == "max":
        gt = gt / np.nanmax(gt)
    if kind == "disparity":
        disparity = gt
        min_disparity = float(np.nanmin(disparity))
        depth = 1.0 / disparity
    else:
        depth = gt
        disparity = 1.0 / depth
        disparity = disparity / np.nanmax(disparity)
        disparity[disparity > 1] = np.nan  # never happens; kept as the reference has it
        min_disparity = float(np.nanmin(disparity))
    return GroundTruth(disparity=rescale(disparity), depth=rescale(depth), min_disparity=min_disparity)


def align_estimate(estimate: np.ndarray, min_disparity: float) -> np.ndarray:
    """Estimate disparity -> rescaled depth in [0, 1]: ``rescale(1 ./ rescale(est, min_gt_disp, 1), 0, 1)``."""
    disparity = rescale(np.asarray(estimate, np.float64), min_disparity, 1.0)
    with np.errstate(divide="ignore"):
        return rescale(1.0 / disparity)


def rmse(gt_disparity: np.ndarray, estimate: np.ndarray) -> float:
    """RMSE of the raw estimate against the rescaled GT disparity; invalid (NaN) GT pixels count as 0 error."""
    mask = ~np.isnan(gt_disparity)
    diff = np.where(mask, gt_disparity, 0.0) - np.where(mask, np.asarray(estimate, np.float64), 0.0)
    return float(np.sqrt(np.mean(diff * diff)))


def depth_ratio_errors(gt_depth: np.ndarray, est_depth: np.ndarray) -> dict:
    """δ error fractions and log10 / abs_rel / sq_rel over pixels valid in the GT with g != 0 and e != 0."""
    valid = ~np.isnan(gt_depth) & (gt_depth != 0) & (est_depth != 0)
    g, e = gt_depth[valid], est_depth[valid]
    if g.size == 0:
        nan = float("nan")
        return dict.fromkeys(("delta", "delta2", "delta3", "log10", "abs_rel", "sq_rel"), nan)
    t = np.maximum(g / e, e / g)
    return {
        "delta": float(np.mean(t > DELTA)),
        "delta2": float(np.mean(t > DELTA ** 2)),
        "delta3": float(np.mean(t > DELTA ** 3)),
        "log10": float(np.mean(np.abs(np.log10(g) - np.log10(e)))),
        "abs_rel": float(np.mean(np.abs(g - e) / g)),
        "sq_rel": float(np.mean((g - e) ** 2 / g)),
    }


def full_grid_centres(rows: np.ndarray, cols: np.ndarray, scale: float, shape) -> tuple[np.ndarray, np.ndarray]:
    """Centres on the small grid (1-based) -> 0-based (row, col) on the full grid: ``r / scale`` (rounded when not
    an integer, clamped into the image). Exact for scale 1 and 0.2, as in the reference."""
    height, width = shape
    full_r = np.clip(np.round(rows / scale), 1, height).astype(np.int64) - 1
    full_c = np.clip(np.round(cols / scale), 1, width).astype(np.int64) - 1
    return full_r, full_c


def evaluate(estimate: np.ndarray, ground_truth: np.ndarray, gt_kind: str = "disparity",
             superpixel_scale: float = 1.0, rng: np.random.RandomState | None = None,
             gt_scale: str = "file") -> Scores:
    """All metrics of one estimate against its ground truth (SPEC part two §B.1-§B.4).

    estimate: (H, W) disparity-like map (large = near), e.g. a min-max normalised MiDaS output in [0, 1];
      values as read from the file (RMSE uses them as they are). Must be finite.
    ground_truth: (H, W) GT of kind ``gt_kind`` ("disparity" or "depth"), same size; invalid = non-finite,
      zero or negative. superpixel_scale: 1 (IBims, NYU) or 0.2 (full-size Middlebury) in the reference.
    rng: MATLAB stream shared across the images of a dataset (default: a fresh one, as a new MATLAB session).
    gt_scale: see :func:`prepare_ground_truth`.
    """
    estimate = np.asarray(estimate, np.float64)
    ground_truth = np.asarray(ground_truth)
    if estimate.ndim != 2:
        raise ValueError(f"the estimate must be a single-channel (H, W) map, got shape {estimate.shape}")
    if estimate.shape != ground_truth.shape:
        raise ValueError(f"the estimate is {estimate.shape[1]}x{estimate.shape[0]} but the ground truth is "
                         f"{ground_truth.shape[1]}x{ground_truth.shape[0]} (width x height); nothing is resized: "
                         "produce the estimate at the ground truth's size")
    if not np.all(np.isfinite(estimate)):
        raise ValueError("the estimate contains non-finite values (NaN or inf)")
    if not 0 < superpixel_scale <= 1:
        raise ValueError(f"superpixel_scale must be in (0, 1], got {superpixel_scale}")
    rng = matlab_stream() if rng is None else rng

    gt = prepare_ground_truth(ground_truth, gt_kind, gt_scale)
    est_depth = align_estimate(estimate, gt.min_disparity)

    points = extract_d3r_points(imresize_nearest(gt.disparity, superpixel_scale), rng)
    r, c = full_grid_centres(points.rows, points.cols, superpixel_scale, gt.depth.shape)
    gt_at = np.nan_to_num(gt.depth, nan=0.0)[r, c]
    est_at = est_depth[r, c]
    d3r_error, d3r_pairs = pair_error(gt_at, est_at, points.neighbours, D3R_GT_RATIO, D3R_RATIO)
    ord_error, ord_pairs = pair_error(gt_at, est_at, points.partners, ORD_GT_RATIO, ORD_RATIO)
    nan = float("nan")
    return Scores(
        ord=ord_error / ord_pairs if ord_pairs else nan,
        d3r=d3r_error / d3r_pairs if d3r_pairs else nan,
        rmse=rmse(gt.disparity, estimate),
        **depth_ratio_errors(gt.depth, est_depth),
        superpixels=len(points.rows), d3r_pairs=d3r_pairs, ord_pairs=ord_pairs,
    )


def mean_scores(scores) -> dict:
    """Dataset means of each metric, NaN skipped (MATLAB ``mean(..., 'omitnan')``)."""
    scores = list(scores)
    out = {}
    for name in ("ord", "d3r", "rmse", "delta", "delta2", "delta3", "log10", "abs_rel", "sq_rel"):
        values = np.array([getattr(s, name) for s in scores], np.float64)
        out[name] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    return out
