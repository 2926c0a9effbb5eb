"""Load Depth Map, Mesh from Depth, Displaced Plane and Depth-of-Field Camera in real Blender, on a 96x64
synthetic photo with a known inverse-depth map (a floor getting nearer towards the bottom, a box in front),
plus a small Cycles render of the result."""

import math
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy wheel")
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from conftest import DATA, depth_reference, ext, load_photo  # noqa: E402

FOV = math.radians(50.0)


# Expectations written out here from the pinhole model, independent of the extension's scene.geometry:
def expected_depth(value, kind, near, far, lo=0.1, hi=0.9):
    """Scene depth of a map value under the near/far mapping: inverse depth linear in 1/z (the map's largest
    value at ``near``), depth linear in z (its smallest value at ``near``). lo/hi: the map's range."""
    t = (np.asarray(value, np.float64) - lo) / (hi - lo)
    if kind == "inverse_depth":
        return 1.0 / (1.0 / far + t * (1.0 / near - 1.0 / far))
    return near + t * (far - near)


def sample(map_, x, y):
    """The map at continuous pixel coordinates (x right, y down, pixel centres at +0.5), bilinear, clamped."""
    h, w = map_.shape
    px, py = min(max(x - 0.5, 0.0), w - 1.0), min(max(y - 0.5, 0.0), h - 1.0)
    x0, y0 = int(px), int(py)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = px - x0, py - y0
    top = map_[y0, x0] * (1 - ax) + map_[y0, x1] * ax
    return top * (1 - ay) + (map_[y1, x0] * (1 - ax) + map_[y1, x1] * ax) * ay


def camera_space(cam, world_co):
    """(x, y, z) of a world point in the camera's frame (Blender cameras look down -Z)."""
    return cam.matrix_world.inverted() @ world_co


def loaded(kind="inverse_depth", filename="depth_96x64.exr"):
    photo = load_photo()
    result = bpy.ops.boost_depth.load_depth(filepath=str(DATA / filename), image=photo.name, kind=kind)
    assert result == {"FINISHED"}
    return photo, bpy.data.images[f"{photo.name} depth"]


def pixels(image):
    a = np.empty(image.size[0] * image.size[1] * image.channels, np.float32)
    image.pixels.foreach_get(a)
    return a.reshape(image.size[1], image.size[0], image.channels)[::-1]


@pytest.mark.parametrize("filename, tolerance", [("depth_96x64.exr", 0.0), ("depth_96x64.png", 1 / 65535)])
def test_load_depth_map_makes_a_float_non_color_packed_image(filename, tolerance):
    photo, depth = loaded(filename=filename)
    assert depth.name == "photo_96x64.png depth"
    assert depth.is_float and depth.colorspace_settings.name == "Non-Color"
    assert depth.packed_file is not None and depth.use_fake_user
    assert depth["depth_kind"] == "inverse_depth" and depth["depth_source"] == photo.name
    assert tuple(depth.size) == (96, 64)
    assert np.abs(pixels(depth)[:, :, 0] - depth_reference()).max() <= tolerance + 1e-7


def test_loading_again_replaces_the_depth_image():
    photo, first = loaded()
    first_name = first.name
    bpy.ops.boost_depth.load_depth(filepath=str(DATA / "depth_96x64.png"), image=photo.name, kind="depth")
    depths = [i for i in bpy.data.images if i.name.startswith(first_name)]
    assert len(depths) == 1 and depths[0]["depth_kind"] == "depth"


def test_load_depth_reports_unreadable_files(tmp_path):
    photo = load_photo()
    bad = tmp_path / "bad.exr"
    bad.write_bytes(b"not an image")
    with pytest.raises(RuntimeError, match="cannot read depth map"):
        bpy.ops.boost_depth.load_depth(filepath=str(bad), image=photo.name)
    assert f"{photo.name} depth" not in bpy.data.images


@pytest.mark.parametrize("kind", ["inverse_depth", "depth"])
def test_mesh_vertices_are_the_unprojected_depth(kind):
    photo, _depth = loaded(kind=kind)
    result = bpy.ops.boost_depth.mesh_from_depth(
        image=photo.name, fov=FOV, resolution=49, near=2.0, far=8.0, discontinuity=0.0
    )
    assert result == {"FINISHED"}
    scene = bpy.context.scene
    obj = bpy.data.objects["photo_96x64.png mesh"]
    cam = bpy.data.objects["photo_96x64.png camera"]
    assert (obj["boost_depth"]["rows"], obj["boost_depth"]["cols"]) == (33, 49)  # not the image's 64 x 96
    assert len(obj.data.vertices) == 33 * 49 and len(obj.data.polygons) == 32 * 48
    reference = depth_reference()
    for index in range(0, 33 * 49, 37):
        co = obj.matrix_world @ obj.data.vertices[index].co
        frame = world_to_camera_view(scene, cam, co)  # Blender's own projection: (u, v) in the frame, v up
        row, col = divmod(index, 49)
        assert (frame.x, frame.y) == pytest.approx((col / 48, 1 - row / 32), abs=1e-5)  # the grid spans the frame
        x, y = frame.x * 96, (1 - frame.y) * 64
        depths = expected_depth(reference, kind, 2.0, 8.0)  # scene depth per pixel, sampled between pixels
        assert -camera_space(cam, co).z == pytest.approx(sample(depths, x, y), rel=1e-5)
    verts = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", verts)
    z = -verts.reshape(33, 49, 3)[..., 2]
    if kind == "inverse_depth":  # nearest where the map says so: the box; the top row is the farthest
        assert z[16, 20] == pytest.approx(2.0, abs=1e-4) and z.max() == pytest.approx(8.0, abs=1e-4)
    else:
        assert z[0, 0] == pytest.approx(2.0, abs=1e-4) and z[16, 20] == pytest.approx(8.0, abs=1e-4)


def test_mesh_seen_from_its_camera_reproduces_the_photo():
    photo, _depth = loaded()
    bpy.ops.boost_depth.mesh_from_depth(image=photo.name, fov=FOV, resolution=25, discontinuity=0.0)
    scene = bpy.context.scene
    obj = bpy.data.objects["photo_96x64.png mesh"]
    cam = bpy.data.objects["photo_96x64.png camera"]
    assert scene.camera == cam and (scene.render.resolution_x, scene.render.resolution_y) == (96, 64)
    # each vertex lands in the camera frame where its UV points in the photo
    uv_of_vertex = {}
    for loop, uv in zip(obj.data.loops, obj.data.uv_layers["UVMap"].data, strict=True):
        uv_of_vertex[loop.vertex_index] = tuple(uv.uv)
    for index in (0, 12, 24, 200, 424):
        co = obj.matrix_world @ obj.data.vertices[index].co
        frame = world_to_camera_view(scene, cam, co)
        assert (frame.x, frame.y) == pytest.approx(uv_of_vertex[index], abs=1e-4)
    # the material shows the photo
    material = obj.data.materials[0]
    textures = [n for n in material.node_tree.nodes if n.type == "TEX_IMAGE"]
    assert textures and textures[0].image == photo
    assert any(n.type == "EMISSION" for n in material.node_tree.nodes)


def test_faces_at_depth_discontinuities_are_dropped():
    photo, _depth = loaded()
    bpy.ops.boost_depth.mesh_from_depth(
        image=photo.name, fov=FOV, resolution=97, near=1.0, far=10.0, discontinuity=0.25
    )
    obj = bpy.data.objects["photo_96x64.png mesh"]
    verts = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", verts)
    z = -verts.reshape(-1, 3)[:, 2]
    grid = z.reshape(65, 97)  # cells whose corners differ by more than 25 % in depth span the box's edge
    corners = np.stack([grid[:-1, :-1], grid[1:, :-1], grid[1:, 1:], grid[:-1, 1:]])
    stretched = int((corners.max(axis=0) > corners.min(axis=0) * 1.25).sum())
    assert stretched > 0
    assert len(obj.data.polygons) == 96 * 64 - stretched
    assert obj["boost_depth"]["dropped_faces"] == stretched
    for poly in obj.data.polygons:  # no kept face spans the box's silhouette
        corner = z[list(poly.vertices)]
        assert corner.max() <= corner.min() * 1.25 + 1e-5
    # the box's outline is gone: the faces across its left edge (column 20 of 96) are dropped
    polys = {tuple(sorted(p.vertices)) for p in obj.data.polygons}
    row, col = 30, 19
    tl = row * 97 + col
    assert tuple(sorted((tl, tl + 1, tl + 97, tl + 98))) not in polys


@pytest.mark.parametrize("focus, pixel", [("CENTER", (0, 0)), ("PIXEL", (80, 5)), ("NEAREST", (0, 0))])
def test_dof_camera(focus, pixel):
    photo, _depth = loaded()
    bpy.ops.boost_depth.mesh_from_depth(image=photo.name, fov=FOV, near=1.0, far=10.0, resolution=33)
    result = bpy.ops.boost_depth.dof_camera(
        image=photo.name, focus=focus, pixel_x=pixel[0], pixel_y=pixel[1], fstop=1.4, sensor=24.0
    )
    assert result == {"FINISHED"}
    cam = bpy.data.objects["photo_96x64.png camera"]
    assert cam.data.sensor_fit == "AUTO" and cam.data.sensor_width == pytest.approx(24.0)
    assert cam.data.lens == pytest.approx(12.0 / math.tan(FOV / 2), rel=1e-5)
    assert cam.data.dof.use_dof and cam.data.dof.aperture_fstop == pytest.approx(1.4)
    if focus == "PIXEL":  # (80, 5) from the bottom-left: row 58 from the top, on the floor
        expected = expected_depth(depth_reference()[58, 80], "inverse_depth", 1.0, 10.0)
        assert 1.5 < expected < 3.0
    else:  # the image centre and the nearest large region are both on the box, at the near distance
        expected = 1.0
    assert cam.data.dof.focus_distance == pytest.approx(expected, rel=1e-5)
    assert cam.data.clip_end >= 10.0 and cam.data.clip_start <= 0.5


def test_dof_camera_without_a_mesh_uses_its_own_range():
    photo, _depth = loaded(kind="depth")
    bpy.ops.boost_depth.dof_camera(
        image=photo.name, focus="PIXEL", pixel_x=30, pixel_y=30, near=3.0, far=6.0, range_method="NEAR_FAR"
    )
    cam = bpy.data.objects["photo_96x64.png camera"]
    assert cam.data.dof.focus_distance == pytest.approx(6.0)  # "depth" 0.9 on the box = the farthest


def test_operators_without_depth_explain_why():
    photo = load_photo()
    assert not bpy.ops.boost_depth.mesh_from_depth.poll()  # no depth image at all: greyed out
    bpy.ops.boost_depth.load_depth(filepath=str(DATA / "depth_96x64.exr"), image=photo.name)
    other = bpy.data.images.new("other", 8, 8)
    with pytest.raises(RuntimeError, match="has no depth image yet"):
        bpy.ops.boost_depth.mesh_from_depth(image=other.name)
    assert ext("operators.mesh").depth_blocker(bpy.context).startswith("No photo")


def test_displaced_plane_uses_the_float_depth_image():
    photo, depth = loaded()
    result = bpy.ops.boost_depth.displaced_plane(
        image=photo.name, fov=FOV, resolution=97, distance=5.0, relief=2.0
    )
    assert result == {"FINISHED"}
    obj = bpy.data.objects["photo_96x64.png plane"]
    (mod,) = [m for m in obj.modifiers if m.type == "DISPLACE"]
    assert mod.texture.image == depth and mod.texture.image.is_float and mod.texture_coords == "UV"
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    co = np.empty(len(evaluated.vertices) * 3, np.float32)
    evaluated.vertices.foreach_get("co", co)
    shift = co.reshape(65, 97, 3)[..., 2] + 5.0  # towards the camera (+Z in camera space)
    ref = depth_reference()
    lo, hi = ref.min(), ref.max()
    # box centre: the nearest value moves by the full relief; the top row (farthest floor) hardly moves
    assert shift[30, 36] == pytest.approx(2.0, abs=0.02)
    assert shift[0, 80] == pytest.approx(0.0, abs=0.03)
    row = 60  # floor near the bottom: a float value, not an 8-bit step
    expected = 2.0 * (ref[int(row * 63 / 64), 80] - lo) / (hi - lo)
    assert shift[row, 80] == pytest.approx(expected, abs=0.03)


def render(path: Path, samples=8, percentage=100):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 2
    scene.render.resolution_percentage = percentage
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    out = pixels(image)[:, :, :3].copy()
    bpy.data.images.remove(image)
    return out


def sharpness(rgb, rows, cols):
    patch = rgb[rows, cols].mean(axis=2)
    return float(np.abs(np.diff(patch, axis=1)).mean())


def test_cycles_render_shows_the_photo_with_depth_of_field(tmp_path):
    photo, _depth = loaded()
    bpy.ops.boost_depth.mesh_from_depth(
        image=photo.name, fov=FOV, near=1.0, far=10.0, resolution=97, discontinuity=0.0
    )
    sharp = render(tmp_path / "sharp.png", samples=16)
    bpy.ops.boost_depth.dof_camera(image=photo.name, focus="CENTER", fstop=0.35)
    blurred = render(tmp_path / "dof.png", samples=16)
    assert sharp.shape == (64, 96, 3)
    # in focus: the white square on the box matches the photo in both renders
    assert blurred[28:32, 33:39].mean() > 0.85 and sharp[28:32, 33:39].mean() > 0.85
    # out of focus: the far floor's texture (top rows) is blurred away by the depth of field
    assert sharpness(blurred, slice(0, 10), slice(55, 95)) < 0.6 * sharpness(
        sharp, slice(0, 10), slice(55, 95)
    )


def test_invoked_operators_take_the_depth_tab_settings():
    photo, _depth = loaded()
    s = bpy.context.scene.boost_depth
    s.image = photo
    s.resolution, s.near, s.far, s.discontinuity = 17, 2.0, 4.0, 0.0
    s.focus, s.fstop = "CENTER", 5.6
    assert bpy.ops.boost_depth.mesh_from_depth("INVOKE_DEFAULT") == {"FINISHED"}
    obj = bpy.data.objects["photo_96x64.png mesh"]
    assert (obj["boost_depth"]["cols"], obj["boost_depth"]["near"], obj["boost_depth"]["far"]) == (
        17,
        2.0,
        4.0,
    )
    assert bpy.ops.boost_depth.dof_camera("INVOKE_DEFAULT") == {"FINISHED"}
    cam = bpy.data.objects["photo_96x64.png camera"]
    assert cam.data.dof.aperture_fstop == pytest.approx(5.6) and cam.data.dof.focus_distance == pytest.approx(
        2.0
    )


def test_photo_file_for_packed_and_generated_images(tmp_path):
    images = ext("scene.images")
    photo = load_photo()
    photo.pack()
    packed = images.photo_file(photo, tmp_path)
    assert packed.parent == tmp_path and packed.read_bytes() == (DATA / "photo_96x64.png").read_bytes()
    generated = bpy.data.images.new("generated picture", 32, 16)
    generated.generated_color = (0.2, 0.4, 0.6, 1.0)
    path = images.photo_file(generated, tmp_path)
    assert path == tmp_path / "generated_picture.png"
    back = bpy.data.images.load(str(path))
    assert tuple(back.size) == (32, 16)
    assert len(bpy.data.images) == 3  # photo, generated, reloaded file: no temporary copy left behind
