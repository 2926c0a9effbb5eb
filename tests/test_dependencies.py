"""boost_core.host.dependencies: real pip installs of a small package from a package index served on 127.0.0.1
(tests/package_index.py) into a temporary target, and real interpreter probes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from boost_core.host import dependencies as deps
from package_index import NAME, VERSION, PackageIndex

ROOT = Path(__file__).resolve().parent.parent


def test_requirements_are_the_repository_pins():
    reqs = deps.requirements()
    text = (ROOT / "requirements.txt").read_text()
    assert reqs and all("==" in r for r in reqs)
    assert all(r in text for r in reqs)
    assert any(r.startswith("torch==") for r in reqs)


def test_torch_requirement_variants():
    cpu = deps.torch_requirement("cpu", "linux")
    assert cpu.spec == f"torch=={deps.TORCH_VERSION}+cpu"
    assert cpu.index_url == "https://download.pytorch.org/whl/cpu"
    cuda = deps.torch_requirement("cu126", "win32")
    assert cuda.spec.endswith("+cu126") and cuda.index_url.endswith("/cu126")
    mac = deps.torch_requirement("cpu", "darwin")
    assert mac.spec == f"torch=={deps.TORCH_VERSION}" and mac.index_url is None
    with pytest.raises(ValueError, match="no cu130 build for darwin"):
        deps.torch_requirement("cu130", "darwin")
    with pytest.raises(ValueError, match="choose one of: cpu, cu126"):
        deps.torch_requirement("cu121", "linux")
    reqs, index = deps.runtime_requirements("cu130", "linux")
    assert reqs[0] == f"torch=={deps.TORCH_VERSION}+cu130" and index.endswith("/cu130")
    assert [deps._req_name(r) for r in reqs] == [deps._req_name(r) for r in deps.requirements()]


@pytest.fixture
def index(tmp_path):
    with PackageIndex(tmp_path) as served:
        yield served


def test_install_small_package_into_target(tmp_path, index):
    target = tmp_path / "site"
    lines: list[deps.PipLine] = []
    # A TorchRequirement stands for its spec and brings its package index along (here the local one).
    req = deps.TorchRequirement("test", f"{NAME}=={VERSION}", index.url, "test build")
    res = deps.install([req], target, progress=lines.append, extra_args=index.pip_args())

    assert res.ok, res.reason
    assert res.returncode == 0 and res.reason == ""
    assert "--target" in res.command and str(target) in res.command and "--upgrade" in res.command
    extra = res.command.index("--extra-index-url")  # the requirement's own index goes along
    assert res.command[extra + 1] == index.url and res.command[-1] == f"{NAME}=={VERSION}"
    assert any(path.endswith(".whl") for path in index.requests)  # pip fetched the wheel from this index
    assert (target / NAME).is_dir()
    log = res.log_path.read_text()
    assert f"Successfully installed {NAME}-{VERSION}" in log
    assert any(ln.kind == "success" for ln in lines) and any(ln.kind == "collect" for ln in lines)
    # The package imports from the target folder in a fresh interpreter.
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(target)!r}); import {NAME}; "
         f"print({NAME}.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert Path(out).is_relative_to(target)
    # ...and the probe finds it there, with its version.
    rep = deps.check_interpreter(sys.executable, [target], modules=[NAME])
    assert rep.ok and rep.modules[NAME].version == VERSION
    assert Path(rep.modules[NAME].file).is_relative_to(target)


def test_install_failure_gives_a_reason_and_the_log(tmp_path, index):
    target = tmp_path / "site"
    res = deps.install([f"{NAME}==999.0.0"], target, log_path=tmp_path / "logs" / "pip.log",
                       extra_args=index.pip_args())
    assert not res.ok and res.returncode not in (0, None)
    assert f"no installable build of {NAME}==999.0.0" in res.reason
    assert str(tmp_path / "logs" / "pip.log") in res.reason
    assert f"{NAME}==999.0.0" in (tmp_path / "logs" / "pip.log").read_text()
    assert any(path.startswith(f"/simple/{NAME}") for path in index.requests)
    assert not (target / NAME).exists()


def test_install_with_unreachable_index_says_so(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: the index is "offline"
    res = deps.install([f"{NAME}=={VERSION}"], tmp_path / "site",
                       extra_args=["--isolated", "--index-url", f"http://127.0.0.1:{port}/simple",
                                   "--retries", "1", "--timeout", "1", "--no-cache-dir"])
    assert not res.ok and res.reason.startswith("the package index could not be reached")


def test_install_can_be_cancelled(tmp_path):
    cancel = threading.Event()
    cancel.set()
    res = deps.install([f"{NAME}=={VERSION}"], tmp_path / "site", cancel=cancel)
    assert not res.ok and res.cancelled and res.reason == "cancelled"


def test_install_with_an_interpreter_that_cannot_run(tmp_path):
    res = deps.install(["iniconfig==2.0.0"], tmp_path / "site", python=str(tmp_path / "no-python"),
                       bootstrap_pip=False)
    assert not res.ok and res.returncode is None and "cannot run" in res.reason


def test_check_interpreter_on_the_project_venv():
    rep = deps.check_interpreter(sys.executable)
    assert rep.ok, rep.problems
    assert rep.python_version == "%d.%d.%d" % sys.version_info[:3]
    assert set(rep.modules) == {"torch", "numpy", "cv2", "OpenEXR"}
    import numpy  # the probe reports what this very interpreter has

    assert rep.modules["numpy"].version == numpy.__version__
    assert rep.cuda in (True, False) and rep.mps in (True, False)
    assert rep.missing == () and rep.fix == ""
    assert rep.message.startswith("OK: Python ") and f"numpy {numpy.__version__}" in rep.message


def test_check_interpreter_reports_missing_packages_with_a_fix(tmp_path):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    rep = deps.check_interpreter(str(python))
    assert not rep.ok and rep.error is None
    assert set(rep.missing) == {"torch", "numpy", "cv2", "OpenEXR"}
    assert "ModuleNotFoundError" in rep.modules["torch"].error
    assert "torch==" in rep.fix and "pip install" in rep.fix
    assert rep.message.startswith("Not usable") and "Fix:" in rep.message


def test_check_interpreter_that_does_not_exist(tmp_path):
    rep = deps.check_interpreter(str(tmp_path / "python9"))
    assert not rep.ok and "does not exist" in rep.error


def test_pip_line_classification():
    assert deps.classify_pip_line("Collecting torch==2.13.0").kind == "collect"
    p = deps.classify_pip_line("Progress 512 of 1024")
    assert p.kind == "progress" and p.fraction == 0.5
    assert deps.classify_pip_line("ERROR: No matching distribution found for x").kind == "error"
