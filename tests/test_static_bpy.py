"""The Blender-side code checked statically against Blender 4.2's Python API: mypy with the fake-bpy-module-4.2
stubs (in .venv-lint, made by .ci/setup), configured by tests/mypy_bpy.ini (its comments list the exceptions).

This is what catches a misspelt bpy attribute or a wrong call in draw code and rarely-taken branches, which the
bpy suites only reach when a test happens to run them.
"""

import os
import subprocess

import pytest

from paths import ROOT

LINT_PYTHON = ROOT / ".venv-lint" / "bin" / "python"
BLENDER_SIDE = ("operators", "panels", "scene", "engine_link")


def test_blender_code_type_checks_against_the_blender_api(tmp_path):
    if not LINT_PYTHON.exists():
        message = "no .venv-lint (mypy + fake-bpy-module-4.2): run `bash .ci/setup`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # The extension's modules import each other relatively from the extension's package: check them under the
    # package name Blender gives them (the checkout's folder name may not be an identifier).
    package = tmp_path / "boost_depth"
    package.symlink_to(ROOT, target_is_directory=True)
    targets = [arg for name in BLENDER_SIDE for arg in ("-p", f"boost_depth.{name}")]
    targets += ["-m", "boost_depth", "-m", "boost_depth.preferences"]
    proc = subprocess.run([str(LINT_PYTHON), "-m", "mypy", "--config-file", str(ROOT / "tests" / "mypy_bpy.ini"),
                           "--cache-dir", str(tmp_path / "cache"), *targets],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    print(proc.stdout[-8000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert "Success: no issues found" in proc.stdout
