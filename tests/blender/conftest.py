"""Fixtures for the Blender tests: real ``bpy`` (the Blender 4.2 / 5.0 wheels), the extension built into a zip
by Blender's own extension tool and installed from it, and the engine run by a separate interpreter.

Run with a bpy environment, e.g. ``.venv-bpy42/bin/python -m pytest tests/blender``. Without bpy these tests
are skipped. Tests that run the engine need ``BOOST_DEPTH_TEST_ENGINE_PYTHON``: a Python with torch & co. (the
engine's venv); they are skipped without it.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Blender reads its user folders when bpy is imported: keep the tests away from the developer's own.
_USER = tempfile.mkdtemp(prefix="boost_depth_blender_user_")
os.environ.setdefault("BLENDER_USER_RESOURCES", _USER)

try:
    import bpy
except ImportError:  # the engine's venv: every test module here skips itself (importorskip)
    bpy = None

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DATA = TESTS / "data" / "blender"
REPO = "boost_test"
ADDON = f"bl_ext.{REPO}.boost_depth"
ENGINE_ENV = "BOOST_DEPTH_TEST_ENGINE_PYTHON"


BPY_MISSING = "needs the bpy wheel (run with a bpy venv: bash .ci/bpy_env.sh)"


def blender_ext_cli() -> Path:
    """Blender's extension command-line tool, shipped inside the bpy wheel."""
    return Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def build_zips(out_dir: Path) -> dict[str, Path]:
    """Validate the manifest and build one zip per platform with Blender's tool (``build --split-platforms``,
    as a release does). Returns {platform: zip}. The wheels must be in wheels/ (python scripts/fetch_wheels.py)."""
    cli = str(blender_ext_cli())
    missing = [w for w in _manifest_wheels() if not (ROOT / w).is_file()]
    if missing:
        pytest.fail(f"{len(missing)} bundled wheel(s) missing, e.g. {missing[0]}: run python scripts/fetch_wheels.py")
    subprocess.run([sys.executable, cli, "validate", str(ROOT)], check=True, capture_output=True, text=True)
    subprocess.run(
        [sys.executable, cli, "build", "--source-dir", str(ROOT), "--output-dir", str(out_dir), "--split-platforms"],
        check=True,
        capture_output=True,
        text=True,
    )
    zips = {}
    for path in out_dir.glob("boost_depth-*.zip"):
        platform = path.stem.rsplit("-", 1)[1].replace("_", "-")
        zips[platform] = path
    return zips


def _manifest_wheels() -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8")).get("wheels", [])


def build_zip(out_dir: Path) -> Path:
    """This platform's zip of :func:`build_zips`."""
    from boost_core.host import wheel_lock

    return build_zips(out_dir)[wheel_lock.this_platform()]


@pytest.fixture(scope="session")
def built_zip(tmp_path_factory) -> Path:
    return build_zip(tmp_path_factory.mktemp("zip"))


@pytest.fixture(scope="session")
def addon(built_zip, tmp_path_factory) -> str:
    """The extension installed from its zip into a local repository and enabled; returns its module name."""
    repo_dir = tmp_path_factory.mktemp("extensions")
    bpy.context.preferences.extensions.repos.new(name=REPO, module=REPO, custom_directory=str(repo_dir))
    result = bpy.ops.extensions.package_install_files(
        repo=REPO, filepath=str(built_zip), enable_on_install=True
    )
    assert result == {"FINISHED"}
    assert bpy.context.preferences.addons.get(ADDON) is not None
    return ADDON


def ext(module: str):
    """A module of the installed extension, e.g. ext('operators.jobs') or ext('scene.geometry')."""
    return importlib.import_module(f"{ADDON}.{module}")


def prefs():
    return bpy.context.preferences.addons[ADDON].preferences


@pytest.fixture(autouse=True)
def empty_scene(addon):
    """Every test starts from Blender's factory startup file, emptied, with no job running."""
    ext("engine_link.running").stop_all()
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    state = bpy.context.window_manager.boost_depth_job
    state.last_error = ""
    p = prefs()
    for name in (
        "python_source",
        "python_path",
        "device",
        "models_dir",
        "mirror",
        "default_net",
        "default_mode",
        "torch_index",
    ):
        p.property_unset(name)
    ext("engine_link.settings").forget_weights_cache()
    yield
    ext("engine_link.running").stop_all()


@pytest.fixture(scope="session")
def engine_python() -> str:
    python = os.environ.get(ENGINE_ENV, "")
    if not python or not Path(python).exists():
        pytest.skip(f"set {ENGINE_ENV} to a Python with the engine's dependencies (torch, OpenCV, ...)")
    return python


@pytest.fixture(scope="session")
def synthetic_weights(engine_python, tmp_path_factory):
    """{'merge_net': Path, 'midas_v2': Path}: deterministic random checkpoints (tests/synthetic_weights.py),
    written by the engine's interpreter (it has torch); removed at the end of the session (~740 MB)."""
    folder = tmp_path_factory.mktemp("weights")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from synthetic_weights import write_checkpoint; "
        "[print(write_checkpoint(n, sys.argv[2])) for n in ('merge_net', 'midas_v2')]"
    )
    out = subprocess.run(
        [engine_python, "-c", code, str(TESTS), str(folder)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    paths = [Path(line) for line in out.stdout.split()]
    yield {"merge_net": paths[0], "midas_v2": paths[1]}
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def use_engine(addon, engine_python):
    """Point the extension's preferences at the engine's interpreter (as a user with their own Python
    would)."""
    p = prefs()
    p.python_source = "CUSTOM"
    p.python_path = engine_python
    p.device = "cpu"
    return engine_python


def load_photo():
    return bpy.data.images.load(str(DATA / "photo_96x64.png"))


def depth_reference():
    import numpy as np

    return np.load(DATA / "depth_96x64.npy")


def wait_for(predicate, tick, timeout=120.0, interval=0.05):
    """Call ``tick()`` (the extension's timer callback) until ``predicate()`` holds; False on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        if predicate():
            return True
        time.sleep(interval)
    return False


# The bpy 4.2 wheel crashes (SIGSEGV in SpaceType's static destructor, after Python has shut down) at process
# exit whenever a Python UI class is registered, as with any enabled extension; bpy 5.0 does not. Once pytest
# has printed its summary, leave without running C++ static destructors, keeping pytest's exit status.
_exit_status = {"code": None}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _exit_status["code"] is not None and bpy is not None and bpy.app.version < (5, 0, 0):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
