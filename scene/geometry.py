"""Camera geometry for depth maps: pinhole intrinsics, depth-range mapping, unprojection to a vertex grid,
discontinuity face dropping and focus distances for a depth-of-field camera.

Plain numpy; never imports bpy (the Blender side calls it, tests call it directly).

Conventions
-----------
- Arrays are (height, width), row 0 at the TOP of the picture (as in image files and the engine's outputs).
- Continuous pixel coordinates: x in [0, width] to the right, y in [0, height] downwards; pixel (row i, col j)
  covers [j, j+1] x [i, i+1], so its centre is (j + 0.5, i + 0.5).
- Camera space is Blender's: the camera looks down -Z, +X is right and +Y is up in the picture. A point with
  depth z (> 0, scene units, measured along the view axis, like Blender's focus distance) lies at -z on Z.
- Field of view in degrees, spanning the longer side of the picture by default, like Blender's
  ``sensor_fit = 'AUTO'``.
- Depth kinds travel with the data: ``"depth"`` (larger = farther) or ``"inverse_depth"`` (larger = nearer,
  disparity-like; MiDaS's output). Both are relative (unknown scale and shift), so a depth range chooses the
  scene's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("depth", "inverse_depth")
RANGE_METHODS = ("NEAR_FAR", "SCALE")
FITS = ("AUTO", "HORIZONTAL", "VERTICAL")

#: Smallest depth (scene units) a mapping returns: keeps vertices off the camera's centre of projection.
MIN_DEPTH = 1e-4


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera with square pixels, in pixel units.

    fx, fy: focal lengths in pixels (equal for square pixels); cx, cy: principal point in continuous pixel
    coordinates (the picture's centre); width, height: the picture's size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


def _check_fov(fov_deg: float) -> float:
    fov = float(fov_deg)
    if not (0.0 < fov < 180.0) or not math.isfinite(fov):
        raise ValueError(f"field of view must be between 0 and 180 degrees (exclusive), got {fov_deg!r}")
    return fov


def fov_side(width: int, height: int, fit: str = "AUTO") -> int:
    """The picture side (in pixels) that the field of view spans: the longer one for 'AUTO'."""
    if fit == "AUTO":
        return max(int(width), int(height))
    if fit == "HORIZONTAL":
        return int(width)
    if fit == "VERTICAL":
        return int(height)
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def intrinsics_from_fov(width: int, height: int, fov_deg: float, fit: str = "AUTO") -> Intrinsics:
    """Pinhole intrinsics of a ``width`` x ``height`` picture whose field of view is ``fov_deg`` degrees
       across
    the side chosen by ``fit`` ('AUTO' = the longer side, as Blender's sensor fit). Principal point at the
    centre.
    """
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"picture size must be positive, got {width}x{height}")
    fov = _check_fov(fov_deg)
    side = fov_side(width, height, fit)
    f = (side / 2.0) / math.tan(math.radians(fov) / 2.0)
    return Intrinsics(fx=f, fy=f, cx=width / 2.0, cy=height / 2.0, width=int(width), height=int(height))


def focal_length_mm(fov_deg: float, sensor_mm: float) -> float:
    """Lens focal length (mm) giving ``fov_deg`` degrees across a sensor side of ``sensor_mm`` mm."""
    fov = _check_fov(fov_deg)
    if not sensor_mm > 0:
        raise ValueError(f"sensor size must be positive (mm), got {sensor_mm!r}")
    return (float(sensor_mm) / 2.0) / math.tan(math.radians(fov) / 2.0)


def fov_from_focal_length(lens_mm: float, sensor_mm: float) -> float:
    """Field of view (degrees) across a sensor side of ``sensor_mm`` mm for a ``lens_mm`` mm lens."""
    if not lens_mm > 0 or not sensor_mm > 0:
        raise ValueError(
            f"focal length and sensor size must be positive (mm), got {lens_mm!r}, {sensor_mm!r}"
        )
    return math.degrees(2.0 * math.atan((float(sensor_mm) / 2.0) / float(lens_mm)))


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) over the finite values of an array; raises ValueError when there are none."""
    v = np.asarray(values)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        raise ValueError("the depth map has no finite values (all NaN or infinite)")
    return float(finite.min()), float(finite.max())


def metric_depth(
    values: np.ndarray,
    kind: str,
    *,
    method: str = "NEAR_FAR",
    near: float = 1.0,
    far: float = 10.0,
    scale: float = 1.0,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map a relative depth map to depth along the view axis in scene units.

    values: float array of any shape, the map as stored (``kind`` says what it holds).
    kind: "depth" (larger = farther) or "inverse_depth" (larger = nearer).
    method:
      - "NEAR_FAR": the map's range (``value_range`` or its own finite min/max) is stretched so that the
        nearest value lands at ``near`` and the farthest at ``far``. For "depth" the depth is linear in the
        value; for "inverse_depth" the inverse depth (1/z) is linear in the value, so equal value steps are
        equal disparity steps, as the networks predict them. A constant map lands at ``near``.
      - "SCALE": z = scale * value for "depth", z = scale / value for "inverse_depth"; ``far`` is the farthest
        depth returned (values <= 0 for inverse depth, e.g. sky, land there).
    Returns float64 depths of the same shape, all finite and in [MIN_DEPTH, far] (non-finite inputs go to
    far).
    """
    if kind not in KINDS:
        raise ValueError(f"depth kind must be one of {KINDS}, got {kind!r}")
    if method not in RANGE_METHODS:
        raise ValueError(f"depth range method must be one of {RANGE_METHODS}, got {method!r}")
    near = float(near)
    far = float(far)
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    if method == "NEAR_FAR":
        if not (0.0 < near < far):
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        lo, hi = value_range if value_range is not None else finite_range(v)
        span = hi - lo
        # s: nearness in [0, 1], 1 = the nearest value of the range (a constant map is all nearest).
        if span <= 0:
            s = np.ones_like(v)
        else:
            t = (np.clip(v, lo, hi) - lo) / span
            s = t if kind == "inverse_depth" else 1.0 - t
        if kind == "inverse_depth":
            z = 1.0 / (1.0 / far + s * (1.0 / near - 1.0 / far))
        else:
            z = far - s * (far - near)
    else:
        if not scale > 0:
            raise ValueError(f"depth scale must be positive, got {scale!r}")
        if not far > MIN_DEPTH:
            raise ValueError(f"the farthest depth must be larger than {MIN_DEPTH}, got {far!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            if kind == "inverse_depth":
                z = np.where(v > 0, scale / np.where(v > 0, v, 1.0), far)
            else:
                z = scale * v
        z = np.clip(z, MIN_DEPTH, far)
    z = np.where(bad, far, z)
    return np.clip(z, MIN_DEPTH, max(far, MIN_DEPTH))


def grid_shape(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(rows, cols) of a vertex grid with ``resolution`` vertices along the picture's longer side and the
    picture's aspect ratio (at least 2 x 2), independent of the picture's pixel count."""
    resolution = int(resolution)
    if resolution < 2:
        raise ValueError(f"grid resolution must be at least 2 vertices, got {resolution}")
    if width >= height:
        cols = resolution
        rows = max(2, int(round((resolution - 1) * height / width)) + 1)
    else:
        rows = resolution
        cols = max(2, int(round((resolution - 1) * width / height)) + 1)
    return rows, cols


def grid_coordinates(width: int, height: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates of a vertex grid spanning the whole picture, edges included.

    Returns xs (cols,) in [0, width] and ys (rows,) in [0, height], float64, ys[0] = 0 at the top.
    """
    return np.linspace(0.0, float(width), int(cols)), np.linspace(0.0, float(height), int(rows))


def bilinear_sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample a (H, W) map at the grid of continuous pixel coordinates xs (C,) x ys (R,), bilinearly between
    pixel centres and clamped at the borders. Returns (R, C) float64."""
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    px = np.clip(np.asarray(xs, dtype=np.float64) - 0.5, 0.0, w - 1.0)
    py = np.clip(np.asarray(ys, dtype=np.float64) - 0.5, 0.0, h - 1.0)
    x0 = np.floor(px).astype(np.int64)
    y0 = np.floor(py).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    ax = (px - x0)[None, :]
    ay = (py - y0)[:, None]
    top = img[np.ix_(y0, x0)] * (1 - ax) + img[np.ix_(y0, x1)] * ax
    bottom = img[np.ix_(y1, x0)] * (1 - ax) + img[np.ix_(y1, x1)] * ax
    return top * (1 - ay) + bottom * ay


def unproject(z: np.ndarray, xs: np.ndarray, ys: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Camera-space points (R, C, 3) float64 for depths z (R, C) seen at pixel coordinates xs (C,) x ys (R,).

    A point projects back onto its pixel through ``intr``: x_px = cx + fx * X / z, y_px = cy - fy * Y / z,
    with Z = -z (Blender's camera looks down -Z, +Y up).
    """
    z = np.asarray(z, dtype=np.float64)
    X = (np.asarray(xs, dtype=np.float64)[None, :] - intr.cx) / intr.fx * z
    Y = -(np.asarray(ys, dtype=np.float64)[:, None] - intr.cy) / intr.fy * z
    return np.stack([X, Y, -z], axis=-1)


def project(points: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Inverse of ``unproject``: camera-space points (..., 3) to continuous pixel coordinates (..., 2) as
    (x, y)."""
    p = np.asarray(points, dtype=np.float64)
    z = -p[..., 2]
    return np.stack([intr.cx + intr.fx * p[..., 0] / z, intr.cy - intr.fy * p[..., 1] / z], axis=-1)


def grid_faces(rows: int, cols: int) -> np.ndarray:
    """Quads (F, 4) int32 of a row-major vertex grid (index = row * cols + col, row 0 at the top), one per
       cell
    in row-major order, wound counter-clockwise as seen from the camera (normals face the camera)."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    tl = (r * cols + c).ravel()
    return np.stack([tl, tl + cols, tl + cols + 1, tl + 1], axis=1).astype(np.int32)


def grid_uvs(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per-vertex UVs (R, C, 2) float64 of the grid: u = x / width, v = 1 - y / height (UV origin
    bottom-left)."""
    u = np.broadcast_to(np.asarray(xs, dtype=np.float64)[None, :] / width, (len(ys), len(xs)))
    v = np.broadcast_to(1.0 - np.asarray(ys, dtype=np.float64)[:, None] / height, (len(ys), len(xs)))
    return np.stack([u, v], axis=-1)


def continuous_faces(z: np.ndarray, threshold: float) -> np.ndarray:
    """Which grid cells to keep: False where the cell spans a depth discontinuity.

    z: (R, C) depths (> 0). A cell is dropped when its farthest corner is more than ``threshold`` (a fraction,
    e.g. 0.1 = 10 %) farther than its nearest corner: such faces are stretched along the view ray between a
    foreground edge and the background. threshold <= 0 keeps every cell.
    Returns (R-1, C-1) bool, row-major like ``grid_faces``.
    """
    z = np.asarray(z, dtype=np.float64)
    if threshold <= 0:
        return np.ones((z.shape[0] - 1, z.shape[1] - 1), dtype=bool)
    corners = np.stack([z[:-1, :-1], z[1:, :-1], z[1:, 1:], z[:-1, 1:]])
    return corners.max(axis=0) <= corners.min(axis=0) * (1.0 + float(threshold))


@dataclass
class DepthMesh:
    """A vertex grid unprojected from a depth map.

    vertices: (N, 3) float32 camera-space positions, N = rows * cols, row-major, row 0 at the top.
    faces: (F, 4) int32 quads kept (discontinuities dropped), counter-clockwise seen from the camera.
    uvs: (N, 2) float32 per-vertex UVs into the photo.
    z: (rows, cols) float64 depths along the view axis (scene units).
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    z: np.ndarray
    rows: int
    cols: int
    intrinsics: Intrinsics
    dropped: int


def depth_mesh(
    z_map: np.ndarray, fov_deg: float, resolution: int, *, fit: str = "AUTO", discontinuity: float = 0.0
) -> DepthMesh:
    """Unproject a metric depth map (H, W) (scene units along the view axis, e.g. from ``metric_depth``)
       into a
    grid of ``resolution`` vertices along the longer side that, seen from a camera with field of view
    ``fov_deg`` at the origin, covers the picture exactly. ``discontinuity`` > 0 drops stretched faces
    (see ``continuous_faces``)."""
    z_map = np.asarray(z_map, dtype=np.float64)
    if z_map.ndim != 2:
        raise ValueError(f"depth map must be 2-D (height, width), got shape {z_map.shape}")
    h, w = z_map.shape
    intr = intrinsics_from_fov(w, h, fov_deg, fit)
    rows, cols = grid_shape(w, h, resolution)
    xs, ys = grid_coordinates(w, h, rows, cols)
    z = bilinear_sample(z_map, xs, ys)
    verts = unproject(z, xs, ys, intr).reshape(-1, 3)
    keep = continuous_faces(z, discontinuity).ravel()
    faces = grid_faces(rows, cols)[keep]
    uvs = grid_uvs(xs, ys, w, h).reshape(-1, 2)
    return DepthMesh(
        vertices=verts.astype(np.float32),
        faces=faces,
        uvs=uvs.astype(np.float32),
        z=z,
        rows=rows,
        cols=cols,
        intrinsics=intr,
        dropped=int((~keep).sum()),
    )


def _pixel_index(z_map: np.ndarray, x: float, y: float) -> tuple[int, int]:
    h, w = z_map.shape
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"pixel ({x}, {y}) lies outside the {w}x{h} picture")
    return int(y), int(x)


def focus_distance_at(z_map: np.ndarray, x: float, y: float, radius: int = 2) -> float:
    """Focus distance (scene units) at pixel (x, y) (x right, y DOWN from the top-left corner, in pixels):
    the median depth of the (2*radius+1)² window around it, so a single noisy pixel does not decide."""
    z_map = np.asarray(z_map, dtype=np.float64)
    i, j = _pixel_index(z_map, x, y)
    window = z_map[max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1]
    return float(np.median(window))


def focus_distance_center(z_map: np.ndarray) -> float:
    """Focus distance (scene units): the median depth of the central 5 % x 5 % of the picture (>= 1 pixel)."""
    z_map = np.asarray(z_map, dtype=np.float64)
    h, w = z_map.shape
    rh, rw = max(1, h // 40), max(1, w // 40)
    window = z_map[max(0, h // 2 - rh) : h // 2 + rh, max(0, w // 2 - rw) : w // 2 + rw]
    return float(np.median(window))


def focus_distance_nearest_region(
    z_map: np.ndarray, min_fraction: float = 0.05, tolerance: float = 0.1, max_samples: int = 65536
) -> float:
    """Focus distance (scene units) on the nearest large region: the smallest depth d such that at least
    ``min_fraction`` of the picture lies within d * (1 ± tolerance); returns the median depth of that region.
    Falls back to the median depth of the picture when no depth gathers that many pixels.
    Large maps are subsampled to about ``max_samples`` pixels on a regular grid (deterministic)."""
    z = np.asarray(z_map, dtype=np.float64)
    step = max(1, int(math.ceil(math.sqrt(z.size / max_samples))))
    z = np.sort(z[::step, ::step].ravel())
    need = max(1, int(math.ceil(min_fraction * z.size)))
    lo = np.searchsorted(z, z * (1.0 - tolerance), side="left")
    hi = np.searchsorted(z, z * (1.0 + tolerance), side="right")
    hits = np.nonzero(hi - lo >= need)[0]
    if hits.size == 0:
        return float(np.median(z))
    k = hits[0]
    return float(np.median(z[lo[k] : hi[k]]))


def camera_lens(width: int, height: int, fov_deg: float, sensor_mm: float = 36.0, fit: str = "AUTO") -> dict:
    """Blender camera settings matching ``intrinsics_from_fov``: lens (mm), sensor_width (mm), sensor_fit.

    With sensor_fit 'AUTO' Blender lays the sensor width along the longer side, as ``fit='AUTO'`` lays the
    FOV.
    """
    return {
        "lens": focal_length_mm(fov_deg, sensor_mm),
        "sensor_width": float(sensor_mm),
        "sensor_height": float(sensor_mm),
        "sensor_fit": fit,
    }
