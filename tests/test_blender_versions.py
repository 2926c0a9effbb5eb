"""The bpy suite (tests/blender) under each supported Blender, each in its own venv with the real bpy wheel.

The venvs come from ``bash .ci/bpy_env.sh`` (.ci/run creates them). The engine runs in this interpreter
(torch & co.), the extension in Blender's: the same split as in production.
"""

import os
import subprocess
import sys

import pytest

from paths import ROOT

BLENDERS = {"4.2 LTS": ".venv-bpy42", "5.0": ".venv-bpy50", "5.2": ".venv-bpy52"}


@pytest.mark.slow
@pytest.mark.parametrize("version", BLENDERS)
def test_blender_suite(version, tmp_path):
    python = ROOT / BLENDERS[version] / "bin" / "python"
    if not python.exists():
        message = f"no bpy venv for Blender {version}: run `bash .ci/bpy_env.sh`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, BOOST_DEPTH_TEST_ENGINE_PYTHON=sys.executable)
    # Own --basetemp: a nested pytest must not prune the temp dir's pytest-of-<user>/pytest-N folders (pytest keeps the
    # newest 3 per user), one of which is this outer session's, holding its session-scoped checkpoints.
    proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--basetemp={tmp_path / 'bpy'}", "tests/blender"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    print(tail)
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and " skipped" not in proc.stdout.splitlines()[-1], tail
