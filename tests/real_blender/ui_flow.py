"""Runs inside the real Blender's window (``blender --enable-event-simulate --python ui_flow.py -- CONFIG``,
under Xvfb): drives the Boost Depth UI with real events through Blender's window manager, as a user would.

CONFIG is a JSON file: {"photo", "models_dir", "engine_python", "artifacts", "result", "pixel": [x, y]}.

The steps run from a generator stepped by ``bpy.app.timers``; each ``yield`` hands control back to Blender's
event loop (which handles the simulated events, redraws and runs the extension's own timers) for the given
number of seconds. Steps print ``STEP <name>`` so that the test can tell in which step a traceback appeared.
A screenshot of the X screen (``import -window root``; Blender's own screenshot operator is black under Xvfb)
is taken at each step. The outcome goes to CONFIG["result"]: {"ok", "failures", "steps", "screenshots", ...};
then Blender quits.

Finding buttons: Blender 4.3 has no Python API for a button's screen position. So the script probes the
sidebar: at points down its middle it right-clicks, which opens the button context menu; Blender draws that
menu with ``context.button_operator`` set to the operator of the button under the mouse, and a draw function
appended to ``UI_MT_button_context_menu`` (the menu Blender provides for add-ons to extend) records it; Esc closes
the menu. The button is then clicked in the middle of the run of probe points that hit it.
"""

import json
import math
import os
import subprocess
import sys
import time
import traceback

import bpy
import numpy as np

CONFIG = json.load(open(sys.argv[sys.argv.index("--") + 1]))
ADDON = "bl_ext.user_default.boost_depth"
TICK = 0.02
result = {"ok": False, "failures": [], "steps": [], "screenshots": [], "values": {}}


def step(name):
    print(f"STEP {name}", flush=True)
    result["steps"].append(name)


def check(condition, message):
    """A failed check is recorded and the flow goes on (so one run reports every problem)."""
    if not condition:
        print(f"CHECK FAILED: {message}", flush=True)
        result["failures"].append(message)
    return bool(condition)


class Abort(Exception):
    pass


def require(condition, message):
    if not check(condition, message):
        raise Abort(message)


def screenshot(name):
    """Yields for a moment first, so that Blender has redrawn what the previous step changed."""
    yield from idle(0.4)
    path = os.path.join(CONFIG["artifacts"], f"{len(result['screenshots']):02d}_{name}.png")
    out = subprocess.run(["import", "-window", "root", path], capture_output=True, text=True, timeout=60)
    check(out.returncode == 0 and os.path.isfile(path), f"screenshot {name}: {out.stderr.strip()}")
    result["screenshots"].append(path)


# -- events ---------------------------------------------------------------------------------------------
window = bpy.context.window_manager.windows[0]
mouse = [window.width // 2, window.height // 2]


def event(type, value, **kw):
    window.event_simulate(type=type, value=value, x=mouse[0], y=mouse[1], **kw)


def move(x, y):
    mouse[0], mouse[1] = int(x), int(y)
    event("MOUSEMOVE", "NOTHING")


def click(button="LEFTMOUSE"):
    event(button, "PRESS")
    yield TICK
    event(button, "RELEASE")
    yield TICK


def key(type):
    event(type, "PRESS")
    yield TICK
    event(type, "RELEASE")
    yield TICK


def idle(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield TICK


def wait_until(predicate, timeout, what):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise Abort(f"timed out after {timeout:g} s waiting for {what}")
        yield TICK


# -- finding buttons --------------------------------------------------------------------------------------
probe = {"operator": None}


def _record_button(_menu, context):
    op = getattr(context, "button_operator", None)
    probe["operator"] = op.bl_rna.identifier if op is not None else ""


def probe_at(x, y):
    """Yields while it right-clicks at (x, y) and closes the menu; leaves the operator of the button there
    (its RNA identifier, '' for a button of no operator, None for no button) in probe['operator']."""
    probe["operator"] = None
    move(x, y)
    yield TICK
    yield from click("RIGHTMOUSE")
    yield TICK
    found = probe["operator"]
    yield from key("ESC")  # closes whatever menu the right-click opened
    probe["operator"] = found


def find_operator_button(region, identifier, row_of=None, step_px=6):
    """Yields while probing; returns (x, y), window coordinates of the middle of the button of operator
    ``identifier`` (e.g. 'BOOST_DEPTH_OT_estimate') in ``region``, or raises Abort. The probe runs down the
    middle of the region; with ``row_of`` (another operator's identifier) it first finds that operator's
    button, then runs leftwards from the region's right edge along its row (for icon buttons beside it)."""
    if row_of is not None:
        _x, y = yield from find_operator_button(region, row_of, step_px=step_px)
        points = [(x, y) for x in range(region.x + region.width - 4, region.x + 4, -step_px)]
    else:
        x = region.x + region.width // 2
        points = [(x, y) for y in range(region.y + region.height - 4, region.y + 4, -step_px)]
    hits = []
    for x, y in points:
        yield from probe_at(x, y)
        if probe["operator"] == identifier:
            hits.append((x, y))
        elif hits:
            break  # passed the button
    if not hits:
        raise Abort(f"no {identifier} button found in the sidebar (probed {points[0]} to {points[-1]})")
    return (hits[0][0] + hits[-1][0]) // 2, (hits[0][1] + hits[-1][1]) // 2


def find_region(area, type):
    return next(r for r in area.regions if r.type == type)


def addon_module(name):
    import importlib

    return importlib.import_module(f"{ADDON}.{name}")


def child_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def scene_state():
    return (
        sorted(i.name for i in bpy.data.images),
        sorted(o.name for o in bpy.data.objects),
        sorted(m.name for m in bpy.data.meshes),
    )


# -- the flow -----------------------------------------------------------------------------------------------
def flow():
    wm = bpy.context.window_manager
    state = wm.boost_depth_job
    step("setup")
    yield from idle(0.5)
    yield from key("ESC")  # closes the splash screen
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.python_source = "CUSTOM"
    prefs.python_path = CONFIG["engine_python"]
    prefs.device = "cpu"
    prefs.models_dir = CONFIG["models_dir"]
    scene = bpy.context.scene
    settings = scene.boost_depth
    settings.net = "midas_v2"
    settings.mode = "final"  # the slow mode for the run that is cancelled
    settings.near, settings.far = 2.0, 8.0
    settings.range_method = "NEAR_FAR"
    photo = bpy.data.images.load(CONFIG["photo"])

    # first the 3D Viewport's Depth tab (the photo chosen there), as the default layout shows it
    area = max(window.screen.areas, key=lambda a: a.width * a.height)
    require(area.type == "VIEW_3D", f"the largest area is {area.type}, not the 3D Viewport")
    settings.source = "IMAGE"
    settings.image = photo
    area.spaces.active.show_region_ui = True
    yield from idle(0.5)
    find_region(area, "UI").active_panel_category = "Depth"
    area.tag_redraw()
    yield from screenshot("view3d_depth_tab")

    step("image_editor")
    # then the 3D Viewport becomes an Image Editor showing the photo, with the sidebar on the Depth tab
    area.type = "IMAGE_EDITOR"
    space = area.spaces.active
    space.image = photo
    space.show_region_ui = True
    yield from idle(0.5)
    sidebar = find_region(area, "UI")
    main = find_region(area, "WINDOW")
    sidebar.active_panel_category = "Depth"
    with bpy.context.temp_override(window=window, area=area, region=main):
        bpy.ops.image.view_all(fit_view=True)
    area.tag_redraw()
    yield from idle(0.5)
    require(sidebar.active_panel_category == "Depth", f"sidebar tab is {sidebar.active_panel_category!r}")
    yield from screenshot("photo_in_image_editor")

    step("estimate_and_cancel")
    bpy.types.UI_MT_button_context_menu.append(_record_button)
    x, y = yield from find_operator_button(sidebar, "BOOST_DEPTH_OT_estimate")
    result["values"]["estimate_button"] = [x, y]
    before = scene_state()
    move(x, y)
    yield TICK
    yield from click()
    yield from wait_until(lambda: state.running, 10, "the job to start after clicking Estimate Depth")
    job = addon_module("engine_link.running").active()
    require(job is not None, "no active job while the state says running")
    pid = job.job.pid
    result["values"]["child_pid"] = pid
    check(pid is not None and child_alive(pid), f"engine child {pid} is not running")
    first = (state.fraction, state.message)
    yield from wait_until(lambda: not state.running or state.fraction > 0.0, 90, "the progress bar to move")
    require(state.running, f"the job ended before it could be cancelled: {state.message!r} {state.last_error!r}")
    result["values"]["progress_seen"] = [first, [state.fraction, state.message]]
    yield from screenshot("estimate_running")
    move(main.x + main.width // 2, main.y + main.height // 2)  # Esc in the Image Editor, as a user would
    yield TICK
    yield from key("ESC")
    yield from wait_until(lambda: not state.running, 30, "the job to stop after Esc")
    yield from idle(0.3)
    check(state.message == "Cancelled", f"state after Esc: {state.message!r}")
    check(state.last_error == "", f"an error after Esc: {state.last_error!r}")
    check(not child_alive(pid), f"the engine child {pid} still runs after Esc")
    check(scene_state() == before, f"the scene changed after a cancelled job: {before} -> {scene_state()}")
    yield from screenshot("cancelled")

    step("estimate_to_the_end")
    settings.mode = "r0"
    yield from idle(0.3)
    x, y = yield from find_operator_button(sidebar, "BOOST_DEPTH_OT_estimate")
    move(x, y)
    yield TICK
    yield from click()
    yield from wait_until(lambda: state.running, 10, "the second job to start")
    yield from wait_until(lambda: not state.running, 240, "the estimate to finish")
    yield from idle(0.5)
    depth = bpy.data.images.get(f"{photo.name} depth")
    require(depth is not None, f"no depth image after the estimate: {state.message!r} {state.last_error!r}")
    check(state.last_error == "", f"error after the estimate: {state.last_error!r}")
    check(depth.get("depth_kind") == "inverse_depth", f"depth kind {depth.get('depth_kind')!r}")
    result["values"]["depth_size"] = list(depth.size)
    yield from screenshot("estimated")

    step("pick_focus")
    x, y = yield from find_operator_button(sidebar, "BOOST_DEPTH_OT_pick_focus", row_of="BOOST_DEPTH_OT_dof_camera")
    move(x, y)
    yield TICK
    yield from click()
    yield from idle(0.3)
    px, py = CONFIG["pixel"]  # photo pixel, origin bottom-left as in the Image Editor
    w, h = photo.size
    rx, ry = main.view2d.view_to_region((px + 0.5) / w, (py + 0.5) / h, clip=False)
    move(main.x + rx, main.y + ry)
    yield TICK
    yield from screenshot("pick_focus_eyedropper")
    yield from click()
    yield from idle(0.5)
    camera = scene.camera
    require(camera is not None and camera.name == f"{photo.name} camera", f"scene camera: {camera}")
    check((settings.pixel_x, settings.pixel_y) == (px, py), f"picked {(settings.pixel_x, settings.pixel_y)}")
    # expected: the depth image's own pixels (Blender's image API), mapped to distances as the panel's
    # Near/Far settings say (1/z linear in inverse depth), median of the 5x5 window around the pixel
    dw, dh = depth.size
    values = np.array(depth.pixels[:], dtype=np.float64).reshape(dh, dw, depth.channels)[::-1, :, 0]
    lo, hi = float(values.min()), float(values.max())
    s = (values - lo) / (hi - lo)
    z = 1.0 / (1.0 / settings.far + s * (1.0 / settings.near - 1.0 / settings.far))
    col = int((px + 0.5) * dw / w)
    row = int((h - py - 0.5) * dh / h)
    expected = float(np.median(z[max(0, row - 2) : row + 3, max(0, col - 2) : col + 3]))
    got = camera.data.dof.focus_distance
    result["values"]["focus"] = {"expected": expected, "got": got, "pixel_depth": float(z[row, col])}
    check(camera.data.dof.use_dof, "depth of field is off on the camera")
    check(math.isclose(got, expected, rel_tol=1e-4), f"focus distance {got} != depth there {expected}")
    yield from screenshot("focus_picked")

    step("mesh_from_depth")
    x, y = yield from find_operator_button(sidebar, "BOOST_DEPTH_OT_mesh_from_depth")
    move(x, y)
    yield TICK
    yield from click()
    yield from idle(0.5)
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and o.name.startswith(photo.name)]
    require(meshes, f"no mesh object after Mesh from Depth: {sorted(bpy.data.objects.keys())}")
    mesh = meshes[0]
    result["values"]["mesh"] = {"name": mesh.name, "vertices": len(mesh.data.vertices)}
    check(len(mesh.data.vertices) > 100, f"{mesh.name} has {len(mesh.data.vertices)} vertices")
    check(mesh.name in scene.objects, f"{mesh.name} is not in the scene")
    yield from screenshot("mesh_built")

    step("quit_with_a_job_running")
    settings.mode = "final"
    yield from idle(0.3)
    x, y = yield from find_operator_button(sidebar, "BOOST_DEPTH_OT_estimate")
    move(x, y)
    yield TICK
    yield from click()
    yield from wait_until(lambda: state.running, 10, "the last job to start")
    yield from wait_until(lambda: state.fraction > 0.0, 90, "the last job to make progress")
    result["values"]["child_pid_at_quit"] = addon_module("engine_link.running").active().job.pid
    yield from screenshot("running_at_quit")
    # Blender quits next (see run()); the test then looks for engine processes left behind

    bpy.types.UI_MT_button_context_menu.remove(_record_button)
    result["ok"] = not result["failures"]


def run():
    steps = flow()
    done = []

    def tick():
        try:
            delay = next(steps)
            return delay if delay is not None else TICK
        except StopIteration:
            pass
        except Abort as error:
            result["failures"].append(f"aborted: {error}")
        except Exception:  # noqa: BLE001 - reported, then Blender quits
            text = traceback.format_exc()
            print(text, file=sys.stderr, flush=True)
            result["failures"].append(f"exception in the test script: {text.splitlines()[-1]}")
        if not done:
            done.append(True)
            step("end")
            with open(CONFIG["result"], "w") as f:
                json.dump(result, f, indent=1)
            bpy.app.timers.register(lambda: bpy.ops.wm.quit_blender() and None, first_interval=0.2)
        return None

    bpy.app.timers.register(tick, first_interval=1.0)


run()
