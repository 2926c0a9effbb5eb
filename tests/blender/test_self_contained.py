"""Issue 20: the extension is self-contained. The zip this platform gets from ``build --split-platforms``
carries only its own wheels; Blender installs them; PyTorch comes as one consented, verified download (a real
HTTP index on 127.0.0.1 serving the real torch wheel of this machine's disk) into the extension's user folder;
the engine child then runs on Blender's own Python (the bpy venv's interpreter, which has no OpenCV or torch of
its own) and no pip runs at any moment; Uninstall removes PyTorch, and removing the extension removes its wheels.
"""

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy wheel")

from conftest import DATA, ext, prefs  # noqa: E402
from package_index import PackageIndex, _file_sha256 as file_sha256  # noqa: E402

from boost_core.host import wheel_lock  # noqa: E402

PLATFORM = wheel_lock.this_platform()
PYTHON = wheel_lock.this_python()
TORCH_WHEELS = Path(os.environ.get("BOOST_DEPTH_TORCH_WHEELS", "/opt/wheels"))




def dist_info(site: Path) -> set[str]:
    return {p.name for p in site.glob("*.dist-info")}


def expected_dist_infos() -> set[str]:
    """``name-version.dist-info`` of every wheel the lock bundles for this platform and Python (PEP 427 names)."""
    out = set()
    for f in wheel_lock.load().bundled_for(PLATFORM, PYTHON):
        name, version = f.filename.split("-")[:2]
        out.add(f"{name}-{version}.dist-info")
    return out


# ------------------------------------------------------------------------------------------- the zip
def test_the_platform_zip_carries_only_its_own_wheels(built_zip):
    names = [n for n in zipfile.ZipFile(built_zip).namelist() if n.startswith("wheels/")]
    lock = wheel_lock.load()
    assert sorted(n.removeprefix("wheels/") for n in names) == sorted({f.filename for f in lock.bundled_for(PLATFORM)})
    # both Pythons Blender uses: 3.11 (4.2-5.0) and 3.13 (5.1+)
    assert any("cp311" in n for n in names) and any("cp313" in n for n in names)
    assert not any("torch" in n or "numpy" in n for n in names)  # torch downloaded on request, numpy is Blender's


def test_blender_installed_the_bundled_wheels_and_the_interpreter_has_none_of_its_own(addon):
    site = ext("engine_link.request").wheels_site_packages()
    assert site is not None and site.is_dir()
    assert expected_dist_infos() <= dist_info(site)
    assert (site / "cv2").is_dir()
    # Blender's Python alone (no extension folders on its path) has neither OpenCV nor torch: what the engine
    # finds below comes from the extension's wheels and its PyTorch folder
    probe = "import importlib.util as u; print([m for m in ('cv2', 'torch', 'OpenEXR') if u.find_spec(m)])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-s", "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------- PyTorch, estimate, no pip
SPAWNS: list = []
_WATCHING = [False]


def _audit(event, args):
    if _WATCHING[0] and event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system"):
        SPAWNS.append((event, args))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only while _WATCHING


@pytest.fixture
def pip_trap(tmp_path, monkeypatch):
    """Any ``import pip`` / ``python -m pip`` / ``ensurepip`` in a child started now finds these first
    (PYTHONPATH precedes site-packages and the standard library) and leaves a mark; in this process every
    process start is recorded."""
    trap = tmp_path / "trap"
    mark = tmp_path / "pip-ran"
    for name in ("pip", "ensurepip"):
        package = trap / name
        package.mkdir(parents=True)
        code = f"open({str(mark)!r}, 'a').write({name!r} + '\\n')\nraise SystemExit(97)\n"
        (package / "__init__.py").write_text(code)
        (package / "__main__.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", str(trap))
    SPAWNS.clear()
    _WATCHING[0] = True
    yield mark
    _WATCHING[0] = False


@pytest.fixture
def online():
    system = bpy.context.preferences.system
    before = system.use_online_access
    system.use_online_access = True
    yield
    system.use_online_access = before


def _argv(event_args) -> list[str]:
    """The command line of a recorded start (subprocess.Popen's audit args: executable, args, cwd, env)."""
    executable, args = event_args[0], event_args[1]
    if isinstance(args, (str, bytes, os.PathLike)):
        args = [args]
    return [str(a) for a in args] if args else [str(executable)]


def test_the_engine_child_on_blenders_python_finds_the_bundled_wheels(addon, pip_trap):
    """Every Blender: the child Boost Depth starts (Blender's interpreter, the extension's wheels on its path)
    imports OpenCV and OpenEXR from what Blender installed, with Blender's numpy; without PyTorch the sidebar says
    how to get it."""
    request = ext("engine_link.request")
    p = prefs()
    p.python_source = "BLENDER"
    python, paths = request.engine_python(p)
    assert python == sys.executable and str(request.wheels_site_packages()) in paths
    probe = "import cv2, OpenEXR, numpy; print('OK', cv2.__file__, numpy.__file__)"
    out = subprocess.run([python, "-c", probe], env=request.engine_environment(paths), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    _ok, cv2_file, numpy_file = out.stdout.split()
    assert Path(cv2_file).is_relative_to(request.wheels_site_packages())
    assert Path(numpy_file).is_relative_to(Path(np.__file__).parents[1])  # Blender's own numpy, not a second one
    request.forget_engine_modules()
    if ext("boost_core.host.torch_install").installed(request.torch_root()) is None:
        assert request.missing_engine_modules(p, wait=60) == {"missing": ["torch"], "error": ""}
        assert request.engine_modules_problem(p).startswith("PyTorch is not installed")
    assert not pip_trap.exists()


def _estimate_on_blenders_python_without_pip(addon, online, pip_trap, synthetic_weights, tmp_path):
    request = ext("engine_link.request")
    p = prefs()
    p.python_source = "BLENDER"
    wheel = wheel_lock.load().torch_for(PLATFORM, PYTHON)
    local = TORCH_WHEELS / wheel.filename
    assert local.is_file(), f"{local} is needed (this machine's CPU torch wheel); set BOOST_DEPTH_TORCH_WHEELS"

    # before: Blender's Python has the bundled OpenCV but no torch, and the sidebar says how to fix that
    request.forget_engine_modules()
    assert request.missing_engine_modules(p, wait=60) == {"missing": ["torch"], "error": ""}
    assert request.engine_modules_problem(p).startswith("PyTorch is not installed")

    with PackageIndex(tmp_path, files={"torch": [local]}) as index:
        p.torch_index = index.url
        assert bpy.ops.boost_depth.install_torch(build="cpu") == {"FINISHED"}
        assert any(r.startswith("/files/torch-") for r in index.requests)
    installed = ext("boost_core.host.torch_install").installed(request.torch_root())
    assert installed is not None and installed.version == wheel.version and installed.build == "cpu"
    assert installed.sha256 == file_sha256(local) and installed.size == local.stat().st_size
    assert (Path(installed.folder) / "torch" / "__init__.py").is_file()
    assert Path(installed.folder).is_relative_to(Path(bpy.utils.extension_path_user(addon)))

    request.forget_engine_modules()
    assert request.missing_engine_modules(p, wait=60) == {"missing": [], "error": ""}
    photo = bpy.data.images.load(str(DATA / "photo_96x64.png"))
    result = bpy.ops.boost_depth.estimate(image=photo.name, net="midas_v2", mode="r20",
                                          base_weights=str(synthetic_weights["midas_v2"]),
                                          merge_weights=str(synthetic_weights["merge_net"]))
    assert result == {"FINISHED"}, bpy.context.window_manager.boost_depth_job.last_error
    values = ext("scene.images").read_depth(bpy.data.images[f"{photo.name} depth"])
    assert values.shape == (64, 96) and np.isfinite(values).all() and values.std() > 0

    # the same through `blender -c boost_depth` (its function: Blender has no -c with the bpy wheel)
    out = tmp_path / "batch"
    code = ext("engine_link.command_line").run([
        str(DATA / "photo_96x64.png"), "--net", "midas_v2", "--mode", "r0", "--output", str(out),
        "--base-weights", str(synthetic_weights["midas_v2"]), "--merge-weights", str(synthetic_weights["merge_net"])])
    assert code == 0 and (out / "photo_96x64.png").is_file()

    starts = [a for e, a in SPAWNS if e == "subprocess.Popen" and "boost_core" in _argv(a)]
    engines = [_argv(a) for a in starts]
    assert len(engines) >= 2
    for argv in engines:  # every engine child ran on Blender's own interpreter
        assert argv[0] == sys.executable and argv[1:3] == ["-m", "boost_core"], argv
    # models, compiled kernels and logs live in the extension's user folder
    user = Path(bpy.utils.extension_path_user(addon))
    first = engines[0]
    assert Path(first[first.index("--models-dir") + 1]) == user / "models"
    assert Path(starts[0][3]["BOOST_DEPTH_CACHE"]) == user / "cache"
    logs = sorted((user / "logs").glob("*.log"))
    assert logs and "boost_core" in logs[0].read_text().splitlines()[0]
    started = [_argv(a) for _e, a in SPAWNS]
    assert not [a for a in started if any("pip" in Path(x).name for x in a)], started
    assert not pip_trap.exists(), pip_trap.read_text()
    assert "pip" not in sys.modules and "ensurepip" not in sys.modules

    # Uninstall removes the folder; the sidebar asks for PyTorch again
    assert bpy.ops.boost_depth.uninstall_torch() == {"FINISHED"}
    assert not request.torch_root().exists()
    request.forget_engine_modules()
    assert request.missing_engine_modules(p, wait=60)["missing"] == ["torch"]


def _a_hash_the_index_disagrees_with_is_refused(addon, online, tmp_path):
    request = ext("engine_link.request")
    wheel = wheel_lock.load().torch_for(PLATFORM, PYTHON)
    impostor = tmp_path / "files" / wheel.filename
    impostor.parent.mkdir()
    impostor.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip under torch's name
    with PackageIndex(tmp_path, files={"torch": [impostor]}) as index:
        prefs().torch_index = index.url
        with pytest.raises(RuntimeError, match="not the one Boost Depth was tested with"):
            bpy.ops.boost_depth.install_torch(build="cpu")
        assert not any(r.startswith("/files/") for r in index.requests)  # refused before downloading
    root = request.torch_root()
    assert root is None or not (root / "current").exists()


if PYTHON == "3.11":
    # Blender 4.2 to 5.0: the CPU torch wheel for Python 3.11 lies on this machine's disk (the lock's hash is its
    # hash), so the whole path runs. Blender 5.1+ (Python 3.13): PyTorch's CPU wheel for 3.13 cannot be fetched
    # here (only PyPI is reachable; PyPI's Linux torch is the CUDA build), so its suite runs the tests around it.
    test_pytorch_download_then_estimate_on_blenders_python_without_pip = _estimate_on_blenders_python_without_pip
    test_a_hash_the_index_disagrees_with_is_refused_and_nothing_is_installed = _a_hash_the_index_disagrees_with_is_refused
else:
    def test_python_313_takes_the_size_and_hash_from_the_index_page(addon):
        wheel = wheel_lock.load().torch_for(PLATFORM, PYTHON)
        assert wheel is not None and wheel.index and wheel.sha256 is None
        _wheel, sentence = ext("operators.setup").torch_download("cpu")
        assert "size from the index page" in sentence and wheel.filename in sentence



# ------------------------------------------------------------------------------------------- uninstall
UNINSTALL = textwrap.dedent("""
    import os, sys, bpy
    zip_path, repo_dir = sys.argv[-2:]
    bpy.context.preferences.extensions.repos.new(name="u", module="u", custom_directory=repo_dir)
    assert bpy.ops.extensions.package_install_files(repo="u", filepath=zip_path, enable_on_install=True) == {"FINISHED"}
    site = os.path.join(bpy.utils.user_resource("EXTENSIONS"), ".local", "lib",
                        "python%d.%d" % sys.version_info[:2], "site-packages")
    user = bpy.utils.extension_path_user("bl_ext.u.boost_depth", path="torch", create=True)
    print("BEFORE", sorted(os.listdir(site)), os.path.isdir(user))
    assert bpy.ops.extensions.package_uninstall(repo_directory=repo_dir, pkg_id="boost_depth") == {"FINISHED"}
    print("AFTER", sorted(os.listdir(site)) if os.path.isdir(site) else [], os.path.isdir(user),
          os.path.isdir(os.path.join(repo_dir, "boost_depth")))
    sys.stdout.flush()
    os._exit(0)
""")


def test_removing_the_extension_removes_its_wheels_and_user_folder(built_zip, tmp_path):
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-c", UNINSTALL, str(built_zip), str(tmp_path / "repo")],
                         capture_output=True, text=True, env=env, timeout=300)
    lines = {ln.split(" ", 1)[0]: ln for ln in out.stdout.splitlines() if ln.startswith(("BEFORE", "AFTER"))}
    assert "AFTER" in lines, out.stdout[-2000:] + out.stderr[-2000:]
    before, after = lines["BEFORE"], lines["AFTER"]
    assert "'cv2'" in before and before.endswith("True")
    assert "cv2" not in after and "opencv" not in after and "OpenEXR" not in after
    assert after.endswith("False False"), after  # the torch folder (user folder) and the extension are gone


# ------------------------------------------------------------------------------------------- release
OFFLINE = textwrap.dedent("""
    import importlib, os, sys, bpy
    zip_path, repo_dir = sys.argv[-2:]
    bpy.context.preferences.extensions.repos.new(name="o", module="o", custom_directory=repo_dir)
    assert bpy.ops.extensions.package_install_files(repo="o", filepath=zip_path, enable_on_install=True) == {"FINISHED"}
    request = importlib.import_module("bl_ext.o.boost_depth.engine_link.request")
    print("MISSING", request.missing_engine_modules(wait=120))
    sys.stdout.flush()
    os._exit(0)
""")


def test_release_builds_every_platform_zip_and_an_offline_one_that_needs_no_download(tmp_path):
    """scripts/release.py: Blender's build per platform, sizes printed; the linux-x64 offline zip carries the CPU
    torch, and a Blender that installs it has everything the engine needs without any download."""
    dist = tmp_path / "dist"
    offline = PYTHON == "3.11" and PLATFORM == "linux-x64"
    args = [sys.executable, str(Path(__file__).parents[2] / "scripts" / "release.py"), "--skip-fetch",
            "--output", str(dist)] + (["--offline", PLATFORM, "--find-links", str(TORCH_WHEELS)] if offline else [])
    out = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lock = wheel_lock.load()
    for platform in lock.platforms:
        name = f"boost_depth-0.1.0-{platform.replace('-', '_')}.zip"
        size_mb = (dist / name).stat().st_size / 1e6
        assert f"{name}: {size_mb:.1f} MB" in out.stdout, out.stdout
        wheels = {Path(n).name for n in zipfile.ZipFile(dist / name).namelist() if n.startswith("wheels/")}
        assert wheels == {f.filename for f in lock.bundled_for(platform)}
    if not offline:
        return
    zip_path = dist / f"boost_depth-0.1.0-{PLATFORM.replace('-', '_')}-offline.zip"
    torch = lock.torch_for(PLATFORM, PYTHON)
    assert f"wheels/{torch.filename}" in zipfile.ZipFile(zip_path).namelist()
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    env.pop("PYTHONPATH", None)
    ran = subprocess.run([sys.executable, "-c", OFFLINE, str(zip_path), str(tmp_path / "repo")],
                         capture_output=True, text=True, env=env, timeout=900)
    line = next((ln for ln in ran.stdout.splitlines() if ln.startswith("MISSING ")), "")
    assert line == "MISSING {'missing': [], 'error': ''}", ran.stdout[-2000:] + ran.stderr[-2000:]
