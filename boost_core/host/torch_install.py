"""Installing torch without pip: the one wheel the lock names for this platform and Python, downloaded on the
user's request (resumable, size and SHA-256 checked), unpacked into a folder of its own, switched into place
atomically; uninstalled by removing that folder.

    wheel = torch_install.plan()                     # LockedFile: file name, address, size (bytes), SHA-256
    torch_install.install(wheel, root, progress=...) # -> Installed; root/current/ holds torch/, torch-*.dist-info/
    torch_install.installed(root)                    # Installed or None
    torch_install.uninstall(root)

``root`` is a folder of the extension's user folder (``extension_path_user(..., "torch")`` in Blender). The engine
child sees ``root/current`` through PYTHONPATH (:func:`site_dir`). A wheel is a zip whose top level is the
importable package (PEP 427); torch's only run-time dependency beyond numpy (typing_extensions) is bundled with
the extension, so nothing else is fetched. Standard library only; imports neither torch nor bpy.

Where the lock leaves size and hash open (a build whose host could not be read when the lock was written), they
are read from the PEP 503 index page that lists the file (``<index>/torch/``, ``#sha256=`` fragments); where the
lock has them, the page (when read) must agree. ``index`` overrides where files are looked up (a studio mirror:
a PEP 503 simple index holding the same file names).
"""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import tempfile
import threading
import urllib.parse
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..weights import download
from . import wheel_lock

CURRENT = "current"
RECORD = "boost_depth_torch.json"
USER_AGENT = download.USER_AGENT


class TorchInstallError(Exception):
    """Installing torch failed or cannot be done; the message names the problem and the fix."""


@dataclass(frozen=True)
class Installed:
    """An installed torch: ``version`` (``2.13.0``), ``build`` (``cpu``), ``python`` (``3.11``), ``platform``,
    the wheel's ``filename``, ``sha256`` and ``size`` (bytes), the ``url`` it came from and the ``folder`` on
    PYTHONPATH; ``disk_bytes``: what the folder takes."""

    version: str
    build: str
    python: str
    platform: str
    filename: str
    sha256: str
    size: int
    url: str
    folder: str
    disk_bytes: int = 0


def plan(build: str = "cpu", *, platform: str | None = None, python: str | None = None,
         lock: wheel_lock.Lock | None = None) -> wheel_lock.LockedFile:
    """The torch wheel to install here. Raises TorchInstallError naming the fix when the lock has none."""
    lock = lock or wheel_lock.load()
    platform = platform or wheel_lock.this_platform()
    python = python or wheel_lock.this_python()
    wheel = lock.torch_for(platform or "", python, build) if platform else None
    if wheel is None:
        raise TorchInstallError(
            f"Boost Depth has no {build} torch {lock.torch_version} for {platform or 'this platform'} with Python "
            f"{python} (it has: {', '.join(sorted({f.platform for f in lock.torch}))}; Pythons "
            f"{', '.join(lock.pythons)}): choose 'Other Interpreter' in the preferences and point it at a Python "
            "that has torch")
    return wheel


def site_dir(root: str | os.PathLike) -> Path:
    """The folder that goes on the engine's PYTHONPATH."""
    return Path(root) / CURRENT


def installed(root: str | os.PathLike | None) -> Installed | None:
    """What is installed under ``root``, or None."""
    if not root:
        return None
    record = site_dir(root) / RECORD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        return Installed(**data)
    except (OSError, ValueError, TypeError):
        return None


# ------------------------------------------------------------------------------------------- index pages
class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def index_entry(index: str, filename: str, timeout: float = 30.0) -> tuple[str, str | None]:
    """(address, sha256 or None) of ``filename`` on the PEP 503 page ``<index>/torch/``. Raises
    TorchInstallError when the page cannot be read or does not list the file."""
    page = f"{index.rstrip('/')}/torch/"
    try:
        request = urllib.request.Request(page, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            text = r.read().decode("utf-8", "replace")
    except (OSError, ValueError) as e:
        raise TorchInstallError(f"cannot read the package index {page} ({e}): check the address and the network, "
                                "or leave the Package Index preference empty for the official one") from e
    parser = _Anchors()
    parser.feed(text)
    for href in parser.hrefs:
        url, _, fragment = urllib.parse.urljoin(page, href).partition("#")
        if urllib.parse.unquote(url.rsplit("/", 1)[-1]) == filename:
            sha = fragment[len("sha256="):].lower() if fragment.startswith("sha256=") else None
            return url, sha
    raise TorchInstallError(f"the package index {page} does not list {filename}: the index must hold the build "
                            "this version of Boost Depth pins (see dependencies.lock.json)")


def resolve(wheel: wheel_lock.LockedFile, index: str | None = None) -> tuple[str, str]:
    """(address, sha256) to download ``wheel`` from: the lock's, checked against the index page when one is
    given or the lock's hash is open. Raises TorchInstallError on a hash disagreement."""
    url, sha = wheel.url, wheel.sha256
    page_index = index or (wheel.index if not wheel.sha256 else None)
    if page_index:
        url, page_sha = index_entry(page_index, wheel.filename)
        if sha and page_sha and page_sha != sha:
            raise TorchInstallError(
                f"the index {page_index} gives {wheel.filename} the SHA-256 {page_sha}, the lock {sha}: the file "
                "there is not the one Boost Depth was tested with; use the official index or fix the mirror")
        sha = sha or page_sha
    if not sha:
        raise TorchInstallError(f"no SHA-256 for {wheel.filename}: the index page did not give one, so the "
                                "download cannot be verified; use an index that lists hashes (PEP 503)")
    return url, sha


# ------------------------------------------------------------------------------------------- install
def _safe_extract(zf: zipfile.ZipFile, dest: Path, cancel: threading.Event | None) -> int:
    """Extract every member inside ``dest`` (refusing absolute paths and '..'), keeping execute bits.
    Returns the bytes written."""
    total = 0
    root = dest.resolve()
    for info in zf.infolist():
        target = (dest / info.filename).resolve()
        if root not in target.parents and target != root:
            raise TorchInstallError(f"the wheel holds an unsafe path {info.filename!r}; it is not a valid wheel")
        if cancel is not None and cancel.is_set():
            raise download.DownloadCancelled("cancelled while unpacking torch")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(target, mode)
        total += info.file_size
    return total


def install(wheel: wheel_lock.LockedFile, root: str | os.PathLike, *, index: str | None = None,
            progress: download.ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> Installed:
    """Download ``wheel`` (verified), unpack it next to ``root/current`` and switch it into place; an earlier
    install stays usable until the switch, and nothing half-unpacked is ever on the engine's path. The
    downloaded wheel is deleted afterwards (a ``.part`` of an interrupted download is kept for resuming)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    url, sha = resolve(wheel, index)
    dest = root / ".download" / wheel.filename
    result = download.fetch([url], dest, size=wheel.size, sha256=sha, progress=progress, cancel=cancel)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        with zipfile.ZipFile(result.path) as zf:
            written = _safe_extract(zf, staging, cancel)
        record = Installed(wheel.version, wheel.build, wheel.pythons[0], wheel.platform, wheel.filename, sha,
                           result.size, url, str(site_dir(root)), written)
        (staging / RECORD).write_text(json.dumps(asdict(record), indent=1), encoding="utf-8")
        _switch(staging, site_dir(root))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(root / ".download", ignore_errors=True)
    return record


def install_with_pip(requirement, root: str | os.PathLike, *, index: str | None = None, progress=None,
                     cancel: threading.Event | None = None) -> Installed:
    """A GPU build (``dependencies.TorchRequirement``, e.g. cu126) that the lock does not pin file by file: pip,
    with Blender's Python, installs torch and its CUDA/ROCm libraries (and nothing else) into a folder of its
    own, switched into place like :func:`install`. pip is never bootstrapped: a Python without pip gets an
    error naming the fix. ``progress`` receives ``dependencies.PipLine`` objects."""
    from . import dependencies

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        target = staging / "site"
        result = dependencies.install([requirement], target, extra_index_url=index, progress=progress,
                                      log_path=root / "pip.log", cancel=cancel, bootstrap_pip=False)
        if result.cancelled:
            raise download.DownloadCancelled("cancelled")
        if not result.ok:
            raise TorchInstallError(result.reason or f"pip failed (log: {root / 'pip.log'})")
        written = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        record = Installed(requirement.spec.split("==")[-1].split("+")[0], requirement.kind,
                           wheel_lock.this_python(), wheel_lock.this_platform() or "", requirement.spec, "", 0,
                           requirement.index_url or "PyPI", str(site_dir(root)), written)
        (target / RECORD).write_text(json.dumps(asdict(record), indent=1), encoding="utf-8")
        _switch(target, site_dir(root))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def _switch(staging: Path, current: Path) -> None:
    """Put ``staging`` at ``current`` (the old one moved aside first, removed after)."""
    old = None
    if current.exists():
        old = current.with_name(f".old-{os.getpid()}-{current.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(current, old)
    try:
        os.replace(staging, current)
    except OSError:
        if old is not None:
            os.replace(old, current)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def uninstall(root: str | os.PathLike) -> bool:
    """Remove the installed torch (and any download left); True when something was removed."""
    root = Path(root)
    if not root.exists():
        return False
    shutil.rmtree(root)
    return True
