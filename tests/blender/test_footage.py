"""Issue 22, part 5: footage in Blender. A real image sequence on disk (frames made by panning a crop across the
test photo) is estimated over a frame range by the real engine (synthetic weights); the depth comes back as an
image sequence; the depth mesh, the displaced plane and the DOF camera's focus follow the timeline.

Every expectation is computed here from the engine's files with numpy and the pinhole model written out below,
independently of the extension's scene.geometry."""

import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy wheel")
import addon_utils  # noqa: E402

from conftest import ADDON, DATA, ext, prefs, wait_for  # noqa: E402

FOV = math.radians(50.0)
FRAMES = 5  # shot_0001.png .. shot_0005.png
START, END = 2, 5  # the scene range estimated: frame 1 is left out on purpose
NEAR, FAR = 1.5, 9.0


def weights_args(w):
    return {"base_weights": str(w["midas_v2"]), "merge_weights": str(w["merge_net"])}


def file_pixels(path):
    """(H, W, 4) float32 top-down pixels of an image file, read by Blender."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        image.colorspace_settings.is_data = True
        a = np.empty(image.size[0] * image.size[1] * image.channels, np.float32)
        image.pixels.foreach_get(a)
        return a.reshape(image.size[1], image.size[0], image.channels)[::-1].copy()
    finally:
        bpy.data.images.remove(image)


def write_png(rgba_top_down, path):
    h, w = rgba_top_down.shape[:2]
    image = bpy.data.images.new("frame", w, h, alpha=False)
    try:
        image.pixels.foreach_set(np.ascontiguousarray(rgba_top_down[::-1], np.float32).ravel())
        image.filepath_raw = str(path)
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)


def panned_frames(folder: Path, count=FRAMES, first=1):
    """Frames 96x64 made by panning a 72x48 crop across the real photo (bilinear resize back to 96x64)."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = file_pixels(DATA / "photo_96x64.png")
    paths = []
    for k in range(count):
        crop = photo[k * 3 : k * 3 + 48, k * 5 : k * 5 + 72]
        ys = np.clip((np.arange(64) + 0.5) * 48 / 64 - 0.5, 0, 47)
        xs = np.clip((np.arange(96) + 0.5) * 72 / 96 - 0.5, 0, 71)
        y0, x0 = ys.astype(int), xs.astype(int)
        y1, x1 = np.minimum(y0 + 1, 47), np.minimum(x0 + 1, 71)
        ay, ax = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        top = crop[y0][:, x0] * (1 - ax) + crop[y0][:, x1] * ax
        bottom = crop[y1][:, x0] * (1 - ax) + crop[y1][:, x1] * ax
        path = folder / f"shot_{first + k:04d}.png"
        write_png(top * (1 - ay) + bottom * ay, path)
        paths.append(path)
    return paths


def open_sequence(first_frame: Path):
    image = bpy.data.images.load(str(first_frame))
    image.source = "SEQUENCE"
    return image


# Expectations from the pinhole model, written out here -------------------------------------------------------
def metric(values, near=NEAR, far=FAR):
    """Inverse depth stretched over [near, far] (1/z linear in the value; the frame's largest value at near)."""
    v = np.asarray(values, np.float64)
    t = (v - v.min()) / (v.max() - v.min())
    return 1.0 / (1.0 / far + t * (1.0 / near - 1.0 / far))


def bilinear(map_, x, y):
    h, w = map_.shape
    px, py = np.clip(x - 0.5, 0, w - 1.0), np.clip(y - 0.5, 0, h - 1.0)
    x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = px - x0, py - y0
    top = map_[y0, x0] * (1 - ax) + map_[y0, x1] * ax
    return top * (1 - ay) + (map_[y1, x0] * (1 - ax) + map_[y1, x1] * ax) * ay


def pinhole_vertices(values, rows, cols, fov=FOV):
    """(rows*cols, 3) camera-space points: the grid spans the picture edge to edge, z along -Z."""
    z_map = metric(values)
    h, w = z_map.shape
    f = (max(w, h) / 2) / math.tan(fov / 2)
    gx, gy = np.meshgrid(np.linspace(0, w, cols), np.linspace(0, h, rows))
    z = bilinear(z_map, gx, gy)
    return np.stack([(gx - w / 2) / f * z, -(gy - h / 2) / f * z, -z], axis=-1).reshape(-1, 3)


def pixel_focus(values, x, y):
    """Median scene depth of the 5x5 window around pixel (x, y) counted from the bottom-left."""
    z_map = metric(values)
    i, j = z_map.shape[0] - 1 - y, x
    return float(np.median(z_map[max(0, i - 2) : i + 3, max(0, j - 2) : j + 3]))


def mesh_co(mesh):
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


# The estimate (once for the module: the engine runs ~seconds per frame) ----------------------------------------
@pytest.fixture(scope="module")
def estimated(addon, engine_python, synthetic_weights, tmp_path_factory):
    """Estimate Depth over scene frames 2..5 of a 5-frame sequence: what the operator left in the scene (read
    before the next test empties it) and where the files are."""
    ext("engine_link.running").stop_all()
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    p = prefs()
    p.python_source, p.python_path, p.device = "CUSTOM", engine_python, "cpu"
    shots = tmp_path_factory.mktemp("footage") / "shots"
    frames = panned_frames(shots)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = START, END
    scene.frame_set(3)
    sequence = open_sequence(frames[0])
    scene.boost_depth.image = sequence
    area = bpy.context.window_manager.windows[0].screen.areas[0]
    area.type = "IMAGE_EDITOR"
    area.spaces.active.image = sequence  # an editor showing the footage: its frames follow the depth's mapping
    bpy.ops.ed.undo_push(message="sequence opened")
    started = time.monotonic()
    result = bpy.ops.boost_depth.estimate(net="midas_v2", mode="r0", **weights_args(synthetic_weights))
    seconds = time.monotonic() - started
    print(f"estimate over {END - START + 1} frames (r0, 96x64): {seconds:.1f} s")
    depth = bpy.data.images.get(f"{sequence.name} depth")
    seen = {
        "result": result,
        "depth": None if depth is None else {
            "source": depth.source, "filepath": bpy.path.abspath(depth.filepath), "is_data":
            depth.colorspace_settings.is_data, "packed": depth.packed_file is not None, "kind": depth["depth_kind"],
            "footage": depth["depth_footage"].to_dict()},
        "state": bpy.context.window_manager.boost_depth_job.last_error,
        "editor": tuple(getattr(area.spaces.active.image_user, k) for k in (
            "frame_start", "frame_duration", "frame_offset", "use_auto_refresh")),
    }
    name = sequence.name
    bpy.ops.ed.undo()  # one step back: the sequence without its depth
    seen["after_undo"] = bpy.data.images.get(f"{name} depth") is None and name in bpy.data.images
    p.python_source, p.python_path = "BLENDER", ""
    return {"shots": shots, "frames": frames, "folder": shots.parent / "shots" / "shot_depth", "seen": seen,
            "sequence_name": name}


def reload(estimated):
    """The scene as Estimate left it, rebuilt from the engine's files (this test's scene starts empty)."""
    footage = ext("scene.footage")
    sequence = open_sequence(estimated["frames"][0])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = START, END
    scene.boost_depth.image = sequence
    record = footage.DepthSequence(**estimated["seen"]["depth"]["footage"])
    depth = footage.load_depth_sequence(record, sequence.name, "inverse_depth")
    return sequence, depth


def npy(estimated, number):
    return np.load(estimated["folder"] / f"shot_{number:04d}.npy")


def test_estimate_over_the_range_writes_and_loads_a_depth_sequence(estimated):
    seen, folder = estimated["seen"], estimated["folder"]
    assert seen["result"] == {"FINISHED"}, seen["state"]
    depth = seen["depth"]
    assert depth is not None
    assert depth["source"] == "SEQUENCE" and depth["is_data"] and not depth["packed"]
    assert depth["kind"] == "inverse_depth"
    assert Path(depth["filepath"]) == folder / "shot_0002.exr"
    assert depth["footage"] == {"folder": str(folder), "prefix": "shot_", "width": 4, "suffix": "", "start": START,
                                "end": END, "offset": 0}
    # the range's frames, and only those, are on disk: EXR for Blender, NPY with the same values for Python
    written = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert written == sorted(f"shot_{n:04d}{ext_}" for n in range(START, END + 1) for ext_ in (".exr", ".npy"))
    maps = [npy(estimated, n) for n in range(START, END + 1)]
    for n, values in zip(range(START, END + 1), maps, strict=True):
        assert values.shape == (64, 96) and np.isfinite(values).all() and values.std() > 0
        np.testing.assert_allclose(file_pixels(folder / f"shot_{n:04d}.exr")[..., 0], values, rtol=1e-6, atol=1e-6)
    assert all(np.abs(a - b).mean() > 1e-4 for a, b in zip(maps, maps[1:]))  # the camera pans: frames differ
    assert (folder / ".boost_depth_job" / "job.json").is_file()  # the engine's job file, beside the frames
    assert seen["editor"] == (START, END - START + 1, START - 1, True)  # scene frame n shows frame n
    assert seen["after_undo"]  # one undo step: the result as a whole


def test_depth_sequence_shows_depth_frame_n_at_scene_frame_n(estimated):
    _sequence, depth = reload(estimated)
    area = bpy.context.window_manager.windows[0].screen.areas[0]
    area.type = "IMAGE_EDITOR"
    space = area.spaces.active
    space.image = depth
    ext("scene.footage").retime_users(None, depth, ext("scene.footage").DepthSequence.of(depth))
    user = space.image_user
    assert user.use_auto_refresh and not user.use_cyclic
    for frame, number in ((2, 2), (3, 3), (5, 5), (9, 5)):  # after the range: the last one held
        bpy.context.scene.frame_set(frame)
        shown = bpy.path.abspath(depth.filepath_from_user(image_user=user))
        assert Path(shown) == estimated["folder"] / f"shot_{number:04d}.exr", (frame, shown)


def test_mesh_from_depth_follows_the_frames(estimated):
    sequence, _depth = reload(estimated)
    footage = ext("scene.footage")
    assert footage.follow_frame in bpy.app.handlers.frame_change_post
    scene = bpy.context.scene
    scene.frame_set(3)
    assert bpy.ops.boost_depth.mesh_from_depth(image=sequence.name, fov=FOV, resolution=25, near=NEAR, far=FAR,
                                               discontinuity=0.0) == {"FINISHED"}
    obj = bpy.data.objects[f"{sequence.name} mesh"]
    rows, cols = obj["boost_depth"]["rows"], obj["boost_depth"]["cols"]
    assert (rows, cols) == (17, 25)
    np.testing.assert_allclose(mesh_co(obj.data), pinhole_vertices(npy(estimated, 3), rows, cols), rtol=1e-5,
                               atol=1e-5)
    for frame, number in ((5, 5), (2, 2), (4, 4), (1, 2), (3, 3)):
        scene.frame_set(frame)
        expected = pinhole_vertices(npy(estimated, number), rows, cols)
        np.testing.assert_allclose(mesh_co(obj.data), expected, rtol=1e-5, atol=1e-5, err_msg=f"frame {frame}")
    scene.frame_set(2)
    two = mesh_co(obj.data).copy()
    scene.frame_set(5)
    assert np.abs(mesh_co(obj.data) - two).max() > 1e-3  # it really moves
    # the photo on the mesh follows too
    (tex,) = [n for n in obj.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE"]
    assert tex.image == sequence and tex.image_user.use_auto_refresh
    scene.frame_set(4)
    evaluated = obj.data.materials[0].evaluated_get(bpy.context.evaluated_depsgraph_get())
    (tex,) = [n for n in evaluated.node_tree.nodes if n.type == "TEX_IMAGE"]  # the frame is set on the evaluated copy
    assert Path(bpy.path.abspath(sequence.filepath_from_user(image_user=tex.image_user))) == (
        estimated["shots"] / "shot_0004.png")


def test_a_saved_blend_refers_to_the_depth_relatively_and_moves_with_it(estimated, tmp_path):
    import shutil

    shot = tmp_path / "shot"
    shutil.copytree(estimated["shots"], shot)
    bpy.ops.wm.save_as_mainfile(filepath=str(shot / "scene.blend"))
    footage = ext("scene.footage")
    sequence = open_sequence(shot / "shot_0001.png")
    record = footage.DepthSequence(**{**estimated["seen"]["depth"]["footage"], "folder": str(shot / "shot_depth")})
    depth = footage.load_depth_sequence(record, sequence.name, "inverse_depth")
    assert depth.filepath == "//shot_depth/shot_0002.exr" and depth["depth_footage"]["folder"] == "//shot_depth/"
    bpy.ops.boost_depth.mesh_from_depth(image=sequence.name, fov=FOV, resolution=13, near=NEAR, far=FAR,
                                        discontinuity=0.0)
    name = f"{sequence.name} mesh"
    bpy.ops.wm.save_mainfile()
    moved = tmp_path / "elsewhere"
    shutil.move(shot, moved)  # the whole shot moves (another machine's mount)
    bpy.ops.wm.open_mainfile(filepath=str(moved / "scene.blend"))
    obj = bpy.data.objects[name]
    bpy.context.scene.frame_set(4)
    expected = pinhole_vertices(np.load(moved / "shot_depth" / "shot_0004.npy"), 9, 13)
    np.testing.assert_allclose(mesh_co(obj.data), expected, rtol=1e-5, atol=1e-5)


def loaded_copy(estimated, tmp_path):
    """The estimated depth frames copied to tmp_path/copy and loaded for the photo sequence: (footage module,
    sequence image, copy folder), so a test can change the copy's files."""
    import shutil

    footage = ext("scene.footage")
    sequence = open_sequence(estimated["frames"][0])
    folder = tmp_path / "copy"
    shutil.copytree(estimated["folder"], folder)
    record = footage.DepthSequence(**{**estimated["seen"]["depth"]["footage"], "folder": str(folder)})
    footage.load_depth_sequence(record, sequence.name, "inverse_depth")
    return footage, sequence, folder


def test_frames_are_read_once_and_again_when_their_file_changes(estimated, tmp_path, monkeypatch):
    footage, sequence, folder = loaded_copy(estimated, tmp_path)
    scene = bpy.context.scene
    scene.frame_set(2)
    bpy.ops.boost_depth.mesh_from_depth(image=sequence.name, fov=FOV, resolution=13, near=NEAR, far=FAR,
                                        discontinuity=0.0)
    obj = bpy.data.objects[f"{sequence.name} mesh"]
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(Path(a[0]).name) or real_load(*a, **k))
    for frame in (3, 4, 3, 4, 2):
        scene.frame_set(frame)
    assert sorted(loads) == ["shot_0003.npy", "shot_0004.npy"]  # frame 2 was read by the build
    changed = np.ascontiguousarray(real_load(folder / "shot_0004.npy")[:, ::-1])  # mirrored
    np.save(folder / "shot_0004.npy", changed)
    scene.frame_set(4)
    assert loads[-1] == "shot_0004.npy"
    np.testing.assert_allclose(mesh_co(obj.data), pinhole_vertices(changed, 9, 13), rtol=1e-5, atol=1e-5)


def test_frame_handler_does_nothing_without_footage_and_unregisters():
    scene = bpy.context.scene
    photo = bpy.data.images.load(str(DATA / "photo_96x64.png"))
    bpy.ops.boost_depth.load_depth(filepath=str(DATA / "depth_96x64.exr"), image=photo.name)
    bpy.ops.boost_depth.mesh_from_depth(image=photo.name, resolution=9)
    still = bpy.data.objects[f"{photo.name} mesh"]
    before = mesh_co(still.data).copy()
    scene.frame_set(7)
    np.testing.assert_array_equal(mesh_co(still.data), before)  # a still's mesh is left alone

    def ours():
        return [h for h in bpy.app.handlers.frame_change_post if h.__name__ == "follow_frame"
                and h.__module__.endswith(".scene.footage")]

    assert len(ours()) == 1
    addon_utils.disable(ADDON, default_set=True)  # the extension disabled: its handler goes with it
    try:
        assert ours() == []
    finally:
        addon_utils.enable(ADDON, default_set=True)
    assert len(ours()) == 1
    footage = ext("scene.footage")
    footage.register_handlers()  # twice: still once
    assert len(ours()) == 1


def test_displaced_plane_texture_follows_the_frames(estimated):
    sequence, depth = reload(estimated)
    scene = bpy.context.scene
    scene.frame_set(2)
    assert bpy.ops.boost_depth.displaced_plane(image=sequence.name, fov=FOV, resolution=97, distance=5.0,
                                               relief=2.0) == {"FINISHED"}
    obj = bpy.data.objects[f"{sequence.name} plane"]
    (mod,) = [m for m in obj.modifiers if m.type == "DISPLACE"]
    texture = mod.texture
    assert texture.image == depth and texture.image_user.use_auto_refresh  # no Python needed to follow
    maps = {n: npy(estimated, n) for n in range(START, END + 1)}
    lo, hi = min(m.min() for m in maps.values()), max(m.max() for m in maps.values())  # one scale for the shot
    shifts = {}
    for frame in (4, 2, 5, 3):
        scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        evaluated = obj.evaluated_get(depsgraph).data
        shift = mesh_co(evaluated).reshape(65, 97, 3)[..., 2] + 5.0
        user = texture.evaluated_get(depsgraph).image_user  # the frame is set on the evaluated copy
        assert Path(bpy.path.abspath(depth.filepath_from_user(image_user=user))) == (
            estimated["folder"] / f"shot_{frame:04d}.exr")
        values = maps[frame]
        gx, gy = np.meshgrid(np.arange(8, 90, 9, dtype=float), np.arange(6, 60, 9, dtype=float))
        expected = 2.0 * (bilinear(values.astype(np.float64), gx, gy) - lo) / (hi - lo)
        got = shift[gy.astype(int), gx.astype(int)]
        np.testing.assert_allclose(got, expected, atol=0.03, err_msg=f"frame {frame}")
        shifts[frame] = shift
    assert np.abs(shifts[5] - shifts[2]).max() > 0.05  # the relief changes with the frame
    # estimated again over another range: the texture (and the photo material) take the new frame mapping
    footage = ext("scene.footage")
    record = footage.DepthSequence(**{**estimated["seen"]["depth"]["footage"], "start": 3, "end": 4})
    again = footage.load_depth_sequence(record, sequence.name, "inverse_depth")
    assert footage.retime_users(sequence, again, record) >= 2
    assert texture.image == again and (texture.image_user.frame_start, texture.image_user.frame_duration) == (3, 2)


def test_dof_camera_keys_its_focus_on_a_picked_point_per_frame(estimated):
    sequence, _depth = reload(estimated)
    scene = bpy.context.scene
    scene.frame_set(3)
    x, y = 70, 20
    assert bpy.ops.boost_depth.dof_camera(image=sequence.name, focus="PIXEL", pixel_x=x, pixel_y=y, fov=FOV,
                                          near=NEAR, far=FAR, animate_focus=True) == {"FINISHED"}
    cam = bpy.data.objects[f"{sequence.name} camera"]
    fcurve = ext("scene.footage").focus_fcurve(cam.data)
    assert fcurve is not None
    keys = {int(round(k.co[0])): k.co[1] for k in fcurve.keyframe_points}
    expected = {n: pixel_focus(npy(estimated, n), x, y) for n in range(START, END + 1)}
    assert sorted(keys) == list(range(START, END + 1))
    for n in expected:
        assert keys[n] == pytest.approx(expected[n], rel=1e-5), n
    assert len(set(round(v, 4) for v in expected.values())) > 1  # the focus really moves
    for n in (5, 2, 4):
        scene.frame_set(n)
        assert cam.data.dof.focus_distance == pytest.approx(expected[n], rel=1e-5)
    # a still focus afterwards removes the animation
    assert bpy.ops.boost_depth.dof_camera(image=sequence.name, focus="PIXEL", pixel_x=x, pixel_y=y, fov=FOV,
                                          near=NEAR, far=FAR, animate_focus=False) == {"FINISHED"}
    assert ext("scene.footage").focus_fcurve(cam.data) is None
    assert cam.data.dof.focus_distance == pytest.approx(expected[4], rel=1e-5)  # the current frame's


def test_a_lost_depth_frame_is_named_and_nothing_is_built(estimated, tmp_path):
    footage, sequence, folder = loaded_copy(estimated, tmp_path)
    (folder / "shot_0004.npy").write_bytes(b"not a depth map")  # broken after loading
    scene = bpy.context.scene
    scene.frame_set(4)
    before = sorted(o.name for o in bpy.data.objects)
    with pytest.raises(RuntimeError, match=r"cannot read depth frame .*shot_0004\.npy.*Estimate Depth"):
        bpy.ops.boost_depth.mesh_from_depth(image=sequence.name, resolution=9)
    scene.frame_set(2)
    with pytest.raises(RuntimeError, match=r"shot_0004\.npy"):  # animating the focus reads every frame
        bpy.ops.boost_depth.dof_camera(image=sequence.name, focus="CENTER", animate_focus=True)
    assert sorted(o.name for o in bpy.data.objects) == before  # no camera, no mesh half-made


def render_view_z(folder, frames):
    """Render the animation over ``frames`` (as a farm does: Blender steps the frames itself) from the scene camera
    with every object showing its view-space depth (Cycles, 1 sample, no pixel filter): {frame: (H, W) top-down
    float EXR values}."""
    scene = bpy.context.scene
    material = bpy.data.materials.new("view z")
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    camera_data, emission, out = (nodes.new(t) for t in ("ShaderNodeCameraData", "ShaderNodeEmission",
                                                          "ShaderNodeOutputMaterial"))
    links.new(camera_data.outputs["View Z Depth"], emission.inputs["Color"])
    links.new(emission.outputs[0], out.inputs["Surface"])
    for obj in scene.objects:
        if obj.type == "MESH":
            obj.data.materials.clear()
            obj.data.materials.append(material)
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 1, False
    scene.cycles.filter_width = 0.01
    scene.render.threads_mode, scene.render.threads = "FIXED", 2
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 96, 64, 100
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.filepath = str(folder / "z_####")
    if scene.world is not None:
        scene.world = None
    scene.frame_start, scene.frame_end = min(frames), max(frames)
    bpy.ops.render.render(animation=True)
    return {n: file_pixels(folder / f"z_{n:04d}.exr")[..., 0].astype(np.float64) for n in frames}


def test_cycles_renders_follow_the_frames(estimated, tmp_path):
    """What a farm renders (an animation render): frame n of the mesh (moved by the frame handler) and of the
    displaced plane (its texture follows by itself) shows frame n's depth."""
    sequence, _depth = reload(estimated)
    scene = bpy.context.scene
    scene.frame_set(2)
    bpy.ops.boost_depth.mesh_from_depth(image=sequence.name, fov=FOV, resolution=97, near=NEAR, far=FAR,
                                        discontinuity=0.0)
    def at_pixel_centres(values):  # the mesh's depth between its vertices (which lie on pixel corners)
        z = -pinhole_vertices(values, 65, 97)[:, 2].reshape(65, 97)
        return (z[:-1, :-1] + z[1:, :-1] + z[:-1, 1:] + z[1:, 1:]) / 4

    expected = {n: at_pixel_centres(npy(estimated, n)) for n in (3, 5)}
    renders = render_view_z(tmp_path / "mesh", (3, 4, 5))
    for frame in (5, 3):
        rendered = renders[frame]
        right = np.abs(rendered - expected[frame]) / expected[frame]
        wrong = np.abs(rendered - expected[8 - frame]) / expected[8 - frame]
        assert np.median(right) < 0.01 and np.median(wrong) > 5 * np.median(right), (frame, right, wrong)
    # the displaced plane alone, with the extension's frame handler removed: no Python follows the frames
    bpy.data.objects.remove(bpy.data.objects[f"{sequence.name} mesh"])
    bpy.ops.boost_depth.displaced_plane(image=sequence.name, fov=FOV, resolution=193, distance=5.0, relief=2.0)
    maps = {n: npy(estimated, n).astype(np.float64) for n in range(START, END + 1)}
    lo, hi = min(m.min() for m in maps.values()), max(m.max() for m in maps.values())
    # the plane's vertices lie on the picture's grid at distance 5 and move towards the camera (along its axis)
    # by 2 * (value - lo) / (hi - lo): each lands on screen at its pixel, scaled from the centre by 5 / z
    gx, gy = np.meshgrid(np.linspace(0, 96, 193)[4:-4:6], np.linspace(0, 64, 129)[4:-4:6])

    def plane_seen(values):
        z = 5.0 - 2.0 * (bilinear(values, gx, gy) - lo) / (hi - lo)
        px, py = 48 + (gx - 48) * 5.0 / z, 32 + (gy - 32) * 5.0 / z
        return z, np.clip(py.astype(int), 0, 63), np.clip(px.astype(int), 0, 95)

    footage = ext("scene.footage")
    footage.unregister_handlers()
    try:
        renders = render_view_z(tmp_path / "plane", (3, 4, 5))
        for frame in (5, 3):
            rendered = renders[frame]
            z, rows, cols = plane_seen(maps[frame])
            right = np.median(np.abs(rendered[rows, cols] - z))
            z, rows, cols = plane_seen(maps[8 - frame])
            wrong = np.median(np.abs(rendered[rows, cols] - z))
            assert right < 0.04 and wrong > 4 * right, (frame, right, wrong)
    finally:
        footage.register_handlers()


# Requests and refusals (no engine run) --------------------------------------------------------------------------
def build_request(sequence, **kw):
    request = ext("engine_link.request")
    w = {"base_weights": "/nowhere/base.pt", "merge_weights": "/nowhere/merge.pt"}
    return request.FootageRequest.build(bpy.context, sequence, net="midas_v2", mode="r0", **w, **kw)


def test_the_request_hands_the_engine_the_pattern_and_the_frames(tmp_path):
    request = ext("engine_link.request")
    frames = panned_frames(tmp_path / "shots", count=4, first=1001)
    sequence = open_sequence(frames[0])
    s = bpy.context.scene.boost_depth
    s.footage_scene_range, s.footage_start, s.footage_end, s.footage_offset = False, 1, 3, 1000
    r = build_request(sequence)
    args = r.arguments
    assert args[args.index("--output") + 1] == str(tmp_path / "shots" / "shot_depth")
    assert args[args.index("--format") + 1] == "exr,npy"
    assert r.sequence.path(2) == tmp_path / "shots" / "shot_depth" / "shot_1002.exr"
    assert "--temporal" not in args and "--start-over" not in args
    s.footage_temporal = True
    r = build_request(sequence, start_over=True)
    args = r.arguments
    assert args[0] == str(tmp_path / "shots" / "shot_####.png")
    assert args[args.index("--frames") + 1] == "1001-1003" and "--start-over" in args and "--overwrite" not in args
    assert "--temporal" in args
    s.footage_temporal = False
    # a frame that is not on disk: refused before anything starts, naming the file and the fix
    s.footage_end = 5
    with pytest.raises(request.RequestError, match=r"shot_1005\.png.*change the frame range"):
        build_request(sequence)
    assert not (tmp_path / "shots" / "shot_depth").exists()


def test_a_missing_frame_stops_the_operator_and_leaves_the_scene(tmp_path, monkeypatch):
    frames = panned_frames(tmp_path / "shots", count=3)
    sequence = open_sequence(frames[0])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 4
    before = sorted(i.name for i in bpy.data.images)
    with pytest.raises(RuntimeError, match=r"Footage frames not found: .*shot_0004\.png"):
        bpy.ops.boost_depth.estimate(image=sequence.name, net="midas_v2", mode="r0",
                                     base_weights="/x/b.pt", merge_weights="/x/m.pt")
    assert sorted(i.name for i in bpy.data.images) == before and not ext("engine_link.running").running()
    assert not (tmp_path / "shots" / "shot_depth").exists()


def test_movie_source(tmp_path, engine_python):
    movie = tmp_path / "clip.avi"
    code = ("import sys, cv2, numpy as np\n"
            "w = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*'MJPG'), 24, (96, 64))\n"
            "assert w.isOpened()\n"
            "[w.write(np.full((64, 96, 3), 40 * k, np.uint8)) for k in range(6)]\n"
            "w.release()\n")
    subprocess.run([engine_python, "-c", code, str(movie)], check=True, timeout=120)
    clip = bpy.data.images.load(str(movie))
    assert clip.source == "MOVIE"
    footage = ext("scene.footage")
    assert footage.is_footage(clip) and footage.source_of(clip).kind == "MOVIE"
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 2, 4
    request = ext("engine_link.request")
    r = build_request(clip)
    assert r.arguments[0] == str(movie) and r.arguments[r.arguments.index("--frames") + 1] == "2-4"
    assert r.arguments[r.arguments.index("--output") + 1] == str(tmp_path / "clip_depth")
    assert r.sequence.path(3) == tmp_path / "clip_depth" / "clip_000003.exr"  # the contract's movie names
    scene.frame_end = 40  # past the movie's 6 frames
    with pytest.raises(request.RequestError, match="movie has 6 frames"):
        build_request(clip)


def test_estimating_again_resumes_the_job(use_engine, synthetic_weights, tmp_path):
    frames = panned_frames(tmp_path / "shots", count=2)
    sequence = open_sequence(frames[0])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 2
    run = {"image": sequence.name, "net": "midas_v2", "mode": "r0", **weights_args(synthetic_weights)}
    assert bpy.ops.boost_depth.estimate(**run) == {"FINISHED"}
    folder = tmp_path / "shots" / "shot_depth"
    written = {p.name: p.stat().st_mtime_ns for p in folder.glob("shot_*")}
    assert len(written) == 4
    time.sleep(0.05)
    assert bpy.ops.boost_depth.estimate(**run) == {"FINISHED"}
    again = {p.name: p.stat().st_mtime_ns for p in folder.glob("shot_*")}
    depth = bpy.data.images[f"{sequence.name} depth"]
    assert depth.source == "SEQUENCE" and len([i for i in bpy.data.images if i.name.endswith(" depth")]) == 1
    assert again == written  # the job file knows the frames are done: none is written again
    with pytest.raises(RuntimeError, match="other settings.*press Start Over in the Depth tab"):
        bpy.ops.boost_depth.estimate(**run, max_res=48)
    assert bpy.data.images[f"{sequence.name} depth"] == depth  # the scene as it was
    assert bpy.ops.boost_depth.estimate(**run, max_res=48, start_over=True) == {"FINISHED"}


def test_steady_depth_aligns_the_sequence_and_reports_the_flicker(use_engine, synthetic_weights, tmp_path):
    """Steady Depth on: the engine aligns the frames (--temporal); the flicker figure lands with the job and the
    depth frames share one value range (each frame alone would span 0..1)."""
    frames = panned_frames(tmp_path / "shots", count=3)
    sequence = open_sequence(frames[0])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 3
    scene.boost_depth.footage_temporal = True
    run = {"image": sequence.name, "net": "midas_v2", "mode": "r0", **weights_args(synthetic_weights)}
    assert bpy.ops.boost_depth.estimate(**run) == {"FINISHED"}
    folder = tmp_path / "shots" / "shot_depth"
    flicker = json.loads((folder / ".boost_depth_job" / "flicker.json").read_text())
    assert flicker["frames"] == 3 and flicker["flicker_aligned"] >= 0 and flicker["flicker_unaligned"] >= 0
    maps = [np.load(folder / f"shot_{n:04d}.npy") for n in (1, 2, 3)]
    assert min(m.min() for m in maps) >= -1e-6 and max(m.max() for m in maps) <= 1 + 1e-6
    assert sum(np.isclose(m.min(), 0) and np.isclose(m.max(), 1) for m in maps) < 3  # one range, not per frame


def test_movie_estimate_end_to_end(use_engine, synthetic_weights, tmp_path):
    """A movie over scene frames 2..3: the engine reads the movie's frames 2 and 3 itself; the depth sequence
    clip_000002.exr.. follows the timeline."""
    movie = tmp_path / "clip.avi"
    code = ("import sys, cv2\n"
            "photo = cv2.imread(sys.argv[2])\n"
            "w = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*'MJPG'), 24, (96, 64))\n"
            "assert w.isOpened()\n"
            "[w.write(cv2.resize(photo[k * 3:k * 3 + 48, k * 5:k * 5 + 72], (96, 64))) for k in range(4)]\n"
            "w.release()\n")
    subprocess.run([use_engine, "-c", code, str(movie), str(DATA / "photo_96x64.png")], check=True, timeout=120)
    clip = bpy.data.images.load(str(movie))
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 2, 3
    run = {"image": clip.name, "net": "midas_v2", "mode": "r0", **weights_args(synthetic_weights)}
    assert bpy.ops.boost_depth.estimate(**run) == {"FINISHED"}
    folder = tmp_path / "clip_depth"
    assert sorted(p.name for p in folder.glob("clip_*")) == [
        "clip_000002.exr", "clip_000002.npy", "clip_000003.exr", "clip_000003.npy"]
    depth = bpy.data.images[f"{clip.name} depth"]
    assert depth.source == "SEQUENCE" and Path(bpy.path.abspath(depth.filepath)) == folder / "clip_000002.exr"
    bpy.ops.boost_depth.mesh_from_depth(image=clip.name, fov=FOV, resolution=13, near=NEAR, far=FAR,
                                        discontinuity=0.0)
    obj = bpy.data.objects[f"{clip.name} mesh"]
    for frame in (3, 2):
        scene.frame_set(frame)
        expected = pinhole_vertices(np.load(folder / f"clip_{frame:06d}.npy"), 9, 13)
        np.testing.assert_allclose(mesh_co(obj.data), expected, rtol=1e-5, atol=1e-5)


def test_this_frame_only_still_gives_one_depth_image(use_engine, synthetic_weights, tmp_path):
    frames = panned_frames(tmp_path / "shots", count=3)
    sequence = open_sequence(frames[0])
    scene = bpy.context.scene
    scene.boost_depth.footage_scope = "FRAME"
    assert bpy.ops.boost_depth.estimate(image=sequence.name, net="midas_v2", mode="r0",
                                        **weights_args(synthetic_weights)) == {"FINISHED"}
    depth = bpy.data.images[f"{sequence.name} depth"]
    assert depth.source == "FILE" and depth.packed_file is not None and "depth_footage" not in depth.keys()
    assert not (tmp_path / "shots" / "shot_depth").exists()


def test_cancel_leaves_the_scene_as_it_was(use_engine, synthetic_weights, tmp_path):
    jobs = ext("engine_link.running")
    frames = panned_frames(tmp_path / "shots", count=3)
    sequence = open_sequence(frames[0])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 3
    before = (sorted(i.name for i in bpy.data.images), sorted(o.name for o in bpy.data.objects))
    assert bpy.ops.boost_depth.estimate(image=sequence.name, net="midas_v2", mode="r0", blocking=False,
                                        **weights_args(synthetic_weights)) == {"FINISHED"}
    job = jobs.active().job
    assert wait_for(lambda: any(e.get("event") == "stage" for e in job.events), jobs.tick, timeout=180), (
        job.error_report())
    assert bpy.ops.boost_depth.cancel() == {"FINISHED"}
    assert wait_for(lambda: not jobs.running(), jobs.tick, timeout=30)
    assert job.state == "cancelled"
    assert (sorted(i.name for i in bpy.data.images), sorted(o.name for o in bpy.data.objects)) == before
    assert bpy.data.images.get(f"{sequence.name} depth") is None


# The Depth tab ---------------------------------------------------------------------------------------------------
class Layout:
    """A UILayout stand-in recording labels, properties and operators (enabled state included)."""

    def __init__(self, log, enabled=True):
        self.log, self.enabled = log, enabled
        self.use_property_split = self.use_property_decorate = False
        self.scale_y = 1.0

    def _child(self, *_a, **_k):
        return Layout(self.log, self.enabled)

    row = column = box = split = _child

    def label(self, text="", **_k):
        self.log.append(("label", text))

    def prop(self, data, name, text=None, **_k):
        self.log.append(("prop", name, self.enabled))

    def operator(self, idname, *_a, **_k):
        props = type("Props", (), {})()
        self.log.append(("operator", idname, self.enabled, props))
        return props

    def template_ID(self, *_a, **_k):
        pass

    def progress(self, *_a, **_k):
        pass


def drawn(panel):
    from types import SimpleNamespace

    log = []
    context = SimpleNamespace(scene=bpy.context.scene, region=SimpleNamespace(width=220),
                              preferences=bpy.context.preferences, window_manager=bpy.context.window_manager,
                              space_data=SimpleNamespace(type="VIEW_3D"))
    panel.draw(type("Self", (), {"layout": Layout(log)})(), context)
    return log


def test_depth_tab_shows_footage_and_its_range(tmp_path):
    sidebar = ext("panels.sidebar")
    frames = panned_frames(tmp_path / "shots", count=2)
    s = bpy.context.scene.boost_depth
    s.image = bpy.data.images.load(str(DATA / "photo_96x64.png"))
    log = drawn(sidebar.MainPanel)
    assert not any(e[0] == "prop" and e[1].startswith("footage_") for e in log)  # a still: no footage settings
    s.image = open_sequence(frames[0])
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 3, 40
    log = drawn(sidebar.MainPanel)
    labels = " ".join(e[1] for e in log if e[0] == "label")
    assert "Image sequence · frames 3-40" in labels and "shot_depth/" in labels, labels
    props = {e[1]: e[2] for e in log if e[0] == "prop"}
    assert props["footage_scope"] and props["footage_scene_range"] and props["footage_folder"]
    assert props["footage_start"] is False and props["footage_end"] is False  # the scene's range is used
    s.footage_scene_range, s.footage_start, s.footage_end = False, 10, 4
    log = drawn(sidebar.MainPanel)
    labels = " ".join(e[1] for e in log if e[0] == "label")
    assert "frames 10-4" in labels and "make End at least Start" in labels, labels
    assert ("boost_depth.estimate", False) in [e[1:3] for e in log if e[0] == "operator"]
    assert not any(getattr(e[3], "start_over", False) for e in log if e[0] == "operator")  # no earlier job
    job = tmp_path / "shots" / "shot_depth" / ".boost_depth_job"  # an earlier job's record: Start Over is offered
    job.mkdir(parents=True)
    (job / "job.json").write_text("{}")
    s.footage_end = 12
    log = drawn(sidebar.MainPanel)
    (start_over,) = [e for e in log if e[0] == "operator" and getattr(e[3], "start_over", False)]
    assert start_over[1:3] == ("boost_depth.estimate", True)
    s.footage_scope = "FRAME"
    log = drawn(sidebar.MainPanel)
    assert not any(e[0] == "prop" and e[1] == "footage_start" for e in log)
