"""Issue 20, engine side: the dependency lock, ``scripts/fetch_wheels.py`` (against a real HTTP server on
127.0.0.1), the manifest kept true to the lock, the engine importing nothing at run time beyond what the
extension bundles (plus Blender's numpy and the downloaded torch), and ``boost_core.host.torch_install``'s
failure modes with small wheels built here (the real torch wheel is installed by tests/blender/test_self_contained.py).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import sys
import threading
import tomllib
import zipfile
from pathlib import Path

import pytest

from boost_core.host import torch_install, wheel_lock
from package_index import PackageIndex

ROOT = Path(__file__).resolve().parents[1]
FETCH = ROOT / "scripts" / "fetch_wheels.py"
# import name of each bundled distribution (what `import` finds after Blender installs the wheel)
IMPORT_NAMES = {"opencv-python-headless": {"cv2"}, "openexr": {"OpenEXR", "Imath"},
                "typing-extensions": {"typing_extensions"}}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- the lock
def test_the_lock_covers_every_platform_and_python_once_per_requirement():
    lock = wheel_lock.load()
    assert set(lock.pythons) == {"3.11", "3.13"}  # Blender 4.2-5.0 and 5.1+
    assert "linux-x64" in lock.platforms and "windows-x64" in lock.platforms
    for platform in lock.platforms:
        for python in lock.pythons:
            files = lock.bundled_for(platform, python)
            names = sorted(f.name for f in files)
            assert names == sorted(lock.requirements), (platform, python, names)
            for f in files:
                assert f.version == lock.requirements[f.name]
                assert len(f.sha256) == 64 and f.size > 0 and f.url.startswith("https://files.pythonhosted.org/")
            torch = lock.torch_for(platform, python)
            assert torch is not None and torch.version == lock.torch_version, (platform, python)
    assert "numpy" not in lock.requirements and "torch" not in lock.requirements  # Blender's / downloaded


def test_the_manifest_lists_exactly_the_locks_wheels_and_platforms():
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))
    lock = wheel_lock.load()
    assert manifest["wheels"] == sorted(f"./wheels/{f.filename}" for f in lock.bundled)
    assert manifest["platforms"] == list(lock.platforms)
    assert manifest["website"].startswith("https://")
    assert "/wheels/" not in manifest["build"]["paths_exclude_pattern"]  # the wheels go into the zip


def test_wheels_folder_holds_the_locked_files_for_this_platform():
    lock = wheel_lock.load()
    platform = wheel_lock.this_platform()
    for f in lock.bundled_for(platform):
        path = ROOT / "wheels" / f.filename
        assert path.is_file(), f"{path} missing: run python scripts/fetch_wheels.py"
        assert path.stat().st_size == f.size and sha256(path) == f.sha256, f.filename


# ------------------------------------------------------------------------------------------- fetch_wheels
def tiny_wheel(folder: Path, name: str, version: str = "1.0") -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
    return path


@pytest.fixture
def file_server(tmp_path):
    """A folder served over HTTP on 127.0.0.1: (url, folder, requests)."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder, requests
    server.shutdown()
    server.server_close()


def write_lock(path: Path, files: list[Path], wrong: set[str] = frozenset()) -> None:
    bundled = []
    for f in files:
        digest = "0" * 64 if f.name in wrong else sha256(f)
        bundled.append({"name": f.name.split("-")[0], "version": "1.0", "filename": f.name,
                        "url": f"https://files.pythonhosted.org/packages/x/{f.name}", "platform": "any",
                        "pythons": ["3.11", "3.13"], "size": f.stat().st_size, "sha256": digest})
    path.write_text(json.dumps({"platforms": ["linux-x64"], "pythons": ["3.11", "3.13"],
                                "requirements": {b["name"]: "1.0" for b in bundled}, "torch_version": "0",
                                "bundled": bundled, "torch": []}))


def run_fetch(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FETCH), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_fetch_wheels_verifies_keeps_the_manifest_true_and_removes_stale_wheels(tmp_path, file_server):
    url, served, requests = file_server
    good, bad = tiny_wheel(served, "alpha"), tiny_wheel(served, "beta")
    lock, wheels, manifest = tmp_path / "lock.json", tmp_path / "wheels", tmp_path / "blender_manifest.toml"
    write_lock(lock, [good, bad], wrong={bad.name})
    wheels.mkdir()
    (wheels / "stale-0.1-py3-none-any.whl").write_bytes(b"old")
    manifest.write_text('id = "x"\n\n[permissions]\nfiles = "x"\n')
    args = ["--lock", lock, "--wheels-dir", wheels, "--manifest", manifest, "--mirror", url]
    out = run_fetch(*args)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"FAILED   {bad.name}" in out.stderr
    assert sorted(p.name for p in wheels.iterdir()) == [good.name]  # nothing unverified, the stale one gone
    assert sha256(wheels / good.name) == sha256(good)
    written = tomllib.loads(manifest.read_text())
    assert written["wheels"] == sorted([f"./wheels/{good.name}", f"./wheels/{bad.name}"])
    assert written["platforms"] == ["linux-x64"]
    assert run_fetch(*args[:6], "--check").returncode == 1  # the bad one is still missing

    write_lock(lock, [good, bad])  # the lock now has the right hash
    assert run_fetch(*args).returncode == 0
    assert run_fetch(*args[:6], "--check").returncode == 0
    before = len(requests)
    assert run_fetch(*args).returncode == 0 and len(requests) == before  # verified files are not fetched again


# ------------------------------------------------------------------------------------------- what the engine imports
def test_the_engine_imports_nothing_beyond_the_bundled_wheels_numpy_and_torch(tmp_path, checkpoints):
    """An estimate (r0, EXR and PNG output) in a fresh interpreter; the top-level modules it loaded that are not
    the standard library must be the extension's own, numpy (Blender ships it), torch, or a bundled wheel's."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['boost_core'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('boost_core', run_name='__main__')\nexcept SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "mods = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
        "print('MODULES', ' '.join(sorted(m for m in mods if not m.startswith('_'))))\n"
    )
    photo = ROOT / "tests" / "data" / "blender" / "photo_96x64.png"
    out = subprocess.run(
        [sys.executable, "-c", code, str(photo), "--net", "midas_v2", "--mode", "r0", "--output", str(tmp_path),
         "--format", "png16,exr", "--base-weights", str(checkpoints("midas_v2")),
         "--merge-weights", str(checkpoints("merge_net")), "--progress", "none"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("MODULES ")), None)
    assert line is not None, out.stdout[-2000:] + out.stderr[-3000:]
    loaded = set(line.split()[1:])
    bundled = set().union(*(IMPORT_NAMES[name] for name in wheel_lock.load().requirements))
    allowed = {"boost_core", "numpy", "torch", "torchgen"} | bundled  # torchgen ships inside torch's wheel
    assert loaded <= allowed, sorted(loaded - allowed)
    assert {"cv2", "OpenEXR", "torch", "numpy"} <= loaded  # the test did exercise them


# ------------------------------------------------------------------------------------------- torch_install
def fake_torch(folder: Path, content: str = "1", *, evil: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "torch-9.9.9+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("torch/__init__.py", f"__version__ = '9.9.9'\nBUILD = {content!r}\n")
        zf.writestr("torch-9.9.9+cpu.dist-info/METADATA", "Name: torch\nVersion: 9.9.9\n")
        if evil:
            zf.writestr("../escaped.py", "print('outside')\n")
    return path


def locked(path: Path, *, sha: str | None = "auto", index: str | None = None) -> wheel_lock.LockedFile:
    return wheel_lock.LockedFile("torch", "9.9.9", path.name, f"http://127.0.0.1:9/{path.name}", "linux-x64",
                                 ("3.11",), path.stat().st_size if sha else None,
                                 sha256(path) if sha == "auto" else sha, index=index, build="cpu")


def test_torch_install_switches_atomically_and_uninstalls(tmp_path):
    root = tmp_path / "torch"
    first = fake_torch(tmp_path / "one", "first")
    with PackageIndex(tmp_path, files={"torch": [first]}) as index:
        done = torch_install.install(locked(first), root, index=index.url)
    assert done.sha256 == sha256(first) and done.version == "9.9.9"
    assert "first" in (root / "current" / "torch" / "__init__.py").read_text()
    assert torch_install.installed(root) == done
    assert sorted(p.name for p in root.iterdir()) == ["current"]  # no download, no staging left

    second = fake_torch(tmp_path / "two", "second")
    with PackageIndex(tmp_path, files={"torch": []}) as index:  # the index lacks the file: the old one stays
        with pytest.raises(torch_install.TorchInstallError, match="does not list"):
            torch_install.install(locked(second), root, index=index.url)
    assert "first" in (root / "current" / "torch" / "__init__.py").read_text()

    with PackageIndex(tmp_path, files={"torch": [second]}) as index:
        torch_install.install(locked(second), root, index=index.url)
    assert "second" in (root / "current" / "torch" / "__init__.py").read_text()
    assert sorted(p.name for p in root.iterdir()) == ["current"]

    assert torch_install.uninstall(root) and not root.exists() and torch_install.installed(root) is None


def test_torch_install_refuses_bad_hashes_unsafe_paths_and_unverifiable_files(tmp_path):
    root = tmp_path / "torch"
    good = fake_torch(tmp_path / "good")
    with PackageIndex(tmp_path, files={"torch": [good]}) as index:
        # the lock and the index disagree: refused before downloading
        with pytest.raises(torch_install.TorchInstallError, match="not the one Boost Depth was tested with"):
            torch_install.install(locked(good, sha="1" * 64), root, index=index.url)
        assert not any(r.startswith("/files/") for r in index.requests)
        # the lock leaves the hash open and the index gives it: accepted
        assert torch_install.install(locked(good, sha=None, index=index.url), root).sha256 == sha256(good)
    evil = fake_torch(tmp_path / "evil", evil=True)
    with PackageIndex(tmp_path, files={"torch": [evil]}) as index:
        with pytest.raises(torch_install.TorchInstallError, match="unsafe path"):
            torch_install.install(locked(evil), root, index=index.url)
    assert not (tmp_path / "escaped.py").exists() and not (root / "escaped.py").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".staging")] == []
    assert torch_install.installed(root).sha256 == sha256(good)  # the earlier install is untouched
    # no hash anywhere: nothing to verify against, refused
    bare = wheel_lock.LockedFile("torch", "9.9.9", good.name, "http://127.0.0.1:9/x", "linux-x64", ("3.11",),
                                 None, None, build="cpu")
    with pytest.raises(torch_install.TorchInstallError, match="cannot be verified"):
        torch_install.resolve(bare)


def test_the_plan_names_the_fix_where_the_lock_has_no_torch():
    with pytest.raises(torch_install.TorchInstallError, match="Other Interpreter"):
        torch_install.plan(platform="linux-arm64", python="3.11")
    wheel = torch_install.plan(platform="linux-x64", python="3.11")
    assert wheel.filename.startswith("torch-") and "+cpu" in wheel.filename
