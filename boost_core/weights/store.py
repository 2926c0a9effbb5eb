"""The model weight files Boost Depth can use: where to get them, how to check them, where they live.

The registry is data (:data:`REGISTRY`, one frozen :class:`WeightFile` per file); behaviour lives in
the functions below, which the ``weights`` command line, the Blender preferences and the estimation
command share. Nothing here imports torch or bpy.

Files live flat in one *models folder* (:func:`models_dir`). Beside a file ``F`` this module may
write:

* ``F.sha256`` — trust on first use (TOFU): for a file without a published SHA-256, the hash of its
  first verified copy (``sha256sum`` format); later copies must match it. Delete it to trust a new
  upstream file.
* ``F.verified`` — a JSON stamp (size, mtime, ctime, inode, SHA-256) written after hashing, so that
  :func:`status` stays cheap (no re-hash) until the file changes.
* ``F.part`` / ``F.part.json`` / ``F.lock`` — an unfinished download and its lock
  (see :mod:`boost_core.weights.download`).

Statuses: ``"missing"`` (no file), ``"ok"`` (size and hash verified), ``"corrupt"`` (wrong size or
hash), ``"unverified"`` (present, right size where known, not hashed yet).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import download as _dl
from .catalogue import WeightFile, get
from .download import DownloadError, Progress, ProgressCallback

Status = Literal["missing", "ok", "corrupt", "unverified"]

ENV_MODELS = "BOOST_DEPTH_MODELS"
ENV_MIRROR = "BOOST_DEPTH_MIRROR"
DOWNLOAD_COMMAND = "python -m boost_core weights"


class MissingWeightsError(FileNotFoundError):
    """A weight file is not in the models folder; the message says exactly how to get it."""

    def __init__(self, message: str, *, name: str = "", path: Path | None = None):
        super().__init__(message)
        self.name = name
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CorruptWeightsError(MissingWeightsError):
    """A weight file is present but has the wrong size or hash."""


class ManualDownloadRequired(DownloadError):
    """The file cannot be downloaded automatically; the message has the manual steps."""


# --------------------------------------------------------------------------------------------- lookup
def format_size(n: int | None) -> str:
    """``318268048`` -> ``"318.3 MB"`` (decimal units); ``None`` -> ``"unknown"``."""
    if n is None:
        return "unknown"
    return _dl.human_size(n)


# ---------------------------------------------------------------------------------------------- paths
def default_models_dir() -> Path:
    """``$BOOST_DEPTH_MODELS`` if set, else the per-user data folder.

    Linux: ``$XDG_DATA_HOME/boost-depth/models`` (``~/.local/share/...``); macOS:
    ``~/Library/Application Support/BoostDepth/models``; Windows: ``%APPDATA%\\BoostDepth\\models``.
    """
    env = os.environ.get(ENV_MODELS)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "BoostDepth" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "BoostDepth" / "models"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "boost-depth" / "models"


def models_dir(override: str | os.PathLike | None = None) -> Path:
    """``override`` when given (``~`` expanded), else :func:`default_models_dir`. Not created."""
    return _resolve_dir(override)


def _resolve_dir(override: str | os.PathLike | None) -> Path:
    # Separate from models_dir() because the functions below take a parameter of that name.
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    return default_models_dir()


def default_mirror() -> str | None:
    """``$BOOST_DEPTH_MIRROR`` or ``None``."""
    return os.environ.get(ENV_MIRROR) or None


def path_of(name: str | WeightFile, models_dir: str | os.PathLike | None = None) -> Path:
    """Where the file of ``name`` lives (whether or not it exists)."""
    return _resolve_dir(models_dir) / get(name).filename


def tofu_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def apply_mirror(url: str, mirror: str | None) -> str:
    """Replace the scheme and host of ``url`` by ``mirror``, keeping the path (and query).

    The mirror may carry a path prefix: ``apply_mirror("https://huggingface.co/a/b.pth",
    "http://models.studio.lan/hf")`` -> ``"http://models.studio.lan/hf/a/b.pth"``. A ``file://``
    mirror names a folder holding the same paths. ``None`` or ``""`` leaves ``url`` unchanged.
    """
    if not mirror:
        return url
    m = urllib.parse.urlsplit(mirror)
    if not m.scheme or (m.scheme != "file" and not m.netloc):
        raise ValueError(
            f"mirror {mirror!r} is not a base address; give scheme and host, e.g. "
            "http://models.example.lan/boost or file:///mnt/models-mirror"
        )
    u = urllib.parse.urlsplit(url)
    path = m.path.rstrip("/") + "/" + u.path.lstrip("/")
    return urllib.parse.urlunsplit((m.scheme, m.netloc, path, u.query, ""))


def source_urls(name: str | WeightFile, mirror: str | None = None) -> tuple[str, ...]:
    """The addresses :func:`download` tries, in order: the official ones, rewritten by ``mirror``."""
    wf = get(name)
    return tuple(dict.fromkeys(apply_mirror(u, mirror) for u in wf.urls))


# -------------------------------------------------------------------------------- instructions text
def instructions(name: str | WeightFile, models_dir: str | os.PathLike | None = None) -> str:
    """How to get the file of ``name`` into ``models_dir``: command (or manual steps) and licence."""
    wf = get(name)
    folder = _resolve_dir(models_dir)
    option = f" --models-dir {shlex.quote(str(folder))}"
    lines = []
    if wf.manual:
        lines.append(
            wf.manual_instructions.format(
                filename=wf.filename, models_dir=folder, command=DOWNLOAD_COMMAND, models_dir_option=option
            )
        )
    else:
        lines.append(f"Download it ({format_size(wf.size)}) with:")
        lines.append(f"    {DOWNLOAD_COMMAND} download {wf.name}{option}")
        lines.append(
            f"or, without internet, copy {wf.filename} (from {wf.urls[0]}) into {folder} and run "
            f"`{DOWNLOAD_COMMAND} verify {wf.name}{option}`."
        )
    lines.append(f"Licence: {wf.licence}. {wf.licence_note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- checking
@dataclass(frozen=True)
class Report:
    """What is known about one file: ``status``, a human ``detail``, bytes on disk (``None`` when
    missing), bytes of an unfinished download (``partial``) and the SHA-256 when known."""

    name: str
    path: Path
    status: Status
    detail: str
    size_on_disk: int | None
    partial: int
    sha256: str | None


def _stat_sig(path: Path) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _read_stamp(path: Path) -> dict | None:
    try:
        data = json.loads(stamp_path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_stamp(path: Path, digest: str) -> None:
    stamp = dict(_stat_sig(path), sha256=digest, checked=time.time())
    try:
        _atomic_write_text(stamp_path(path), json.dumps(stamp))
    except OSError:
        pass  # a read-only models folder still works, it just re-hashes


def recorded_sha256(path: Path) -> str | None:
    """The TOFU hash recorded beside ``path`` (``<file>.sha256``), or ``None``."""
    try:
        text = tofu_path(path).read_text().split()
    except OSError:
        return None
    if text and len(text[0]) == 64:
        return text[0].lower()
    return None


def _record_tofu(path: Path, digest: str) -> None:
    try:
        _atomic_write_text(tofu_path(path), f"{digest}  {path.name}\n")
    except OSError:
        pass  # read-only models folder: nothing to record into, the file is still usable


def expected_sha256(name: str | WeightFile, models_dir: str | os.PathLike | None = None) -> str | None:
    """The published SHA-256, else the TOFU record beside the file, else ``None``."""
    wf = get(name)
    return wf.sha256 or recorded_sha256(path_of(wf, models_dir))


def _judge(wf: WeightFile, digest: str, expected: str | None) -> str | None:
    """Why ``digest`` is wrong for ``wf``, or ``None`` when it is right."""
    if expected and digest != expected:
        return f"SHA-256 {digest[:12]}… differs from the expected {expected[:12]}…"
    if wf.sha256_prefix and not digest.startswith(wf.sha256_prefix):
        return f"SHA-256 {digest[:12]}… does not start with {wf.sha256_prefix}"
    return None


def inspect(
    name: str | WeightFile,
    models_dir: str | os.PathLike | None = None,
    full_check: bool = False,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Report:
    """Check the file of ``name``. Cheap by default (size + cached stamp); ``full_check`` hashes it,
    stamps the result and, for a file with no known hash, records TOFU."""
    wf = get(name)
    path = path_of(wf, models_dir)
    part = _dl.part_path(path)
    partial = part.stat().st_size if part.exists() else 0

    def report(status: Status, detail: str, size=None, digest=None) -> Report:
        return Report(wf.name, path, status, detail, size, partial, digest)

    try:
        sig = _stat_sig(path)
    except FileNotFoundError:
        detail = "not downloaded"
        if partial:
            of = f" of {format_size(wf.size)}" if wf.size else ""
            detail = f"not downloaded ({format_size(partial)}{of} so far; download resumes)"
        return report("missing", detail)
    if not os.path.isfile(path):
        return report("corrupt", f"{path} is not a file", sig["size"])
    size = sig["size"]
    if wf.size is not None and size != wf.size:
        return report("corrupt", f"size {size} bytes, expected {wf.size} (truncated or wrong file)", size)
    expected = wf.sha256 or recorded_sha256(path)
    if not full_check:
        stamp = _read_stamp(path)
        if stamp and all(stamp.get(k) == v for k, v in sig.items()) and isinstance(stamp.get("sha256"), str):
            why = _judge(wf, stamp["sha256"], expected)
            if why:
                return report("corrupt", why, size, stamp["sha256"])
            if expected or wf.sha256_prefix:
                return report("ok", "verified", size, stamp["sha256"])
        return report("unverified", "present, not checked yet (run verify)", size)
    digest = _dl.sha256_file(path, cancel=cancel, progress=progress).hexdigest()
    _write_stamp(path, digest)
    why = _judge(wf, digest, expected)
    if why:
        return report("corrupt", why, size, digest)
    if not expected:
        _record_tofu(path, digest)  # trust on first use: later copies must match this one
        return report("ok", "verified; hash recorded (no published hash)", size, digest)
    return report("ok", "verified", size, digest)


def status(
    name: str | WeightFile, models_dir: str | os.PathLike | None = None, full_check: bool = False
) -> Status:
    """``"missing" | "ok" | "corrupt" | "unverified"`` (see :func:`inspect`)."""
    return inspect(name, models_dir, full_check).status


def verify(
    name: str | WeightFile,
    models_dir: str | os.PathLike | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Status:
    """Hash the file and return its status (records TOFU for a file with no known hash)."""
    return inspect(name, models_dir, True, progress=progress, cancel=cancel).status


def locate(name: str | WeightFile, models_dir: str | os.PathLike | None = None) -> Path:
    """The verified path of ``name``'s file.

    Raises :class:`MissingWeightsError` (message: how to get it, and its licence) when absent, and
    :class:`CorruptWeightsError` when wrong. A present but never-checked file is hashed once here.
    """
    wf = get(name)
    folder = _resolve_dir(models_dir)
    rep = inspect(wf, folder)
    if rep.status == "unverified":
        rep = inspect(wf, folder, True)
    if rep.status == "ok":
        return rep.path
    if rep.status == "missing":
        raise MissingWeightsError(
            f"Model weights '{wf.name}' ({wf.title or wf.filename}) are missing: {rep.path} does not exist.\n"
            + instructions(wf, folder),
            name=wf.name,
            path=rep.path,
        )
    raise CorruptWeightsError(
        f"Model weights '{wf.name}' at {rep.path} are damaged: {rep.detail}.\n"
        "Delete the file and get it again (a new download replaces it):\n" + instructions(wf, folder),
        name=wf.name,
        path=rep.path,
    )


def locate_first(names, models_dir: str | os.PathLike | None = None) -> Path:
    """The verified path of the first available file among ``names`` (in the given order, e.g. a network's
    ``weights``); when none is there, the first name's :class:`MissingWeightsError` / :class:`CorruptWeightsError`."""
    first_error = None
    for name in names:
        try:
            return locate(name, models_dir)
        except MissingWeightsError as error:
            first_error = first_error or error
    raise first_error


# --------------------------------------------------------------------------------------------- fetch
def download(
    name: str | WeightFile,
    models_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    cancel: threading.Event | None = None,
    *,
    retries: int = 3,
    retry_wait: float = 1.0,
    lock_timeout: float | None = _dl.DEFAULT_LOCK_TIMEOUT,
) -> Path:
    """Make sure the file of ``name`` (a registry name or a :class:`WeightFile`) is in the models
    folder and verified; download it when it is not. Returns its path.

    ``mirror`` (a base URL, see :func:`apply_mirror`) replaces the official hosts. ``progress``
    receives :class:`boost_core.weights.download.Progress`. ``timeout`` is the socket timeout in seconds.
    Licence acceptance is the caller's job (see ``WeightFile.requires_acceptance``). Raises
    :class:`ManualDownloadRequired` for manual files and :class:`DownloadError` subclasses on failure
    (``e.hint`` says what to do).
    """
    wf = get(name)
    folder = _resolve_dir(models_dir)
    path = folder / wf.filename
    rep = inspect(wf, folder)
    if rep.status == "unverified":
        rep = inspect(wf, folder, True, progress=progress, cancel=cancel)
    if rep.status == "ok":
        return path
    if wf.manual or not wf.urls:
        raise ManualDownloadRequired(
            f"{wf.name} ({wf.filename}) cannot be downloaded automatically.\n" + instructions(wf, folder),
            hint=f"save the file as {path}",
        )
    expected = wf.sha256 or recorded_sha256(path)
    try:
        urls = source_urls(wf, mirror)
    except ValueError as e:
        raise DownloadError(str(e), hint="fix --mirror / BOOST_DEPTH_MIRROR") from e
    try:
        result = _dl.fetch(
            urls,
            path,
            size=wf.size,
            sha256=expected,
            sha256_prefix=wf.sha256_prefix,
            progress=progress,
            timeout=timeout,
            cancel=cancel,
            retries=retries,
            retry_wait=retry_wait,
            lock_timeout=lock_timeout,
        )
    except DownloadError as e:
        e.args = (f"{wf.name}: {e}",)
        if isinstance(e, _dl.NotFoundError) and mirror:
            paths = ", ".join(urllib.parse.urlsplit(u).path for u in wf.urls)
            e.hint = f"the mirror {mirror} has no copy; put {wf.filename} there at {paths}"
        elif isinstance(e, _dl.IntegrityError) and not wf.sha256 and expected:
            e.hint = (
                f"the file differs from the copy first downloaded (hash recorded in {tofu_path(path)}); "
                "if the new file is legitimate, delete that record and download again"
            )
        raise
    if not wf.sha256 and not expected:
        _record_tofu(path, result.sha256)
    _write_stamp(path, result.sha256)
    return path


__all__ = [
    "Report",
    "Status",
    "Progress",
    "DownloadError",
    "MissingWeightsError",
    "CorruptWeightsError",
    "ManualDownloadRequired",
    "default_models_dir",
    "models_dir",
    "default_mirror",
    "path_of",
    "apply_mirror",
    "source_urls",
    "instructions",
    "inspect",
    "status",
    "verify",
    "locate",
    "download",
    "format_size",
    "recorded_sha256",
    "expected_sha256",
]
