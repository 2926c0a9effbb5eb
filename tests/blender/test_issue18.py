"""Issue 18, part 2: what a demanding Blender user meets (undo and redo of Estimate Depth, colour spaces under
any OCIO config, networks saved by name, the job timer on unregister, the status bar's redraw, ...)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy wheel")

from conftest import DATA, ext, load_photo, prefs  # noqa: E402


def weights_args(w):
    return {"base_weights": str(w["midas_v2"]), "merge_weights": str(w["merge_net"])}


# ------------------------------------------------------------------------------------------- c: undo / redo
def test_estimate_has_no_redo_panel_and_pushes_exactly_one_undo_step(use_engine, synthetic_weights):
    options = set(bpy.types.BOOST_DEPTH_OT_estimate.bl_options)
    assert "REGISTER" not in options and "UNDO" not in options  # no Adjust Last Operation, no redo re-run
    photo = load_photo()
    bpy.ops.ed.undo_push(message="photo loaded")
    bpy.context.scene["marker"] = 1
    bpy.ops.ed.undo_push(message="marker")
    result = bpy.ops.boost_depth.estimate(image=photo.name, net="midas_v2", mode="r0",
                                          **weights_args(synthetic_weights))
    assert result == {"FINISHED"}
    assert bpy.data.images.get("photo_96x64.png depth") is not None
    bpy.ops.ed.undo()  # one step back: before the estimate, after the marker
    assert bpy.data.images.get("photo_96x64.png depth") is None
    assert bpy.context.scene.get("marker") == 1
    bpy.ops.ed.undo()
    assert bpy.context.scene.get("marker") is None


# ------------------------------------------------------------------------------------------- i: colour space
def test_depth_images_are_data_whatever_the_colour_config():
    photo = load_photo()
    assert bpy.ops.boost_depth.load_depth(filepath=str(DATA / "depth_96x64.exr"), image=photo.name) == {
        "FINISHED"}
    depth = bpy.data.images[f"{photo.name} depth"]
    assert depth.colorspace_settings.is_data  # config-independent (ACES, studio OCIO configs)
    assert depth.colorspace_settings.name == "Non-Color"  # the default config has the name: kept


def test_depth_images_load_under_a_config_without_non_color(tmp_path):
    # A studio OCIO config (tests/data/blender/studio_config.ocio) has no colour space named "Non-Color"; OCIO
    # is read when bpy starts, so the depth image is loaded in a fresh interpreter with the extension's
    # scene/images.py.
    code = (
        "import importlib.util, os, sys, bpy\n"
        "spec = importlib.util.spec_from_file_location('depth_images', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "image = m.load_depth_image(sys.argv[2], 'photo', 'inverse_depth')\n"
        "print('RESULT', image.colorspace_settings.is_data, image.colorspace_settings.name, flush=True)\n"
        "os._exit(0)\n"
    )
    env = dict(os.environ, OCIO=str(DATA / "studio_config.ocio"))
    out = subprocess.run([sys.executable, "-c", code, ext("scene.images").__file__, str(DATA / "depth_96x64.exr")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RESULT True Raw Studio" in out.stdout, out.stdout + out.stderr[-2000:]


# ------------------------------------------------------------------------------------------- k: networks by name
def test_saved_networks_survive_a_changed_registry_order(tmp_path, monkeypatch):
    settings = ext("engine_link.settings")
    names = list(settings.network_names())
    chosen = "leres" if names[-1] != "leres" else "sgr"
    bpy.context.scene.boost_depth.net = chosen
    p = prefs()
    p.default_net = chosen
    path = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    # a new network arrives first in the list, and the rest come in another order
    monkeypatch.setattr(settings, "network_names", lambda: ("a_new_network", *reversed(names)))
    assert p.default_net == chosen
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert bpy.context.scene.boost_depth.net == chosen
    p.property_unset("default_net")


def test_unknown_network_is_explained(addon):
    bpy.context.scene.boost_depth.image = load_photo()
    bpy.context.scene.boost_depth.net = "no_such_net"
    reason = ext("operators.estimate").estimate_blocker(bpy.context)
    assert reason is not None and "no_such_net" in reason


# ------------------------------------------------------------------------------------------- m: timer on unregister
class StubbornJob:
    """A job whose child ignores cancel (stands in for a child that hangs on exit)."""

    fraction, message, state, finished, pid = 0.0, "working", "running", False, None
    elapsed = 0.0

    def __init__(self):
        self.killed = False

    def start(self):
        return self

    def cancel(self):
        pass

    def kill(self):
        self.killed = True

    def poll(self):
        return []


def test_stop_all_removes_the_timer_even_when_the_child_does_not_stop(addon):
    running = ext("engine_link.running")
    job = StubbornJob()
    running.start(bpy.context, job, "Stubborn")
    assert bpy.app.timers.is_registered(running.tick)
    start = time.monotonic()
    running.stop_all(kill_timeout=0.3)
    assert time.monotonic() - start < 5
    assert not bpy.app.timers.is_registered(running.tick)
    assert running.active() is None and job.killed
    assert not bpy.context.window_manager.boost_depth_job.running


# ------------------------------------------------------------------------------------------- l: PFM depth maps
def write_pfm(path, top_down, little_endian=True):
    """PFM as the format defines it: 'Pf', 'W H', scale (negative: little-endian), rows bottom-up."""
    h, w = top_down.shape
    scale = -1.0 if little_endian else 1.0
    rows = np.ascontiguousarray(top_down[::-1], dtype="<f4" if little_endian else ">f4")
    path.write_bytes(b"Pf\n" + f"{w} {h}\n{scale}\n".encode() + rows.tobytes())


@pytest.mark.parametrize("little_endian", [True, False])
def test_load_depth_reads_pfm_files(tmp_path, little_endian):
    expected = np.arange(6 * 4, dtype=np.float32).reshape(4, 6) * 0.5 + 1.0  # row 0 = top
    expected[0, 0] = 123.25
    path = tmp_path / "disparity.pfm"
    write_pfm(path, expected, little_endian)
    assert "*.pfm" in ext("operators.load_depth").BOOST_DEPTH_OT_load_depth.__annotations__["filter_glob"].keywords["default"]
    photo = bpy.data.images.new("photo", 6, 4)
    assert bpy.ops.boost_depth.load_depth(filepath=str(path), image=photo.name) == {"FINISHED"}
    depth = bpy.data.images["photo depth"]
    assert depth.is_float and depth.colorspace_settings.is_data and depth.packed_file is not None
    assert tuple(depth.size) == (6, 4)
    np.testing.assert_array_equal(ext("scene.images").read_depth(depth), expected)


def test_load_depth_refuses_a_broken_pfm(tmp_path):
    path = tmp_path / "broken.pfm"
    path.write_bytes(b"Pf\n6 4\n-1.0\n" + b"\0" * 10)
    with pytest.raises(RuntimeError, match="shorter"):
        bpy.ops.boost_depth.load_depth(filepath=str(path))


# ------------------------------------------------------------------------------------------- j: DOF camera
def loaded_photo():
    photo = load_photo()
    assert bpy.ops.boost_depth.load_depth(filepath=str(DATA / "depth_96x64.exr"), image=photo.name) == {
        "FINISHED"}
    return photo


def test_dof_camera_says_what_it_changes_and_can_leave_the_scene_alone(capsys):
    photo = loaded_photo()
    scene = bpy.context.scene
    other = bpy.data.objects.new("Other Camera", bpy.data.cameras.new("Other Camera"))
    scene.collection.objects.link(other)
    scene.camera = other
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    rna = bpy.ops.boost_depth.dof_camera.get_rna_type().properties
    assert rna["set_render_resolution"].default and rna["make_active_camera"].default
    # both off: the photo's camera is made, the scene keeps its camera and render size
    assert bpy.ops.boost_depth.dof_camera(image=photo.name, set_render_resolution=False,
                                          make_active_camera=False) == {"FINISHED"}
    assert scene.camera == other and (scene.render.resolution_x, scene.render.resolution_y) == (1920, 1080)
    assert "photo_96x64.png camera" in bpy.data.objects
    capsys.readouterr()
    # the defaults: both change, and the report says so
    assert bpy.ops.boost_depth.dof_camera(image=photo.name) == {"FINISHED"}
    assert scene.camera.name == "photo_96x64.png camera"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (96, 64)
    report = capsys.readouterr().out
    assert "1920x1080 -> 96x64" in report and "Other Camera -> photo_96x64.png camera" in report, report


def test_mesh_from_depth_says_what_it_changes_and_can_leave_the_scene_alone(capsys):
    photo = loaded_photo()
    scene = bpy.context.scene
    other = bpy.data.objects.new("Other Camera", bpy.data.cameras.new("Other Camera"))
    scene.collection.objects.link(other)
    scene.camera = other
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    assert bpy.ops.boost_depth.mesh_from_depth(image=photo.name, resolution=17, set_render_resolution=False,
                                               make_active_camera=False) == {"FINISHED"}
    assert scene.camera == other and (scene.render.resolution_x, scene.render.resolution_y) == (1920, 1080)
    assert "photo_96x64.png camera" in bpy.data.objects and "photo_96x64.png mesh" in bpy.data.objects
    capsys.readouterr()
    assert bpy.ops.boost_depth.mesh_from_depth(image=photo.name, resolution=17) == {"FINISHED"}
    assert scene.camera.name == "photo_96x64.png camera"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (96, 64)
    report = capsys.readouterr().out
    assert "1920x1080 -> 96x64" in report and "Other Camera -> photo_96x64.png camera" in report, report


# ------------------------------------------------------------------------------------------- d: Pick Focus
def test_pick_focus_maps_the_mouse_through_the_image_editor_under_it():
    bpy.ops.wm.read_homefile(use_factory_startup=True)  # its screens carry laid-out Image Editors
    photo = loaded_photo()
    screen = bpy.data.screens["Rendering"]
    (area,) = [a for a in screen.areas if a.type == "IMAGE_EDITOR"]
    area.spaces.active.image = photo
    region = next(r for r in area.regions if r.type == "WINDOW")
    pick = ext("operators.camera").image_pixel_at
    w, h = photo.size
    for px, py in ((10, 20), (0, 0), (95, 63), (48, 1)):
        # window coordinates of the pixel's centre, through Blender's own view of that editor
        rx, ry = region.view2d.view_to_region((px + 0.5) / w, (py + 0.5) / h, clip=False)
        assert pick(screen, region.x + rx, region.y + ry) == (photo, px, py)
    # the same editor's header and another editor are not the image
    header = next(r for r in area.regions if r.type == "HEADER")
    assert pick(screen, header.x + 5, header.y + 5) is None
    other = next(a for a in screen.areas if a.type != "IMAGE_EDITOR")
    assert pick(screen, other.x + other.width // 2, other.y + other.height // 2) is None


# ------------------------------------------------------------------------------------------- b: sidebar text
class Recorder:
    """A UILayout stand-in that records the labels and the property labels a panel draws."""

    def __init__(self, log=None):
        self.log = log if log is not None else []

    def _child(self, *_a, **_k):
        return Recorder(self.log)

    row = column = box = split = _child

    def label(self, text="", icon="NONE", **_k):
        self.log.append(("label", text))

    def prop(self, data, name, text=None, **_k):
        label = text if text is not None else data.bl_rna.properties[name].name
        self.log.append(("prop", label, name))

    def operator(self, *_a, **_k):
        return type("Props", (), {})()

    def operator_menu_enum(self, _idname, _prop, text="", **_k):
        self.log.append(("label", text))

    def template_ID(self, *_a, **_k):
        pass

    def progress(self, *_a, **_k):
        pass


# The default sidebar is 220 px wide at UI scale 1; after the panel's margins and an icon, about 170 px are
# left for text, and the UI font's characters average about 5.5 px: some 30 characters per line, 36 at most.
FIT = 36


def sidebar_context(width=220):
    from types import SimpleNamespace

    p = bpy.context.preferences
    scale = p.system.ui_scale or p.view.ui_scale  # the system's is 0 without a window (bpy, background)
    region = SimpleNamespace(width=int(width * scale))
    return SimpleNamespace(scene=bpy.context.scene, region=region, preferences=p,
                           window_manager=bpy.context.window_manager, space_data=SimpleNamespace(type="VIEW_3D"))


def drawn(panel, context):
    log = []
    panel.draw(type("Self", (), {"layout": Recorder(log)})(), context)
    return log


def test_sidebar_lines_fit_the_default_width():
    sidebar = ext("panels.sidebar")
    photo = loaded_photo()
    depth = bpy.data.images[f"{photo.name} depth"]
    depth["depth_net"], depth["depth_mode"], depth["depth_R"] = "depth_anything_v2_small", "r20", 1152
    s = bpy.context.scene.boost_depth
    s.image = photo
    bpy.context.window_manager.boost_depth_job.last_error = (
        "Depth of photo_96x64.png: the engine exited with code 1: No module named 'torch' (install the "
        "dependencies in Preferences > Add-ons > Boost Depth)")
    prefs().models_dir = "/nonexistent/models"  # Estimate greyed out, with its long reason
    ext("engine_link.settings").forget_weights_cache()
    log = []
    for panel in (sidebar.MainPanel, sidebar.MeshPanel, sidebar.CameraPanel):
        log += drawn(panel, sidebar_context())
    labels = [entry[1] for entry in log if entry[0] == "label"]
    too_long = [text for text in labels if len(text) > FIT]
    assert not too_long, too_long
    text = " ".join(labels)
    for needed in ("photo_96x64.png depth", "inverse depth", "depth_anything_v2_small", "r20", "1152", "torch",
                   "Missing weights"):
        assert needed in text, (needed, labels)
    # property labels in the split layout: about 40% of the width (some 13 characters)
    long_props = [entry[1] for entry in log if entry[0] == "prop" and len(entry[1]) > 13
                  and entry[2] not in ("save_files", "keep_partial")]  # checkboxes: text on the right, full width
    assert not long_props, long_props
    prefs().property_unset("models_dir")


def test_no_cap_is_said_in_words():
    sidebar = ext("panels.sidebar")
    s = bpy.context.scene.boost_depth
    s.max_res = 0
    log = drawn(sidebar.MainPanel, sidebar_context())
    assert ("label", "No Cap") in log and not any(e[0] == "prop" and e[2] == "max_res" for e in log)
    s.use_max_res = True
    assert s.max_res > 0
    log = drawn(sidebar.MainPanel, sidebar_context())
    assert any(e[0] == "prop" and e[2] == "max_res" for e in log)
    s.use_max_res = False
    assert s.max_res == 0


def test_sidebar_wraps_by_the_region_width():
    sidebar = ext("panels.sidebar")
    assert sidebar.line_chars(sidebar_context(220)) <= FIT
    assert sidebar.line_chars(sidebar_context(440)) > 2 * sidebar.line_chars(sidebar_context(220)) - 5


# ------------------------------------------------------------------------------------------- g: Check Interpreter
def test_check_interpreter_runs_as_a_background_job(addon, monkeypatch):
    running = ext("engine_link.running")
    seen = {}
    original = running.start

    def start(context, job, title, **kw):
        seen["job"], seen["title"] = job, title
        return original(context, job, title, **kw)

    monkeypatch.setattr(running, "start", start)
    p = prefs()
    p.python_source, p.python_path = "CUSTOM", sys.executable  # no torch here: "Not usable"
    with pytest.raises(RuntimeError, match="Not usable"):
        bpy.ops.boost_depth.check_interpreter()
    assert type(seen["job"]).__name__ == "FunctionJob" and seen["title"] == "Checking interpreter"
    assert "torch" in p.interpreter_report and not running.running()
    assert not bpy.app.timers.is_registered(running.tick)


# ------------------------------------------------------------------------------------------- h: missing torch / weights
class OpRecorder(Recorder):
    def operator(self, idname, *_a, **_k):
        props = type("Props", (), {})()
        self.log.append(("operator", idname, props))
        return props

    row = column = box = split = lambda self, *a, **k: OpRecorder(self.log)


def test_sidebar_says_the_engine_lacks_torch_and_points_to_the_fix(addon, monkeypatch):
    request = ext("engine_link.request")
    p = prefs()
    p.python_source, p.python_path = "CUSTOM", sys.executable  # the bpy venv: no torch, no OpenCV
    monkeypatch.setattr(ext("engine_link.settings"), "missing_weights", lambda *a, **k: [])  # weights present
    request.forget_engine_modules()
    known = request.missing_engine_modules(p, wait=60)
    assert known is not None and "torch" in known["missing"] and "cv2" in known["missing"]
    s = bpy.context.scene.boost_depth
    s.image, s.net = load_photo(), "midas_v2"
    log = []
    ext("panels.sidebar").MainPanel.draw(type("Self", (), {"layout": OpRecorder(log)})(), sidebar_context())
    text = " ".join(e[1] for e in log if e[0] == "label")
    assert "torch" in text and "OpenCV" in text and "Preferences" in text, text
    assert any(e[0] == "operator" and e[1] == "preferences.addon_show" for e in log)
    reason = ext("operators.estimate").estimate_blocker(bpy.context)
    assert reason is not None and "torch" in reason  # Estimate is greyed out for it
    p.python_path = use_python = os.environ.get("BOOST_DEPTH_TEST_ENGINE_PYTHON", "")
    if use_python:
        request.forget_engine_modules()
        assert request.missing_engine_modules(p, wait=60) == {"missing": [], "error": ""}


def test_download_buttons_where_estimate_is_greyed_out(addon, tmp_path):
    p = prefs()
    p.models_dir = str(tmp_path / "no-models")
    ext("engine_link.settings").forget_weights_cache()
    s = bpy.context.scene.boost_depth
    s.image, s.net = load_photo(), "midas_v2"
    log = []
    ext("panels.sidebar").MainPanel.draw(type("Self", (), {"layout": OpRecorder(log)})(), sidebar_context())
    downloads = {e[2].name for e in log if e[0] == "operator" and e[1] == "boost_depth.download_weights"}
    registry = ext("boost_core.networks.registry")
    assert downloads == {registry.get("midas_v2").weights[0], "merge_net"}
    p.property_unset("models_dir")


# ------------------------------------------------------------------------------------------- e: EXIF orientation
def exif_orientation_segment(orientation):
    """An APP1 Exif segment (TIFF little-endian, IFD0 with the one tag Orientation 0x0112, SHORT) as the EXIF
    standard lays it out."""
    ifd = (1).to_bytes(2, "little") + (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little")
    ifd += (1).to_bytes(4, "little") + orientation.to_bytes(2, "little") + b"\0\0" + (0).to_bytes(4, "little")
    payload = b"Exif\0\0" + b"II*\0" + (8).to_bytes(4, "little") + ifd
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def rotated_jpeg(engine_python, path):
    """A 96x64 baseline JPEG of the test photo (cv2.imencode, in the engine's Python) with EXIF orientation 6
    (display rotated 90 degrees clockwise) put right after its SOI marker."""
    code = ("import sys, cv2; ok, data = cv2.imencode('.jpg', cv2.imread(sys.argv[1]), "
            "[cv2.IMWRITE_JPEG_QUALITY, 95]); open(sys.argv[2], 'wb').write(data.tobytes())")
    plain = path.with_name("plain.jpg")
    subprocess.run([engine_python, "-c", code, str(DATA / "photo_96x64.png"), str(plain)], check=True)
    data = plain.read_bytes()
    assert data[:2] == b"\xff\xd8"
    path.write_bytes(data[:2] + exif_orientation_segment(6) + data[2:])
    check = ("import sys, cv2; print(cv2.imread(sys.argv[1]).shape[:2])")
    out = subprocess.run([engine_python, "-c", check, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(96, 64)"  # OpenCV applies the rotation: 64 wide, 96 high
    return path


def test_rotated_jpeg_depth_lines_up_with_the_photo_blender_shows(use_engine, synthetic_weights, tmp_path):
    path = rotated_jpeg(use_engine, tmp_path / "portrait.jpg")
    assert ext("scene.images").jpeg_orientation(path.read_bytes()) == 6
    photo = bpy.data.images.load(str(path))
    assert tuple(photo.size) == (96, 64)  # Blender shows the stored pixels, unrotated
    result = bpy.ops.boost_depth.estimate(image=photo.name, net="midas_v2", mode="r0",
                                          **weights_args(synthetic_weights))
    assert result == {"FINISHED"}
    assert tuple(bpy.data.images["portrait.jpg depth"].size) == (96, 64)


def test_a_depth_map_of_another_size_is_refused(tmp_path):
    photo = bpy.data.images.new("small photo", 40, 30)
    with pytest.raises(ValueError, match="96x64 but the photo is 40x30"):
        ext("scene.images").load_depth_image(DATA / "depth_96x64.exr", photo.name, "inverse_depth",
                                             expected_size=tuple(photo.size))
    assert "small photo depth" not in bpy.data.images


# ------------------------------------------------------------------------------------------- f: hand-over
def srgb(linear):
    """IEC 61966-2-1 encoding of linear values in [0, 1]."""
    linear = np.clip(np.asarray(linear, np.float64), 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def png_pixels(path):
    """RGB of a PNG as Blender reads it, (h, w, 3), bottom-up, in [0, 1]."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        a = np.empty(image.size[0] * image.size[1] * image.channels, np.float32)
        image.pixels.foreach_get(a)
        return a.reshape(image.size[1], image.size[0], image.channels)[..., :3]
    finally:
        bpy.data.images.remove(image)


def test_handover_of_an_exr_file_is_display_srgb(tmp_path):
    linear = np.random.default_rng(3).uniform(0, 1, (8, 12, 4)).astype(np.float32)
    linear[..., 3] = 1
    source = bpy.data.images.new("linear", 12, 8, float_buffer=True)
    source.pixels.foreach_set(linear.ravel())
    source.filepath_raw = str(tmp_path / "linear.exr")
    source.file_format = "OPEN_EXR"
    source.save()
    photo = bpy.data.images.load(str(tmp_path / "linear.exr"))
    assert photo.is_float  # float buffers hold scene-linear values, whatever the file was tagged with
    loaded = np.empty(12 * 8 * 4, np.float32)
    photo.pixels.foreach_get(loaded)  # the scene-linear values Blender holds (its EXR writer applied a transform)
    work = tmp_path / "work"
    work.mkdir()
    out = ext("scene.images").photo_file(photo, work)
    assert out.parent == work and out.suffix == ".png"
    np.testing.assert_allclose(png_pixels(out), srgb(loaded.reshape(8, 12, 4)[..., :3]), atol=1 / 255 + 1e-6)


def test_handover_of_unsaved_paint_edits(tmp_path):
    photo = load_photo()
    w, h = photo.size
    edited = np.zeros((h, w, 4), np.float32)
    edited[..., 0] = 1.0  # painted all red
    edited[..., 3] = 1.0
    photo.pixels.foreach_set(edited.ravel())
    photo.update()
    assert photo.is_dirty
    out = ext("scene.images").photo_file(photo, tmp_path)
    assert out.parent == tmp_path
    np.testing.assert_allclose(png_pixels(out), edited[..., :3], atol=1 / 255)


def test_handover_of_packed_exr_and_generated_images(tmp_path):
    images = ext("scene.images")
    generated = bpy.data.images.new("generated", 16, 8, float_buffer=True)
    generated.generated_color = (0.2, 0.4, 0.6, 1.0)
    out = images.photo_file(generated, tmp_path)
    # generated_color is a display colour: Blender shows (0.2, 0.4, 0.6) (it stores its linear equivalent)
    np.testing.assert_allclose(png_pixels(out)[0, 0], [0.2, 0.4, 0.6], atol=1 / 255 + 1e-6)
    generated.filepath_raw = str(tmp_path / "g.exr")
    generated.file_format = "OPEN_EXR"
    generated.save()
    packed = bpy.data.images.load(str(tmp_path / "g.exr"))
    packed.pack()
    (tmp_path / "g.exr").unlink()
    held = np.empty(16 * 8 * 4, np.float32)
    packed.pixels.foreach_get(held)
    work = tmp_path / "work"
    work.mkdir()
    out = images.photo_file(packed, work)
    assert out.suffix == ".png" and out.parent == work
    np.testing.assert_allclose(png_pixels(out)[3, 5], srgb(held.reshape(8, 16, 4)[3, 5, :3]), atol=1 / 255 + 1e-6)


def test_handover_of_the_frame_an_image_editor_shows(tmp_path):
    frames = []
    for n, colour in ((1, (1, 0, 0, 1)), (2, (0, 1, 0, 1)), (3, (0, 0, 1, 1))):
        frame = bpy.data.images.new(f"f{n}", 8, 8)
        frame.generated_color = colour
        frame.filepath_raw = str(tmp_path / f"shot_{n:03d}.png")
        frame.file_format = "PNG"
        frame.save()
        frames.append(tmp_path / f"shot_{n:03d}.png")
    sequence = bpy.data.images.load(str(frames[0]))
    sequence.source = "SEQUENCE"
    area = bpy.context.window_manager.windows[0].screen.areas[0]
    area.type = "IMAGE_EDITOR"
    space = area.spaces.active
    space.image = sequence
    space.image_user.frame_duration = 3
    space.image_user.frame_start = 1
    space.image_user.frame_offset = 0
    bpy.context.scene.frame_set(2)
    space.image_user.frame_current = 2
    out = ext("scene.images").photo_file(sequence, tmp_path / "work")
    assert out == frames[1], out
