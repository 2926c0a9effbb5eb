"""scene.geometry: pinhole camera math, depth-range mapping, unprojection, discontinuities, focus."""

import math

import numpy as np
import pytest

from scene import geometry as g


def test_intrinsics_fov_spans_the_longer_side():
    landscape = g.intrinsics_from_fov(200, 100, 90.0)
    assert landscape.fx == pytest.approx(100.0)  # half of 200 px over tan(45°)
    assert (landscape.cx, landscape.cy) == (100.0, 50.0)
    portrait = g.intrinsics_from_fov(100, 300, 60.0)
    assert portrait.fy == pytest.approx(150.0 / math.tan(math.radians(30.0)))
    horizontal = g.intrinsics_from_fov(100, 300, 60.0, fit="HORIZONTAL")
    assert horizontal.fx == pytest.approx(50.0 / math.tan(math.radians(30.0)))


@pytest.mark.parametrize("fov", [0, 180, -5, float("nan")])
def test_bad_fov_is_refused(fov):
    with pytest.raises(ValueError, match="field of view"):
        g.intrinsics_from_fov(10, 10, fov)


def test_focal_length_from_fov_and_back():
    fov = math.degrees(2 * math.atan(18.0 / 50.0))  # a 50 mm lens on a 36 mm sensor
    assert g.focal_length_mm(fov, 36.0) == pytest.approx(50.0)
    assert g.fov_from_focal_length(50.0, 36.0) == pytest.approx(fov)
    lens = g.camera_lens(640, 480, fov, 36.0)
    assert lens["lens"] == pytest.approx(50.0) and lens["sensor_fit"] == "AUTO"


def test_unprojected_points_project_back_onto_their_pixels():
    rng = np.random.default_rng(1)
    intr = g.intrinsics_from_fov(96, 64, 55.0)
    xs, ys = g.grid_coordinates(96, 64, 9, 13)
    z = rng.uniform(0.5, 20.0, size=(9, 13))
    points = g.unproject(z, xs, ys, intr)
    assert np.allclose(-points[..., 2], z)
    back = g.project(points, intr)
    assert np.allclose(back[..., 0], xs[None, :])
    assert np.allclose(back[..., 1], ys[:, None])
    # +Y is up: the top row lies above the bottom row
    assert points[0, 6, 1] > 0 > points[-1, 6, 1]


def test_near_far_for_depth_is_linear_in_depth():
    values = np.array([[2.0, 3.0, 4.0, 6.0]])
    z = g.metric_depth(values, "depth", near=1.0, far=5.0)
    assert np.allclose(z, [[1.0, 2.0, 3.0, 5.0]])


def test_near_far_for_inverse_depth_is_linear_in_inverse_depth():
    values = np.array([0.0, 0.25, 0.5, 1.0])
    z = g.metric_depth(values, "inverse_depth", near=1.0, far=4.0)
    assert z[3] == pytest.approx(1.0) and z[0] == pytest.approx(4.0)  # largest value is nearest
    inverse = 1.0 / z
    assert np.allclose(
        np.diff(inverse), np.diff(values) * (1.0 - 0.25)
    )  # equal value steps = equal 1/z steps
    assert np.all(np.diff(z) < 0)


def test_constant_map_nan_and_range_override():
    assert np.allclose(g.metric_depth(np.full((2, 2), 7.0), "inverse_depth", near=2.0, far=9.0), 2.0)
    assert np.allclose(g.metric_depth(np.full((2, 2), 7.0), "depth", near=2.0, far=9.0), 2.0)
    z = g.metric_depth(np.array([0.0, np.nan, 1.0, np.inf]), "depth", near=1.0, far=3.0)
    assert np.allclose(z, [1.0, 3.0, 3.0, 3.0])
    z = g.metric_depth(np.array([0.5]), "depth", near=1.0, far=3.0, value_range=(0.0, 1.0))
    assert z[0] == pytest.approx(2.0)


def test_scale_method():
    assert np.allclose(
        g.metric_depth(np.array([1.0, 2.5]), "depth", method="SCALE", scale=2.0, far=100), [2, 5]
    )
    z = g.metric_depth(np.array([0.5, 2.0, 0.0, -1.0]), "inverse_depth", method="SCALE", scale=3.0, far=50.0)
    assert np.allclose(z, [6.0, 1.5, 50.0, 50.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"near": 5.0, "far": 1.0}, "near < far"),
        ({"kind": "disparity"}, "depth kind"),
        ({"method": "LOG"}, "range method"),
        ({"method": "SCALE", "scale": 0.0}, "scale"),
    ],
)
def test_metric_depth_refuses_bad_settings(kwargs, match):
    args = {"kind": "depth", **kwargs}
    kind = args.pop("kind")
    with pytest.raises(ValueError, match=match):
        g.metric_depth(np.ones((2, 2)), kind, **args)


def test_grid_is_independent_of_the_image_size():
    assert g.grid_shape(96, 64, 31) == g.grid_shape(960, 640, 31) == (21, 31)
    assert g.grid_shape(64, 96, 31) == (31, 21)
    assert g.grid_shape(1000, 10, 8) == (2, 8)
    with pytest.raises(ValueError, match="at least 2"):
        g.grid_shape(10, 10, 1)


def test_depth_mesh_vertices_are_the_unprojected_depth():
    h, w = 64, 96
    # depth linear in the column index: bilinear sampling reproduces it exactly between pixel centres
    z_map = np.tile(2.0 + 0.05 * np.arange(w, dtype=np.float64), (h, 1))
    dm = g.depth_mesh(z_map, 60.0, 25)
    assert (dm.rows, dm.cols) == (17, 25)
    assert dm.vertices.shape == (17 * 25, 3) and dm.vertices.dtype == np.float32
    xs, ys = g.grid_coordinates(w, h, dm.rows, dm.cols)
    expected_z = 2.0 + 0.05 * np.clip(xs - 0.5, 0, w - 1)
    assert np.allclose(-dm.vertices[:, 2].reshape(17, 25), expected_z[None, :], atol=1e-5)
    # every vertex projects onto its grid position: the mesh covers the frame exactly
    proj = g.project(dm.vertices.astype(np.float64), dm.intrinsics).reshape(17, 25, 2)
    assert np.allclose(proj[..., 0], xs[None, :], atol=1e-3) and np.allclose(
        proj[..., 1], ys[:, None], atol=1e-3
    )
    # UVs: top-left vertex (0, 1), bottom-right (1, 0)
    assert np.allclose(dm.uvs[0], [0.0, 1.0]) and np.allclose(dm.uvs[-1], [1.0, 0.0])
    assert dm.faces.shape == (16 * 24, 4) and dm.dropped == 0


def test_faces_face_the_camera():
    dm = g.depth_mesh(np.full((10, 10), 5.0), 50.0, 4)
    v = dm.vertices.astype(np.float64)
    a, b, c = v[dm.faces[:, 0]], v[dm.faces[:, 1]], v[dm.faces[:, 2]]
    normals = np.cross(b - a, c - a)
    assert np.all(normals[:, 2] > 0)  # towards +Z, where the camera is


def test_faces_across_a_depth_step_are_dropped():
    z_map = np.full((40, 40), 2.0)
    z_map[:, 20:] = 8.0
    dm = g.depth_mesh(z_map, 50.0, 41, discontinuity=0.1)
    keep = g.continuous_faces(dm.z, 0.1)
    # one column of cells straddles the step; every cell in it is dropped, every other one kept
    dropped_cols = np.nonzero(~keep.any(axis=0))[0]
    assert len(dropped_cols) >= 1 and keep.sum() == keep.size - keep.shape[0] * len(dropped_cols)
    assert dm.dropped == keep.shape[0] * len(dropped_cols) and len(dm.faces) == keep.sum()
    for col in dropped_cols:
        assert dm.z[:, col].max() < 3.0 < dm.z[:, col + 1].max() or dm.z[:, col + 1].min() > 3.0
    assert g.depth_mesh(z_map, 50.0, 41, discontinuity=0.0).dropped == 0


def test_focus_at_pixel_uses_the_local_median():
    z = np.full((50, 80), 10.0)
    z[20:30, 40:50] = 3.0
    z[25, 45] = 100.0  # one noisy pixel does not decide
    assert g.focus_distance_at(z, 45.5, 25.5) == pytest.approx(3.0)
    assert g.focus_distance_at(z, 5, 5) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="outside"):
        g.focus_distance_at(z, 80, 10)


def test_focus_center():
    z = np.full((100, 100), 9.0)
    z[45:55, 45:55] = 4.0
    assert g.focus_distance_center(z) == pytest.approx(4.0)


def test_focus_on_nearest_large_region_ignores_small_specks():
    z = np.full((100, 100), 10.0)
    z[:30, :] = 3.0  # 30 % of the picture at 3
    z[90:, 90:] = 1.0  # a 1 % speck nearer still
    assert g.focus_distance_nearest_region(z, min_fraction=0.05) == pytest.approx(3.0)
    assert g.focus_distance_nearest_region(z, min_fraction=0.005) == pytest.approx(1.0)
    # nothing gathers 50 % within ±1 %: the median of the picture
    ramp = np.linspace(1.0, 100.0, 10000).reshape(100, 100)
    assert g.focus_distance_nearest_region(ramp, min_fraction=0.5, tolerance=0.01) == pytest.approx(
        np.median(ramp)
    )
