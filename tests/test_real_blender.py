"""The real ``blender`` program: Debian trixie's Blender 4.3.2, in the root that ``.ci/real_blender.sh`` builds and
caches (``bash .ci/real_blender.sh setup``; ``.ci/run`` does it before pytest). Unlike tests/blender (the bpy
wheels), these run Blender's own command line, its extension tool, background scripts and its UI in a window
(Xvfb) driven by simulated events.

In CI (``CI`` set) a missing or broken real Blender fails these tests; elsewhere they are skipped, with the
reason. Screenshots and Blender's output of the UI test go to build/test-artifacts/real-blender/.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from paths import DATA, ROOT

pytestmark = pytest.mark.slow

RUNNER = ROOT / ".ci" / "real_blender.sh"
SCRIPTS = ROOT / "tests" / "real_blender"
ARTIFACTS = ROOT / "build" / "test-artifacts" / "real-blender"
PHOTO = DATA / "blender" / "photo_96x64.png"
ENGINE_PYTHON = ROOT / ".venv" / "bin" / "python"  # the engine venv (.ci/setup); the runner mounts its base
ADDON = "bl_ext.user_default.boost_depth"
TRACEBACK = "Traceback (most recent call last)"
# the interpreter running pytest must not leak into Blender's own Python (3.13)
DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def unavailable(reason: str):
    """No real Blender here: a failure in CI, a skip elsewhere."""
    message = f"real Blender unavailable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run these tests: .ci/run builds the root with .ci/real_blender.sh setup)")
    pytest.skip(message + "; build it with `bash .ci/real_blender.sh setup` (as root, Debian's registry)")


class Ran:
    def __init__(self, argv, returncode, output, seconds):
        self.argv, self.returncode, self.output, self.seconds = argv, returncode, output, seconds

    def __repr__(self):
        return f"exit {self.returncode} after {self.seconds:.1f} s: {' '.join(map(str, self.argv))}"

    def tail(self, n=60):
        return "\n".join(self.output.splitlines()[-n:])

    def expect(self, code):
        assert self.returncode == code, f"{self!r}, expected exit {code}; output:\n{self.tail()}"
        return self


class RealBlender:
    """Runs commands inside the root, with ``binds`` visible at the same paths (the checkout always is)."""

    def __init__(self, binds):
        self.binds = [str(b) for b in binds]

    def run(self, *argv, x=False, env=None, timeout=300) -> Ran:
        command = ["bash", str(RUNNER), "run"] + (["--x"] if x else [])
        for folder in self.binds:
            command += ["--bind", folder]
        command += ["--", *map(str, argv)]
        full_env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        full_env.update(env or {})
        start = time.monotonic()
        # own session: on a timeout the whole group goes (unshare, then the pid namespace with Blender & co.)
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=full_env,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            pytest.fail(f"timed out after {timeout} s: {' '.join(map(str, argv))}\n{output[-6000:]}")
        return Ran(argv, proc.returncode, output, time.monotonic() - start)


def assert_no_traceback(ran: Ran, what: str):
    """Any Python traceback in Blender's output fails, draw code included; names the STEP it came in."""
    text = ran.output
    at = text.find(TRACEBACK)
    if at < 0:
        return
    steps = re.findall(r"^STEP (\S+)", text[:at], re.MULTILINE)
    excerpt = "\n".join(text[at:].splitlines()[:25])
    where = f" in step {steps[-1]!r}" if steps else ""
    pytest.fail(f"{what}: a Python traceback in Blender's output{where}:\n{excerpt}")


def test_traceback_scan_names_the_step():
    """The scan that fails the tests on tracebacks in Blender's output (draw code prints them and goes on)."""
    clean = Ran(["blender"], 0, "STEP setup\nInfo: fine\nSTEP end\n", 1.0)
    assert_no_traceback(clean, "clean")
    text = "STEP setup\nSTEP pick_focus\n" + TRACEBACK + ":\n  File \"x.py\", line 1, in draw\nValueError: bad\nSTEP end\n"
    with pytest.raises(pytest.fail.Exception, match=r"in step 'pick_focus'(.|\n)*ValueError: bad"):
        assert_no_traceback(Ran(["blender"], 0, text, 1.0), "ui")


@pytest.fixture(scope="session")
def real_blender(tmp_path_factory) -> RealBlender:
    if os.name != "posix" or os.geteuid() != 0:
        unavailable("the runner needs root (chroot, mount and pid namespaces)")
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    if not ENGINE_PYTHON.is_file():
        unavailable(f"no engine venv at {ENGINE_PYTHON} (bash .ci/setup)")
    binds = [tmp_path_factory.getbasetemp()]
    venv = (ROOT / ".venv").resolve()  # a worktree's .venv may be a link to another checkout's
    if not venv.is_relative_to(ROOT.resolve()):
        binds.append(venv)
    cache = os.environ.get("BOOST_DEPTH_CACHE")  # the engine's compiled kernels of this session
    if cache and os.path.isdir(cache):
        binds.append(cache)
    blender = RealBlender(binds)
    ran = blender.run("blender", "--version", timeout=120)
    first = ran.output.strip().splitlines()[:1]
    if ran.returncode != 0 or not re.match(r"Blender \d+\.\d+", first[0] if first else ""):
        unavailable(f"`blender --version` in the root failed ({ran!r}):\n{ran.tail(20)}")
    return blender


def user_env(folder: Path) -> dict:
    """A fresh Blender user folder (config, scripts, extensions) and home: nothing touches the real ones."""
    (folder / "home").mkdir(parents=True, exist_ok=True)
    return {"HOME": str(folder / "home"), "BLENDER_USER_RESOURCES": str(folder / "user")}


@pytest.fixture(scope="session")
def installed(real_blender, tmp_path_factory):
    """The extension built (one zip per platform, ``--split-platforms``, as a release), validated and this
    platform's zip installed (enabled) by Blender's own extension command line into a fresh user folder.
    Returns {"env", "zip", "zips", "runs", "folder"}."""
    folder = tmp_path_factory.mktemp("real_blender_user")
    env = user_env(folder)
    dist = folder / "dist"
    dist.mkdir()
    runs = {
        "validate": real_blender.run("blender", "--command", "extension", "validate", ROOT, env=env),
        "build": real_blender.run(
            "blender", "--command", "extension", "build", "--source-dir", ROOT, "--output-dir", dist,
            "--split-platforms", env=env
        ),
    }
    all_zips = sorted(dist.glob("boost_depth-*.zip"))
    zips = [z for z in all_zips if z.name.endswith("-linux_x64.zip")]
    runs["install"] = (
        real_blender.run("blender", "--command", "extension", "install-file", "-r", "user_default", "-e", zips[0],
                         env=env)
        if len(zips) == 1
        else None
    )
    return {"env": env, "zip": zips[0] if len(zips) == 1 else None, "zips": all_zips, "runs": runs,
            "folder": folder}


@pytest.fixture(scope="session")
def engine_in_root(real_blender):
    """The engine venv's interpreter runs inside the root (the runner mounts its base Python there)."""
    ran = real_blender.run(ENGINE_PYTHON, "-c", "import torch, cv2, boost_core; print('engine ok', torch.__version__)",
                           timeout=180)
    assert ran.returncode == 0 and "engine ok" in ran.output, (
        f"the engine venv ({ENGINE_PYTHON}) does not run inside the real-Blender root; Blender could not start "
        f"the engine there ({ran!r}):\n{ran.tail(20)}"
    )
    return ENGINE_PYTHON


@pytest.fixture(scope="session")
def weights(checkpoints, tmp_path_factory):
    """Synthetic merge_net + midas_v2 checkpoints (tests/synthetic_weights.py, written by this interpreter: the
    engine venv) and a studio weights registry (BOOST_DEPTH_REGISTRY) naming them, so the extension finds them
    in a models folder as a user's own weights (the official file names carry SHA-256 checks these fail)."""
    merge, base = checkpoints("merge_net"), checkpoints("midas_v2")
    assert merge.parent == base.parent
    registry = tmp_path_factory.mktemp("registry") / "weights.json"
    registry.write_text(
        json.dumps(
            {
                "weights": [
                    {"name": "midas_v2", "filename": base.name, "networks": ["midas_v2"], "licence": "test"},
                    {"name": "merge_net", "filename": merge.name, "licence": "test"},
                ]
            }
        )
    )
    return {"merge_net": merge, "midas_v2": base, "models_dir": base.parent, "registry": registry}


# -- a. Blender's extension tool: build, validate, install, enable -------------------------------------------
def test_extension_builds_validates_installs_and_registers(real_blender, installed, tmp_path):
    runs = installed["runs"]
    runs["validate"].expect(0)
    assert "Success parsing TOML" in runs["validate"].output, runs["validate"].tail()
    runs["build"].expect(0)
    assert installed["zip"] is not None, f"build wrote no boost_depth-*-linux_x64.zip:\n{runs['build'].tail()}"
    assert "building: boost_depth-0.1.0-linux_x64.zip" in runs["build"].output, runs["build"].tail()
    assert {z.name for z in installed["zips"]} == {f"boost_depth-0.1.0-{p}.zip" for p in
                                                   ("linux_x64", "windows_x64", "macos_arm64")}
    runs["install"].expect(0)
    assert 'Installed "boost_depth"' in runs["install"].output, runs["install"].tail()
    for name, ran in runs.items():
        assert_no_traceback(ran, f"extension {name}")
        assert "Exception in module register()" not in ran.output, f"{name}:\n{ran.tail()}"
    user = Path(installed["env"]["BLENDER_USER_RESOURCES"])
    assert (user / "extensions" / "user_default" / "boost_depth" / "blender_manifest.toml").is_file()
    assert not (user / "extensions" / "user_default" / "boost_depth" / "tests").exists(), "tests/ in the zip"

    result = tmp_path / "installed.json"
    ran = real_blender.run(
        "blender", "-b", "--python-exit-code", "1", "--python", SCRIPTS / "check_install.py", "--", result,
        env=installed["env"],
    )
    assert_no_traceback(ran, "check_install.py")
    ran.expect(0)
    seen = json.loads(result.read_text())
    assert seen["module"] == ADDON, seen["addons"]
    assert {"estimate", "cancel", "mesh_from_depth", "pick_focus"} <= set(seen["operators"]), seen["operators"]
    assert seen["blender"].startswith("4."), seen["blender"]


WHEEL_PROBE = (
    "import sys, importlib.metadata as m, cv2, OpenEXR, numpy; "
    "print('WHEELS', cv2.__version__, m.version('openexr'), numpy.__version__, "
    "cv2.__file__.startswith(sys.argv[-1]))"
)


def test_blender_installs_the_zips_wheels_runs_the_command_and_removes_them(real_blender, installed, weights,
                                                                         engine_in_root, tmp_path):
    """Issue 20 in the real program (Blender 4.3.2, Python 3.13, Debian's numpy 2.x): the linux-x64 zip's
    wheels land in the extensions' site-packages and import in Blender's own Python; `blender -c boost_depth`
    runs the batch with the extension's preferences (without PyTorch it says how to get it; with --python it
    runs); removing the extension removes its wheels and its user folder."""
    installed["runs"]["install"].expect(0)
    env = installed["env"]
    user = Path(env["BLENDER_USER_RESOURCES"])
    sites = sorted((user / "extensions" / ".local" / "lib").glob("python3.*/site-packages"))
    assert len(sites) == 1 and sites[0].parent.name == "python3.13", sites
    site = sites[0]
    assert (site / "cv2").is_dir() and list(site.glob("OpenEXR.cpython-313-*.so")), sorted(os.listdir(site))
    ran = real_blender.run("blender", "-b", "--python-exit-code", "1", "--python-expr", WHEEL_PROBE, "--",
                           str(site), env=env)
    ran.expect(0)
    line = next(ln for ln in ran.output.splitlines() if ln.startswith("WHEELS "))
    assert line.split()[1:3] == ["5.0.0", "3.5.3"] and line.split()[3].startswith("2.") and line.endswith("True"), line

    photo = ROOT / "tests" / "data" / "blender" / "photo_96x64.png"
    ran = real_blender.run("blender", "-c", "boost_depth", "--help", env=env)
    ran.expect(0)
    assert "--frames" in ran.output and "--blend" in ran.output, ran.tail()
    out = tmp_path / "out"
    ran = real_blender.run("blender", "-c", "boost_depth", photo, "--output", out, env=env)
    ran.expect(2)  # Blender's Python 3.13 here has no torch: the command names the fix, runs nothing
    assert "PyTorch is not installed" in ran.output and "--python" in ran.output, ran.tail()
    assert not out.exists() or not any(out.iterdir())
    ran = real_blender.run("blender", "-c", "boost_depth", photo, "--output", out, "--mode", "r0",
                           "--python", engine_in_root, "--base-weights", weights["midas_v2"],
                           "--merge-weights", weights["merge_net"], env=env, timeout=600)
    assert_no_traceback(ran, "blender -c boost_depth")
    ran.expect(0)
    assert (out / "photo_96x64.png").is_file(), ran.tail()

    # removing it (in a user folder of its own, so the session's install stays for the other tests)
    own = user_env(tmp_path / "removal")
    real_blender.run("blender", "--command", "extension", "install-file", "-r", "user_default", "-e",
                     installed["zip"], env=own).expect(0)
    own_user = Path(own["BLENDER_USER_RESOURCES"])
    own_site = own_user / "extensions" / ".local" / "lib" / "python3.13" / "site-packages"
    (own_user / "extensions" / ".user" / "user_default" / "boost_depth" / "torch").mkdir(parents=True)
    assert (own_site / "cv2").is_dir()
    ran = real_blender.run("blender", "--command", "extension", "remove", "user_default.boost_depth", env=own)
    ran.expect(0)
    left = sorted(os.listdir(own_site)) if own_site.is_dir() else []
    assert not [n for n in left if n.startswith(("cv2", "opencv", "OpenEXR", "openexr", "Imath"))], left
    assert not (own_user / "extensions" / "user_default" / "boost_depth").exists()
    assert not (own_user / "extensions" / ".user" / "user_default" / "boost_depth").exists()


# -- b. scripts/batch_depth.py run by the real program -------------------------------------------------------
def batch(real_blender, env, *args, timeout=300):
    return real_blender.run(
        "blender", "-b", "--python-exit-code", "1", "--python", ROOT / "scripts" / "batch_depth.py", "--",
        *args, env=env, timeout=timeout,
    )


def test_batch_depth_writes_depth_files_and_a_blend_that_reopens(real_blender, engine_in_root, weights, tmp_path):
    import cv2
    import numpy as np

    env = user_env(tmp_path)
    out = tmp_path / "out"
    blend = out / "photos.blend"
    ran = batch(
        real_blender, env, PHOTO, "--net", "midas_v2", "--mode", "r0", "--max-res", "128",
        "--base-weights", weights["midas_v2"], "--merge-weights", weights["merge_net"],
        "--output", out, "--format", "png16,exr", "--python", ENGINE_PYTHON, "--device", "cpu",
        "--blend", blend, "--resolution", "33", "--near", "2", "--far", "8",
    )
    assert_no_traceback(ran, "batch_depth.py")
    ran.expect(0)
    assert "[1/1] photo_96x64.png: ok" in ran.output and "done: 1 ok, 0 failed" in ran.output, ran.tail()
    assert sorted(p.name for p in out.iterdir()) == [".boost_depth_job", "photo_96x64.exr", "photo_96x64.png",
                                                     "photos.blend"]
    assert (out / ".boost_depth_job" / "job.json").is_file()  # the batch runs as a resumable job (issue 22)
    png = cv2.imread(str(out / "photo_96x64.png"), cv2.IMREAD_UNCHANGED)
    assert png is not None and png.dtype == np.uint16 and png.shape == (64, 96), (png.dtype, png.shape)
    assert png.max() > png.min(), "a flat 16-bit depth PNG"

    # the .blend opens in a new Blender; what it holds is read there, checked here
    seen_path = tmp_path / "blend.json"
    expr = (
        "import bpy, json, sys\n"
        "s = bpy.data.scenes\n"
        "o = {ob.name: {'type': ob.type, 'scene': [sc.name for sc in ob.users_scene],"
        " 'verts': len(ob.data.vertices) if ob.type == 'MESH' else None,"
        " 'dof': [ob.data.dof.use_dof, ob.data.dof.focus_distance] if ob.type == 'CAMERA' else None}"
        " for ob in bpy.data.objects}\n"
        "i = {im.name: {'float': im.is_float, 'size': list(im.size), 'kind': im.get('depth_kind')}"
        " for im in bpy.data.images}\n"
        "json.dump({'file': bpy.data.filepath, 'scenes': [x.name for x in s],"
        " 'camera': {x.name: x.camera.name if x.camera else None for x in s},"
        " 'objects': o, 'images': i}, open(sys.argv[-1], 'w'))\n"
    )
    ran = real_blender.run(
        "blender", "-b", blend, "--python-exit-code", "1", "--python-expr", expr, "--", seen_path, env=env
    )
    assert_no_traceback(ran, "reopening the .blend")
    ran.expect(0)
    seen = json.loads(seen_path.read_text())
    assert seen["file"] == str(blend)
    assert seen["scenes"] == ["photo_96x64"], seen["scenes"]
    mesh, cam = seen["objects"]["photo_96x64.png mesh"], seen["objects"]["photo_96x64.png camera"]
    assert mesh["type"] == "MESH" and mesh["scene"] == ["photo_96x64"] and mesh["verts"] == 22 * 33, mesh
    assert seen["camera"]["photo_96x64"] == "photo_96x64.png camera"
    assert cam["dof"][0] and 2.0 <= cam["dof"][1] <= 8.0, cam
    depth = seen["images"]["photo_96x64.png depth"]
    assert depth["float"] and depth["kind"] == "inverse_depth" and depth["size"] == [96, 64], depth


def test_batch_depth_exit_codes_in_blender(real_blender, tmp_path):
    env = user_env(tmp_path)
    missing = batch(real_blender, env, tmp_path / "missing.png", "--output", tmp_path / "out",
                    "--python", ENGINE_PYTHON)
    assert_no_traceback(missing, "batch_depth.py with a missing photo")
    missing.expect(1)
    assert "FAILED" in missing.output, missing.tail()

    backwards = batch(real_blender, env, tmp_path / "f_####.png", "--frames", "9-1", "--output", tmp_path / "out")
    assert_no_traceback(backwards, "batch_depth.py --frames 9-1")
    backwards.expect(2)
    assert "runs backwards" in backwards.output, backwards.tail()

    unknown = batch(real_blender, env, PHOTO, "--output", tmp_path / "out", "--no-such-option")
    assert_no_traceback(unknown, "batch_depth.py --no-such-option")
    unknown.expect(2)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_crash_in_a_python_script_fails_blender(real_blender, tmp_path):
    env = user_env(tmp_path)
    crash = real_blender.run(
        "blender", "-b", "--python-exit-code", "1", "--python-expr", "raise RuntimeError('boom in a script')",
        env=env,
    )
    crash.expect(1)
    assert TRACEBACK in crash.output and "RuntimeError: boom in a script" in crash.output, crash.tail()


# -- c. the UI in a real window, driven by simulated events --------------------------------------------------
@pytest.fixture(scope="module")
def ui_flow(real_blender, installed, engine_in_root, weights, tmp_path_factory):
    """One run of tests/real_blender/ui_flow.py in a window; its result, output and screenshots."""
    for name in ("validate", "build", "install"):
        assert installed["runs"][name] is not None and installed["runs"][name].returncode == 0, (
            f"the extension did not install (see test_extension_builds_validates_installs_and_registers): {name}"
        )
    tmp_path = tmp_path_factory.mktemp("ui_flow")
    # a copy of the installed user folder: the preferences this test sets (and saves on quit) stay here
    user = tmp_path / "user_copy"
    shutil.copytree(installed["folder"], user, symlinks=True)
    env = user_env(user)
    env["BOOST_DEPTH_REGISTRY"] = str(weights["registry"])
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    result = tmp_path / "ui_flow.json"
    config = tmp_path / "ui_flow_config.json"
    config.write_text(
        json.dumps(
            {
                "photo": str(PHOTO),
                "models_dir": str(weights["models_dir"]),
                "engine_python": str(ENGINE_PYTHON),
                "artifacts": str(ARTIFACTS),
                "result": str(result),
                "pixel": [70, 20],
            }
        )
    )
    processes = tmp_path / "processes_after_quit.txt"
    # after Blender has quit, list what still runs (Blender's children would: the pid namespace ends only later)
    ran = real_blender.run(
        "bash", "-c", 'blender "$@"; code=$?; sleep 2; ps -eo pid,args > "$0"; exit $code', processes,
        "--enable-event-simulate", "--python", SCRIPTS / "ui_flow.py", "--", config,
        x=True, env=env, timeout=540,
    )
    (ARTIFACTS / "blender_output.log").write_text(ran.output)
    if result.is_file():
        shutil.copyfile(result, ARTIFACTS / "ui_flow.json")
    outcome = json.loads(result.read_text()) if result.is_file() else None
    return {"ran": ran, "outcome": outcome, "processes": processes}


def test_ui_estimate_cancel_pick_focus_and_mesh_in_a_window(ui_flow):
    ran, outcome, processes = ui_flow["ran"], ui_flow["outcome"], ui_flow["processes"]
    assert_no_traceback(ran, "the UI flow")
    assert outcome is not None, f"ui_flow.py wrote no result ({ran!r}):\n{ran.tail()}"
    print(json.dumps(outcome["values"], indent=1))
    assert not outcome["failures"], (
        f"UI flow failed in step {outcome['steps'][-2] if len(outcome['steps']) > 1 else '?'}: "
        f"{outcome['failures']} (screenshots in {ARTIFACTS})"
    )
    assert outcome["ok"] and outcome["steps"][-2:] == ["quit_with_a_job_running", "end"], outcome["steps"]
    ran.expect(0)
    assert len(outcome["screenshots"]) == 9 and all(Path(p).is_file() for p in outcome["screenshots"])
    # quitting Blender with a job running takes the engine child along
    rows = [line.split(None, 1) for line in processes.read_text().splitlines()[1:]]
    left = [
        args for _pid, args in rows if os.path.basename(args.split()[0]) == "blender" or "-m boost_core" in args
    ]
    assert any(args.startswith("ps -eo") for _pid, args in rows), f"no process listing: {rows}"
    assert not left, f"still running after Blender quit (child pid {outcome['values']['child_pid_at_quit']}): {left}"


def progress_pixels(image, box):
    """Pixels of the theme's blue progress-bar fill in ``image[box]``, a screenshot (BGR)."""
    strip = image[box].astype(int)
    b, r = strip[..., 0], strip[..., 2]
    return int(((b > 140) & (b - r > 50)).sum())


def test_ui_status_bar_shows_the_running_job(ui_flow):
    import cv2

    outcome = ui_flow["outcome"]
    assert outcome is not None and "estimate_and_cancel" in outcome["steps"], ui_flow["ran"].tail()
    assert any(p.endswith("_estimate_running.png") for p in outcome["screenshots"]), outcome["screenshots"]
    shot = cv2.imread(next(p for p in outcome["screenshots"] if p.endswith("_estimate_running.png")))
    x, y = outcome["values"]["estimate_button"]  # window coordinates, from the bottom
    height = shot.shape[0]
    # the same job's progress bar at the top of the sidebar, above the button: the check does see one there
    sidebar = (slice(60, height - y), slice(x - 120, x + 120))
    assert progress_pixels(shot, sidebar) > 100, "no progress bar in the sidebar either"
    status_bar = (slice(height - 28, height), slice(None))
    assert progress_pixels(shot, status_bar) > 100, "no progress bar in the status bar while the job runs"
