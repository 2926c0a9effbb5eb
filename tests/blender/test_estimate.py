"""Estimate Depth end to end: the operator runs the real engine (``python -m boost_core``) in a child process with
synthetic weights, loads the result, cancels mid-run, and survives children that fail or crash."""

import hashlib
import os
import re
import shutil
import stat
import sys
import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy wheel")

from conftest import DATA, ext, load_photo, prefs, wait_for  # noqa: E402


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def weights_args(w):
    return {"base_weights": str(w["midas_v2"]), "merge_weights": str(w["merge_net"])}


def scene_state():
    return (
        sorted(i.name for i in bpy.data.images),
        sorted(o.name for o in bpy.data.objects),
        sorted(m.name for m in bpy.data.meshes),
    )


def test_estimate_creates_the_depth_image_and_files_next_to_the_photo(
    use_engine, synthetic_weights, tmp_path
):
    photo_path = tmp_path / "photo_96x64.png"
    shutil.copyfile(DATA / "photo_96x64.png", photo_path)
    digest = hashlib.sha256(photo_path.read_bytes()).hexdigest()
    photo = bpy.data.images.load(str(photo_path))
    start = time.monotonic()
    result = bpy.ops.boost_depth.estimate(
        image=photo.name,
        net="midas_v2",
        mode="r0",
        save_files=True,
        formats={"png16", "exr"},
        **weights_args(synthetic_weights),
    )
    print(f"estimate (blocking, r0, 96x64): {time.monotonic() - start:.1f} s")
    assert result == {"FINISHED"}
    depth = bpy.data.images["photo_96x64.png depth"]
    assert depth.is_float and depth.colorspace_settings.name == "Non-Color" and depth.packed_file is not None
    assert depth["depth_kind"] == "inverse_depth" and depth["depth_net"] == "midas_v2"
    assert depth["depth_mode"] == "r0" and depth["depth_R"] > 0 and depth["depth_source"] == photo.name
    assert tuple(depth.size) == (96, 64)
    values = ext("scene.images").read_depth(depth)
    assert np.isfinite(values).all() and values.std() > 0
    # files next to the photo, never over it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "photo_96x64.png",
        "photo_96x64_depth.exr",
        "photo_96x64_depth.png",
    ]
    assert hashlib.sha256(photo_path.read_bytes()).hexdigest() == digest
    state = bpy.context.window_manager.boost_depth_job
    assert not state.running and state.fraction == 1.0 and state.last_error == ""
    # the child's peak RSS, from its done event
    assert re.fullmatch(r"Done \(peak memory \d+\.\d GiB\)", state.message), state.message
    # and the mesh builds from it
    assert bpy.ops.boost_depth.mesh_from_depth(image=photo.name, resolution=33) == {"FINISHED"}


def test_cancel_mid_run_stops_the_child_and_leaves_the_scene(use_engine, synthetic_weights):
    jobs = ext("engine_link.running")
    photo = load_photo()
    before = scene_state()
    result = bpy.ops.boost_depth.estimate(
        image=photo.name, net="midas_v2", mode="r0", blocking=False, **weights_args(synthetic_weights)
    )
    assert result == {"FINISHED"} and jobs.running()
    active = jobs.active()
    job = active.job
    pid = job.pid
    workdir = active.cleanup[0]
    assert bpy.context.window_manager.boost_depth_job.running
    assert not bpy.ops.boost_depth.estimate.poll()  # greyed out while one runs
    # the child is working (past loading, into the pipeline) when we cancel
    assert wait_for(lambda: any(e.get("event") == "stage" for e in job.events), jobs.tick, timeout=180), (
        job.error_report()
    )
    assert alive(pid)
    assert bpy.ops.boost_depth.cancel() == {"FINISHED"}
    assert wait_for(lambda: not jobs.running(), jobs.tick, timeout=30)
    assert job.state == "cancelled" and active.outcome == "cancelled"
    assert not alive(pid)
    assert scene_state() == before
    assert not os.path.exists(workdir)
    state = bpy.context.window_manager.boost_depth_job
    assert not state.running and state.message == "Cancelled" and state.last_error == ""


def test_interpreter_without_dependencies_gives_a_clear_report(addon, synthetic_weights):
    # The bpy test interpreter has no OpenCV/torch: the engine child dies on import, as it would for a user
    # pointing the preferences at a bare Python.
    p = prefs()
    p.python_source, p.python_path = "CUSTOM", sys.executable
    photo = load_photo()
    before = scene_state()
    with pytest.raises(RuntimeError) as error:
        bpy.ops.boost_depth.estimate(image=photo.name, mode="r0", **weights_args(synthetic_weights))
    message = str(error.value)
    assert "exited with code 1" in message and "No module named" in message
    assert scene_state() == before
    assert "No module named" in bpy.context.window_manager.boost_depth_job.last_error
    p.python_source, p.python_path = "BLENDER", ""


def test_crashing_child_is_reported_and_blender_lives_on(addon, engine_python, synthetic_weights, tmp_path):
    crasher = tmp_path / "python-that-crashes"
    crasher.write_text(
        "#!/bin/sh\n"
        f"exec '{engine_python}' -c \"import os, sys; "
        "sys.stderr.write('fatal: simulated crash in the engine\\n');"
        ' sys.stderr.flush(); os.abort()"\n'
    )
    crasher.chmod(crasher.stat().st_mode | stat.S_IEXEC)
    p = prefs()
    p.python_source, p.python_path = "CUSTOM", str(crasher)
    photo = load_photo()
    before = scene_state()
    with pytest.raises(RuntimeError, match="killed by signal SIGABRT: fatal: simulated crash"):
        bpy.ops.boost_depth.estimate(image=photo.name, mode="r0", **weights_args(synthetic_weights))
    assert scene_state() == before
    assert not ext("engine_link.running").running()
    # Blender carries on: the next operator works
    assert bpy.ops.boost_depth.load_depth(filepath=str(DATA / "depth_96x64.exr"), image=photo.name) == {
        "FINISHED"
    }
    assert "SIGABRT" in bpy.context.window_manager.boost_depth_job.last_error  # the panel names the signal too
    p.python_source, p.python_path = "BLENDER", ""


def test_engine_error_event_is_reported(use_engine, synthetic_weights, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a checkpoint")
    photo = load_photo()
    before = scene_state()
    with pytest.raises(RuntimeError) as error:
        bpy.ops.boost_depth.estimate(
            image=photo.name,
            mode="r0",
            base_weights=str(broken),
            merge_weights=str(synthetic_weights["merge_net"]),
        )
    assert "broken.pt" in str(error.value)
    assert scene_state() == before


def test_missing_weights_grey_out_estimate_before_any_child_runs(addon, tmp_path):
    p = prefs()
    p.models_dir = str(tmp_path / "empty-models")
    ext("engine_link.settings").forget_weights_cache()
    photo = load_photo()
    bpy.context.scene.boost_depth.image = photo
    reason = ext("operators.estimate").estimate_blocker(bpy.context, "midas_v2")
    assert reason is not None and "Missing weights" in reason and "merge_net" in reason
    with pytest.raises(RuntimeError, match="Missing weights"):
        bpy.ops.boost_depth.estimate(image=photo.name, net="midas_v2", mode="r0")
    # F3 / buttons invoke it: the photo comes from the Depth tab's settings, and it fails the same way
    with pytest.raises(RuntimeError, match="Missing weights"):
        bpy.ops.boost_depth.estimate("INVOKE_DEFAULT")
    assert not ext("engine_link.running").running()
    p.models_dir = ""


def test_no_photo_is_explained(addon):
    assert ext("operators.estimate").estimate_blocker(bpy.context).startswith("No photo")
    with pytest.raises(RuntimeError, match="no photo"):
        bpy.ops.boost_depth.estimate()


def test_side_outputs_are_all_or_nothing(addon, tmp_path):
    """Issue 19: the copies next to the photo are all-or-nothing: when one name is taken by a folder the copies
    already renamed are undone (a replaced file comes back with its bytes and mode) and no temp is left."""
    photo = tmp_path / "shot.png"
    photo.write_bytes(b"the photo")
    engine = tmp_path / "engine"
    engine.mkdir()
    outputs = {}
    for fmt, name in (("png16", "shot.png"), ("exr", "shot.exr"), ("npy", "shot.npy")):
        (engine / name).write_bytes(f"new {fmt}".encode())
        outputs[fmt] = str(engine / name)
    (tmp_path / "shot_depth.png").write_bytes(b"old png")
    os.chmod(tmp_path / "shot_depth.png", 0o664)
    (tmp_path / "shot_depth.npy").mkdir()  # the last copy cannot be renamed into place
    side_outputs = ext("operators.estimate").side_outputs
    with pytest.raises(OSError):
        side_outputs(outputs, photo, ["png16", "exr", "npy"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine", "shot.png", "shot_depth.npy", "shot_depth.png"]
    assert (tmp_path / "shot_depth.png").read_bytes() == b"old png"
    assert stat.S_IMODE((tmp_path / "shot_depth.png").stat().st_mode) == 0o664
    (tmp_path / "shot_depth.npy").rmdir()
    written = side_outputs(outputs, photo, ["png16", "exr", "npy"])
    assert [p.name for p in written] == ["shot_depth.png", "shot_depth.exr", "shot_depth.npy"]
    assert (tmp_path / "shot_depth.npy").read_bytes() == b"new npy" and photo.read_bytes() == b"the photo"
    assert stat.S_IMODE((tmp_path / "shot_depth.png").stat().st_mode) == 0o664  # a replaced file keeps its mode


# ---------------------------------------------------------------------------------------- progressive results
@pytest.fixture(scope="module")
def boosting_photo(engine_python, tmp_path_factory):
    """A 150x100 photo on which Final merges one patch (the engine's test photo; written by the engine's Python,
    which has OpenCV and scikit-image)."""
    import subprocess

    path = tmp_path_factory.mktemp("boosting") / "astronaut_150x100.png"
    code = (
        "import sys, cv2, skimage.data; rgb = cv2.resize(skimage.data.astronaut(), (150, 100), "
        "interpolation=cv2.INTER_AREA); cv2.imwrite(sys.argv[1], rgb[..., ::-1])"
    )
    out = subprocess.run([engine_python, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return path


def start_final(photo, synthetic_weights, **options):
    jobs = ext("engine_link.running")
    result = bpy.ops.boost_depth.estimate(
        image=photo.name, net="midas_v2", mode="final", blocking=False, **options, **weights_args(synthetic_weights)
    )
    assert result == {"FINISHED"} and jobs.running()
    return jobs, jobs.active()


def wait_for_partial(jobs, active, name):
    assert wait_for(lambda: bpy.data.images.get(name) is not None or not jobs.running(), jobs.tick, timeout=600), (
        active.job.error_report()
    )
    assert jobs.running(), "the job ended before its first partial map was shown"
    return bpy.data.images[name]


def test_the_depth_image_appears_while_final_runs_and_cancel_removes_it(
    use_engine, synthetic_weights, boosting_photo
):
    photo = bpy.data.images.load(str(boosting_photo))
    before = scene_state()
    jobs, active = start_final(photo, synthetic_weights)
    depth = wait_for_partial(jobs, active, f"{photo.name} depth")
    # the whole-image map, while the patches are still being merged
    assert active.job.partial["done"] == 0 and active.job.state == "running"
    assert depth.is_float and tuple(depth.size) == (150, 100) and depth.colorspace_settings.name == "Non-Color"
    assert depth["depth_kind"] == "inverse_depth" and depth["depth_source"] == photo.name
    assert depth["depth_partial"] == "0/?" and depth["depth_mode"] == "final"
    values = ext("scene.images").read_depth(depth)
    assert np.isfinite(values).all() and values.std() > 0
    state = bpy.context.window_manager.boost_depth_job
    assert state.elapsed > 0
    assert bpy.ops.boost_depth.cancel() == {"FINISHED"}
    assert wait_for(lambda: not jobs.running(), jobs.tick, timeout=30)
    assert active.outcome == "cancelled"
    assert scene_state() == before  # the partial depth image is gone


def test_cancel_restores_an_older_depth_image_or_keeps_the_partial_one_when_asked(
    use_engine, synthetic_weights, boosting_photo
):
    photo = bpy.data.images.load(str(boosting_photo))
    # an older depth of this photo (another size: the partial map resizes it)
    assert bpy.ops.boost_depth.load_depth(filepath=str(DATA / "depth_96x64.exr"), image=photo.name) == {"FINISHED"}
    old = bpy.data.images[f"{photo.name} depth"]
    old_values = ext("scene.images").read_depth(old)
    before = scene_state()
    jobs, active = start_final(photo, synthetic_weights)
    depth = wait_for_partial(jobs, active, f"{photo.name} depth")
    assert wait_for(lambda: tuple(depth.size) == (150, 100), jobs.tick, timeout=60)  # updated in place
    assert bpy.ops.boost_depth.cancel() == {"FINISHED"}
    assert wait_for(lambda: not jobs.running(), jobs.tick, timeout=30)
    assert scene_state() == before
    restored = bpy.data.images[f"{photo.name} depth"]
    assert tuple(restored.size) == (96, 64)
    np.testing.assert_array_equal(ext("scene.images").read_depth(restored), old_values)

    # with the option: the partial depth stays, packed (it outlives the job's temporary folder)
    bpy.data.images.remove(restored)
    jobs, active = start_final(photo, synthetic_weights, keep_partial=True)
    wait_for_partial(jobs, active, f"{photo.name} depth")
    assert bpy.ops.boost_depth.cancel() == {"FINISHED"}
    assert wait_for(lambda: not jobs.running(), jobs.tick, timeout=30)
    kept = bpy.data.images[f"{photo.name} depth"]
    assert kept.packed_file is not None and tuple(kept.size) == (150, 100)
    assert kept["depth_partial"] == "0/?" and np.isfinite(ext("scene.images").read_depth(kept)).all()


def test_final_replaces_the_partial_image_with_the_result(use_engine, synthetic_weights, boosting_photo):
    photo = bpy.data.images.load(str(boosting_photo))
    jobs, active = start_final(photo, synthetic_weights)
    name = f"{photo.name} depth"
    wait_for_partial(jobs, active, name)  # shown while the job runs
    assert wait_for(lambda: not jobs.running(), jobs.tick, timeout=900), active.job.error_report()
    assert active.outcome == "succeeded", active.job.error_report()
    depths = [i for i in bpy.data.images if i.get("depth_source") == photo.name]
    assert [d.name for d in depths] == [name]  # one depth image: the final one
    final = depths[0]
    assert "depth_partial" not in final and final.packed_file is not None and final["depth_R"] == 384
    partials = [e for e in active.job.events if e["event"] == "partial"]
    assert [e["done"] for e in partials][0] == 0 and partials[-1]["done"] == partials[-1]["of"] == 1


def test_the_panel_shows_elapsed_and_left(addon):
    from unittest import mock

    sidebar = ext("panels.sidebar")
    assert sidebar.time_text(12.4, -1.0) == "12 s elapsed"
    assert sidebar.time_text(75.0, 40.2) == "1 min 15 s elapsed, about 40 s left"
    state = bpy.context.window_manager.boost_depth_job
    state.running, state.elapsed, state.eta, state.message = True, 75.0, 40.0, "photo: 1/4"
    try:
        layout = mock.MagicMock()
        assert sidebar.draw_job(layout, bpy.context)
        layout.label.assert_called_with(text="1 min 15 s elapsed, about 40 s left", icon="TIME")
        status = mock.MagicMock()
        sidebar.draw_status(status, bpy.context)
        text = status.layout.row.return_value.progress.call_args.kwargs["text"]
        assert text.endswith("photo: 1/4 (1 min 15 s, 40 s left)"), text
    finally:
        state.running, state.elapsed, state.eta = False, 0.0, -1.0
