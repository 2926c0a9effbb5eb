"""Installing and checking the Python packages the engine needs (torch, numpy, OpenCV, ...).

Used by the Blender preferences for what is not pinned file by file in ``dependencies.lock.json``: a GPU build of
torch installed with pip on the user's request (``torch_install.install_with_pip``; the default CPU build needs no
pip, see ``torch_install``), and the check of another interpreter. Usable from any Python: it imports neither
torch nor bpy. Everything runs in child processes:

* :func:`install` runs ``PYTHON -m pip install --target DIR --upgrade --no-input ...``, streams pip's
  lines to a callback, writes the whole pip log to a file and, on failure, says why in one sentence.
* :func:`check_interpreter` runs a small probe in another interpreter (Blender's, or one the user
  points to) and reports which packages it has, their versions, CUDA/MPS availability, and how to
  fix what is missing.
* :func:`torch_requirement` gives the pinned torch build (CPU or a CUDA variant) and its package
  index; :func:`requirements` reads the pins of the repository's ``requirements.txt``.

The target folder is meant for the *engine's child process* (``PYTHONPATH=DIR python -m
boost_core ...``); do not put it on Blender's own ``sys.path``: Blender ships its own numpy.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
MIN_PYTHON = (3, 11)
REQUIREMENTS_FILE = Path(__file__).resolve().parents[2] / "requirements.txt"


# ---------------------------------------------------------------------------------------------- torch
@dataclass(frozen=True)
class TorchVariant:
    """One build of torch on the PyTorch package index: ``kind`` is the index folder and the local
    version tag (``cpu``, ``cu126``...); ``platforms`` the ``sys.platform`` values it exists for."""

    kind: str
    label: str
    platforms: tuple[str, ...]
    experimental: bool = False
    note: str = ""


# torch 2.13's build matrix (pytorch/pytorch RELEASE.md, "Release Compatibility Matrix"): CUDA 12.6
# and 13.0 stable, 13.2 experimental, ROCm 7.2; CPU everywhere. CUDA 12.8 was dropped in 2.12.
TORCH_VARIANTS: tuple[TorchVariant, ...] = (
    TorchVariant("cpu", "CPU only (any computer; on macOS includes Apple GPU / MPS)",
                 ("linux", "win32", "darwin")),
    TorchVariant("cu126", "NVIDIA CUDA 12.6 (older GPUs: Maxwell, Pascal, Volta ... Hopper)",
                 ("linux", "win32"),
                 note="needs an NVIDIA driver for CUDA 12.6 or newer"),
    TorchVariant("cu130", "NVIDIA CUDA 13.0 (Turing and newer, including Blackwell)", ("linux", "win32"),
                 note="needs an NVIDIA driver for CUDA 13.0 or newer"),
    TorchVariant("cu132", "NVIDIA CUDA 13.2 (experimental)", ("linux", "win32"), experimental=True,
                 note="experimental build; needs an NVIDIA driver for CUDA 13.2 or newer"),
    TorchVariant("rocm7.2", "AMD ROCm 7.2 (Linux only)", ("linux",), experimental=True,
                 note="needs a ROCm 7.2 capable AMD GPU and driver"),
)


@dataclass(frozen=True)
class TorchRequirement:
    """What to ask pip for: ``spec`` (e.g. ``torch==2.13.0+cu126``) and the ``index_url`` to add
    with ``--extra-index-url`` (``None``: the default index has it)."""

    kind: str
    spec: str
    index_url: str | None
    label: str
    note: str = ""

    def __str__(self) -> str:
        return self.spec


def torch_variants(platform: str | None = None) -> tuple[TorchVariant, ...]:
    """The torch builds that exist for ``platform`` (default: this one's ``sys.platform``)."""
    plat = _platform_key(platform)
    return tuple(v for v in TORCH_VARIANTS if plat in v.platforms)



def _platform_key(platform: str | None) -> str:
    plat = sys.platform if platform is None else platform
    return "linux" if plat.startswith("linux") else plat


TORCH_KINDS: tuple[str, ...] = tuple(v.kind for v in TORCH_VARIANTS if _platform_key(None) in v.platforms)
"""The torch build kinds available on this platform (``"cpu"`` first)."""


def torch_requirement(kind: str = "cpu", platform: str | None = None) -> TorchRequirement:
    """The pinned torch requirement for ``kind`` (``"cpu"``, ``"cu126"``, ``"cu130"``, ``"cu132"``,
    ``"rocm7.2"``) on ``platform`` (default: this one). Raises ``ValueError`` naming the valid kinds.

    On macOS only ``"cpu"`` exists and comes from the default index (its wheels include MPS). On
    Linux and Windows every build comes from ``https://download.pytorch.org/whl/<kind>`` and is
    pinned with its local tag (``torch==2.13.0+cpu``), so pip cannot pick another build from PyPI.
    """
    plat = _platform_key(platform)
    variants = {v.kind: v for v in torch_variants(plat)}
    if kind not in variants:
        known = ", ".join(variants) or "none"
        if kind in {v.kind for v in TORCH_VARIANTS}:
            raise ValueError(f"torch {TORCH_VERSION} has no {kind} build for {plat}; choose one of: {known}")
        raise ValueError(f"unknown torch build {kind!r}; choose one of: {known}")
    v = variants[kind]
    if plat == "darwin":
        return TorchRequirement(kind, f"torch=={TORCH_VERSION}", None, v.label, v.note)
    spec = f"torch=={TORCH_VERSION}+{kind}"
    return TorchRequirement(kind, spec, f"{PYTORCH_INDEX}/{kind}", v.label, v.note)


# ------------------------------------------------------------------------------------- requirements
def requirements(path: str | os.PathLike | None = None) -> list[str]:
    """The pinned requirement lines of ``requirements.txt`` (default: the repository's), without
    comments, blank lines or ``-r``/``--`` options, e.g. ``["torch==2.13.0", "numpy==2.4.6", ...]``."""
    p = Path(path) if path is not None else REQUIREMENTS_FILE
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{p} is missing: the list of pinned dependencies ships with Boost Depth; reinstall the "
            "extension or pass the path of a requirements file"
        ) from None
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


def _req_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", req, maxsplit=1)[0].lower().replace("_", "-")


def _req_version(req: str) -> str | None:
    m = re.search(r"==\s*([^\s;]+)", req)
    return m.group(1) if m else None


def runtime_requirements(kind: str = "cpu", platform: str | None = None,
                         path: str | os.PathLike | None = None) -> tuple[list[str], str | None]:
    """``(requirements, extra_index_url)`` for installing the engine with the torch build ``kind``:
    the pins of ``requirements.txt`` with its torch line replaced by :func:`torch_requirement`."""
    torch = torch_requirement(kind, platform)
    reqs = [torch.spec if _req_name(r) == "torch" else r for r in requirements(path)]
    if not any(_req_name(r) == "torch" for r in reqs):
        reqs.insert(0, torch.spec)
    return reqs, torch.index_url


# -------------------------------------------------------------------------------------------- install
@dataclass(frozen=True)
class PipLine:
    """One line of pip output, classified for a progress display.

    ``kind``: ``"collect"`` (resolving a package), ``"download"``, ``"progress"`` (``done``/``total``
    bytes of the current download, from pip >= 24.1's raw progress), ``"install"``, ``"success"``,
    ``"error"``, ``"warning"`` or ``"other"``; ``package`` the name when the line gives one.
    """

    text: str
    kind: str
    package: str = ""
    done: int | None = None
    total: int | None = None

    @property
    def message(self) -> str:
        """The line itself (for progress displays that show a message)."""
        return self.text

    @property
    def fraction(self) -> float | None:
        if self.done is None or not self.total:
            return None
        return min(1.0, self.done / self.total)


_LINE_KINDS = (
    (re.compile(r"^Progress (\d+) of (\d+)"), "progress"),
    (re.compile(r"^\s*Collecting (\S+)"), "collect"),
    (re.compile(r"^\s*(?:Downloading|Using cached|Processing|Obtaining) (\S+)"), "download"),
    (re.compile(r"^Installing collected packages: (.*)"), "install"),
    (re.compile(r"^Successfully installed (.*)"), "success"),
    (re.compile(r"^ERROR: (.*)"), "error"),
    (re.compile(r"^WARNING: (.*)"), "warning"),
)


def classify_pip_line(text: str) -> PipLine:
    """Turn one pip output line into a :class:`PipLine`."""
    for rx, kind in _LINE_KINDS:
        m = rx.match(text)
        if m:
            if kind == "progress":
                return PipLine(text, kind, done=int(m.group(1)), total=int(m.group(2)))
            package = m.group(1) if kind in ("collect", "download") else ""
            return PipLine(text, kind, package=package)
    return PipLine(text, "other")


@dataclass(frozen=True)
class InstallResult:
    """``ok``; pip's ``returncode`` (``None`` when pip could not start); ``log_path`` of the full
    log; ``reason``: one readable sentence on failure (``""`` on success); the ``command`` run."""

    ok: bool
    returncode: int | None
    log_path: Path
    reason: str
    command: tuple[str, ...]
    cancelled: bool = False
    seconds: float = 0.0


def _pip_version(python: str, env: dict) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True,
                             timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"pip (\d+)\.(\d+)", out.stdout)
    return (int(m.group(1)), int(m.group(2))) if m and out.returncode == 0 else None


def _child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    if extra:
        env.update(extra)
    return env


def _run_streaming(cmd, env, log, progress, cancel, timeout) -> tuple[int | None, bool, str]:
    """Run ``cmd``; every output line goes to ``log`` and ``progress``. -> (rc, cancelled, error)."""
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
    except OSError as e:
        log.write(f"cannot start {cmd[0]}: {e}\n")
        return None, False, f"cannot run {cmd[0]}: {e.strerror or e}"
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    start = time.monotonic()
    cancelled = False
    timed_out = False
    while True:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            log.write(line)
            log.flush()
            if progress is not None:
                text = line.rstrip("\r\n")
                for part in text.split("\r"):  # progress bars redraw with \r
                    if part.strip():
                        progress(classify_pip_line(part))
        if cancel is not None and cancel.is_set() and not cancelled:
            cancelled = True
            _stop(proc)
        if timeout is not None and not timed_out and time.monotonic() - start > timeout:
            timed_out = True
            _stop(proc)
    rc = proc.wait()
    t.join(timeout=5)
    if timed_out:
        return rc, False, f"pip did not finish within {timeout:g} s and was stopped"
    return rc, cancelled, ""


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


def _failure_reason(text: str, rc: int | None, target: Path, python: str) -> str:
    """One sentence saying why pip failed, from its output."""
    checks = (
        (r"No module named pip", "this Python has no pip; install it with `{python} -m ensurepip --upgrade`"),
        (r"No space left on device|\[Errno 28\]", "the disk is full; free some space and try again"),
        (r"Permission denied|\[Errno 13\]|Access is denied",
         "no permission to write to {target}; choose a folder you own"),
        (r"Name or service not known|Temporary failure in name resolution|getaddrinfo failed|"
         r"NewConnectionError|Failed to establish a new connection|Network is unreachable|"
         r"ConnectTimeoutError|ReadTimeoutError|Read timed out|ProxyError|Max retries exceeded",
         "the package index could not be reached: no internet, or a proxy blocks it (set HTTPS_PROXY, or "
         "install the packages offline)"),
        (r"SSLError|CERTIFICATE_VERIFY_FAILED",
         "a secure connection to the package index failed (a proxy may intercept HTTPS; set PIP_CERT)"),
        (r"Could not find a version that satisfies the requirement (\S+)|"
         r"No matching distribution found for (\S+)",
         "no installable build of {0} was found for this Python and platform on the package index"),
        (r"THESE PACKAGES DO NOT MATCH THE HASHES", "a downloaded package was damaged in transit; try again"),
        (r"ResolutionImpossible|conflicting dependencies", "the requested packages conflict with each other"),
    )
    for pattern, message in checks:
        m = re.search(pattern, text)
        if m:
            groups = [g for g in m.groups() if g] if m.groups() else []
            reason = message.format(*groups, python=python, target=target)
            if groups and _req_name(groups[0]) == "torch":
                reason += ("; check the torch build chosen (CPU / CUDA variant): not every variant "
                           "exists for every platform and Python version")
            return reason
    errors = [ln[len("ERROR: "):].strip() for ln in text.splitlines() if ln.startswith("ERROR: ")]
    if errors:
        return errors[-1]
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return tail[-1] if tail else f"pip exited with code {rc}"


def install(
    requirements: Sequence[str | TorchRequirement],
    target: str | os.PathLike,
    python: str = sys.executable,
    extra_index_url: str | Sequence[str] | None = None,
    progress: Callable[[PipLine], None] | None = None,
    log_path: str | os.PathLike | None = None,
    cancel: threading.Event | None = None,
    *,
    timeout: float | None = None,
    bootstrap_pip: bool = True,
    extra_args: Sequence[str] = (),
) -> InstallResult:
    """Install ``requirements`` (pip specs) into the folder ``target`` with ``python``'s pip.

    A :class:`TorchRequirement` among ``requirements`` stands for its ``spec`` and adds its
    ``index_url`` to the extra indexes (so ``[*requirements(), torch_requirement("cu126")]`` minus
    the plain torch line is enough).

    Runs ``python -m pip install --target TARGET --upgrade --no-input ...`` as a child process;
    each output line reaches ``progress`` as a :class:`PipLine`; the full log goes to ``log_path``
    (default ``<target>-pip.log`` beside the target). ``extra_index_url`` adds package indexes (the
    PyTorch one for a torch build). ``cancel`` (an Event) stops pip; ``timeout`` (seconds) too.
    When ``python`` has no pip and ``bootstrap_pip`` is true, ``python -m ensurepip`` runs first.
    pip installs into a temporary folder and moves the result into ``target`` only on success.
    """
    target = Path(target)
    log_file = Path(log_path) if log_path is not None else target.with_name(target.name + "-pip.log")
    t0 = time.monotonic()
    env = _child_env()
    reqs = [str(r) for r in requirements]
    urls = [extra_index_url] if isinstance(extra_index_url, str) else list(extra_index_url or ())
    urls += [r.index_url for r in requirements if isinstance(r, TorchRequirement) and r.index_url]
    urls = list(dict.fromkeys(urls))
    if not reqs:
        raise ValueError("nothing to install: the requirements list is empty")
    try:
        target.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_file, "w", encoding="utf-8")
    except OSError as e:
        return InstallResult(False, None, log_file, f"cannot create {e.filename}: {e.strerror}", (), False,
                             time.monotonic() - t0)
    with log:
        log.write(f"# Boost Depth dependency install, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        pip_ver = _pip_version(python, env)
        if pip_ver is None and bootstrap_pip:
            for args in (["-m", "ensurepip", "--upgrade"], ["-m", "ensurepip", "--upgrade", "--user"]):
                cmd = [python, *args]
                log.write(f"# pip missing; running: {subprocess.list2cmdline(cmd)}\n")
                if progress is not None:
                    progress(PipLine("Installing pip (ensurepip)...", "other"))
                rc, cancelled, _ = _run_streaming(cmd, env, log, progress, cancel, timeout)
                if cancelled:
                    return InstallResult(False, rc, log_file, "cancelled", tuple(cmd), True,
                                         time.monotonic() - t0)
                pip_ver = _pip_version(python, env)
                if pip_ver is not None:
                    break
        cmd = [python, "-m", "pip", "install", "--target", str(target), "--upgrade", "--no-input",
               "--disable-pip-version-check", "--no-warn-script-location"]
        # pip >= 24.1 prints machine-readable "Progress N of M" lines; older ones get no bar at all.
        cmd += ["--progress-bar", "raw" if pip_ver is not None and pip_ver >= (24, 1) else "off"]
        for url in urls:
            cmd += ["--extra-index-url", url]
        cmd += [*extra_args, *reqs]
        log.write(f"# {subprocess.list2cmdline(cmd)}\n")
        log.flush()
        rc, cancelled, err = _run_streaming(cmd, env, log, progress, cancel, timeout)
        log.write(f"# exit code {rc}\n")
    seconds = time.monotonic() - t0
    if cancelled:
        return InstallResult(False, rc, log_file, "cancelled", tuple(cmd), True, seconds)
    if rc == 0 and not err:
        return InstallResult(True, rc, log_file, "", tuple(cmd), False, seconds)
    if err and rc is None:
        reason = err
    else:
        text = log_file.read_text(encoding="utf-8", errors="replace")
        reason = err or _failure_reason(text, rc, target, python)
    return InstallResult(False, rc, log_file, f"{reason} (pip log: {log_file})", tuple(cmd), False, seconds)


# ---------------------------------------------------------------------------------------------- probe
# Which importable module corresponds to which pinned distribution(s).
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "numpy": ("numpy",),
    "cv2": (
        "opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python",
    ),
    "OpenEXR": ("OpenEXR",),
}

_PROBE = r"""
import json, sys
args = json.loads(sys.argv[1])
sys.path[0:0] = args["paths"]
out = {"python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable, "modules": {}}
try:
    import importlib.metadata as md
except Exception:
    md = None
for name, dists in args["modules"].items():
    info = {"version": None, "dist": None, "error": None, "file": None}
    try:
        mod = __import__(name)
        info["file"] = getattr(mod, "__file__", None)
        info["version"] = str(getattr(mod, "__version__", "") or "") or None
        for d in dists:
            try:
                info["version"] = md.version(d)
                info["dist"] = d
                break
            except Exception:
                pass
        if name == "torch":
            out["cuda_build"] = getattr(mod.version, "cuda", None)
            try:
                out["cuda"] = bool(mod.cuda.is_available())
                if out["cuda"]:
                    out["gpu"] = mod.cuda.get_device_name(0)
            except Exception as e:
                out["cuda"] = False
                out["cuda_error"] = "%s: %s" % (type(e).__name__, e)
            try:
                out["mps"] = bool(mod.backends.mps.is_available())
            except Exception:
                out["mps"] = False
    except BaseException as e:
        info["error"] = "%s: %s" % (type(e).__name__, e)
    out["modules"][name] = info
print("BOOST_DEPTH_PROBE " + json.dumps(out))
"""


@dataclass(frozen=True)
class ModuleReport:
    """One probed module: ``version`` (distribution version when known), the ``pinned`` version,
    the import ``error`` when it failed, and where it was imported ``file`` from."""

    name: str
    version: str | None
    pinned: str | None
    error: str | None
    file: str | None = None

    @property
    def present(self) -> bool:
        return self.error is None

    @property
    def matches_pin(self) -> bool:
        if self.pinned is None or self.version is None:
            return self.present
        return self.version.split("+")[0] == self.pinned.split("+")[0]


@dataclass(frozen=True)
class InterpreterReport:
    """What :func:`check_interpreter` found.

    ``ok``: the interpreter runs, is new enough and imports every probed module. ``missing``:
    modules that failed to import; ``mismatched``: present with another version than pinned
    (a warning); ``problems``: readable sentences; ``fix``: what to run or click.
    """

    python: str
    ok: bool
    python_version: str | None
    executable: str | None
    modules: dict[str, ModuleReport]
    cuda: bool | None
    cuda_build: str | None
    gpu: str | None
    mps: bool | None
    missing: tuple[str, ...]
    mismatched: tuple[str, ...]
    problems: tuple[str, ...]
    fix: str
    error: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def versions(self) -> dict[str, str | None]:
        return {k: m.version for k, m in self.modules.items()}

    @property
    def message(self) -> str:
        """A readable summary: first line the verdict, then problems and the fix."""
        if self.error:
            return f"{self.python}: {self.error}"
        found = ", ".join(f"{n} {m.version or '?'}" for n, m in self.modules.items() if m.present)
        accel = []
        if self.cuda:
            accel.append(f"CUDA {self.cuda_build or ''} ({self.gpu or 'GPU'})".replace("  ", " "))
        if self.mps:
            accel.append("Apple MPS")
        head = "OK" if self.ok else "Not usable"
        gpu = f"; GPU: {', '.join(accel)}" if accel else ("; GPU: none" if self.cuda is not None else "")
        lines = [f"{head}: Python {self.python_version}" + (f"; {found}" if found else "") + gpu]
        lines += [f"- {p}" for p in self.problems]
        if self.fix:
            lines.append(f"Fix: {self.fix}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message


def _pins(path=None) -> dict[str, str]:
    try:
        reqs = requirements(path)
    except FileNotFoundError:
        return {}
    return {_req_name(r): v for r in reqs if (v := _req_version(r))}


def check_interpreter(
    python: str,
    extra_paths: Sequence[str | os.PathLike] = (),
    *,
    modules: Sequence[str] | None = None,
    timeout: float = 180.0,
    requirements_path: str | os.PathLike | None = None,
) -> InterpreterReport:
    """Run ``python`` with a probe (``extra_paths`` first on its ``sys.path``) and report Python's
    version, each module's version or import error (default: torch, numpy, cv2, OpenEXR),
    CUDA and MPS availability, and what to do about anything missing. Never raises for a broken
    interpreter: the report says what is wrong."""
    names = list(modules) if modules is not None else list(RUNTIME_MODULES)
    dists = {n: RUNTIME_MODULES.get(n, (n,)) for n in names}
    pins = _pins(requirements_path)
    args = json.dumps({"paths": [str(p) for p in extra_paths], "modules": dists})
    torch_cpu = torch_requirement("cpu") if _platform_key(None) in ("linux", "win32", "darwin") else None

    def failed(error: str) -> InterpreterReport:
        return InterpreterReport(python, False, None, None, {}, None, None, None, None, tuple(names), (),
                                 (error,), "point to a working Python 3.11+ executable, or use Blender's own",
                                 error)

    try:
        proc = subprocess.run([python, "-c", _PROBE, args], capture_output=True, text=True, timeout=timeout,
                              env=_child_env(), stdin=subprocess.DEVNULL, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return failed(f"{python} does not exist")
    except PermissionError:
        return failed(f"{python} is not executable")
    except OSError as e:
        return failed(f"cannot run {python}: {e.strerror or e}")
    except subprocess.TimeoutExpired:
        return failed(f"{python} did not answer within {timeout:g} s")
    marker = "BOOST_DEPTH_PROBE "
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(marker)), None)
    if line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return failed(f"{python} is not a usable Python (exit code {proc.returncode}): {' '.join(tail)}")
    data = json.loads(line[len(marker):])

    reports: dict[str, ModuleReport] = {}
    for name in names:
        info = data["modules"].get(name, {})
        pinned = next((pins[d.lower()] for d in dists[name] if d.lower() in pins), None)
        reports[name] = ModuleReport(name, info.get("version"), pinned, info.get("error"), info.get("file"))

    problems: list[str] = []
    pyver = data.get("python")
    too_old = tuple(int(x) for x in pyver.split(".")[:2]) < MIN_PYTHON
    if too_old:
        problems.append(f"Python {pyver} is too old: Boost Depth needs Python "
                        f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")
    missing = tuple(n for n, r in reports.items() if not r.present)
    for n in missing:
        problems.append(f"{n} cannot be imported: {reports[n].error}")
    mismatched = tuple(n for n, r in reports.items() if r.present and not r.matches_pin)
    for n in mismatched:
        problems.append(f"{n} {reports[n].version} differs from the tested version {reports[n].pinned} "
                        "(may work; install the pinned one if results look wrong)")

    fix = ""
    need = [n for n in (*missing, *mismatched)]
    if need:
        specs = []
        for n in need:
            dist = RUNTIME_MODULES.get(n, (n,))[0]
            pin = pins.get(dist.lower())
            if n == "torch" and torch_cpu is not None:
                specs.append(torch_cpu.spec)
            else:
                specs.append(f"{dist}=={pin}" if pin else dist)
        index = ""
        if "torch" in need and torch_cpu is not None and torch_cpu.index_url:
            index = f" --extra-index-url {torch_cpu.index_url}"
        fix = (f"use Preferences > Boost Depth > Dependencies > Install, or run: "
               f"\"{python}\" -m pip install {' '.join(specs)}{index} "
               "(pick a CUDA build of torch for an NVIDIA GPU)")
    elif too_old:
        fix = "point to a Python 3.11+ interpreter"

    return InterpreterReport(
        python=python,
        ok=not too_old and not missing,
        python_version=pyver,
        executable=data.get("executable"),
        modules=reports,
        cuda=data.get("cuda"),
        cuda_build=data.get("cuda_build"),
        gpu=data.get("gpu"),
        mps=data.get("mps"),
        missing=missing,
        mismatched=mismatched,
        problems=tuple(problems),
        fix=fix,
        error=None,
        raw=data,
    )
