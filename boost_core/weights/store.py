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
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import download as _dl
from .download import DownloadError, Progress, ProgressCallback

Status = Literal["missing", "ok", "corrupt", "unverified"]

ENV_MODELS = "BOOST_DEPTH_MODELS"
ENV_MIRROR = "BOOST_DEPTH_MIRROR"
ENV_REGISTRY = "BOOST_DEPTH_REGISTRY"  # a studio's JSON file of extra / overriding WeightFile entries
DOWNLOAD_COMMAND = "python -m boost_core weights"


@dataclass(frozen=True, kw_only=True)
class WeightFile:
    """One weight file.

    ``urls``: official addresses, tried in order (empty for manual downloads). ``size``: bytes, or
    ``None`` when unknown. ``sha256``: 64 lowercase hex digits when published, else ``None`` (TOFU).
    ``sha256_prefix``: leading hex digits carried by the file name (torch.hub style), checked too.
    ``licence``: short name; ``licence_note``: what it means for the user, with a link.
    ``manual``: the file cannot be fetched automatically; ``manual_instructions`` says how to get
    it (``{models_dir}`` and ``{filename}`` are filled in by :func:`instructions`).
    ``networks``: names of the networks (``boost_core.networks``) that load this file.
    ``requires_acceptance``: the licence restricts use (academic / non-commercial): show it and ask
    before downloading. ``title``: a human name for menus.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    licence: str
    licence_note: str
    networks: tuple[str, ...]
    sha256_prefix: str | None = None
    manual: bool = False
    manual_instructions: str = ""
    requires_acceptance: bool = False
    title: str = ""


_HF_ANNOTATORS = (
    "https://huggingface.co/lllyasviel/Annotators/resolve/5bc80eec2b4fddbb743c1e9329e3bd94b2cae14d"
)
_MIT_MIDAS = "MIT licence (https://github.com/isl-org/MiDaS/blob/master/LICENSE)."
_CC_BY_NC = (
    "Creative Commons Attribution-NonCommercial 4.0: non-commercial use only "
    "(https://creativecommons.org/licenses/by-nc/4.0/)."
)

_ENTRIES = (
    WeightFile(
        name="merge_net",
        title="Merge network (BMD pix2pix)",
        filename="latest_net_G.pth",
        urls=(
            f"{_HF_ANNOTATORS}/latest_net_G.pth",
            "https://sfu.ca/~yagiz/CVPR21/latest_net_G.pth",
        ),
        size=318268048,
        sha256="50ec735d74ed6499562d898f41b49343e521808b8dae589aa3c2f5c9ac9f7462",
        licence="Academic use only",
        licence_note=(
            "The merge network of 'Boosting Monocular Depth Estimation Models to High-Resolution' "
            "(Miangoleh, Dille et al., CVPR 2021) is licensed for academic, non-commercial use only, and "
            "the method may be covered by patents. Read "
            "https://github.com/compphoto/BoostingMonocularDepth/blob/main/LICENSE before downloading; "
            "commercial use needs the authors' permission."
        ),
        networks=("merge_net",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="midas_v2",
        title="MiDaS v2",
        filename="model-f46da743.pt",
        urls=("https://github.com/intel-isl/MiDaS/releases/download/v2/model-f46da743.pt",),
        size=None,
        sha256=None,
        sha256_prefix="f46da743",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("midas_v2",),
    ),
    WeightFile(
        name="midas_v21",
        title="MiDaS v2.1 (same network as v2)",
        filename="midas_v21-f6b98070.pt",
        urls=(
            "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_384.pt",
            "https://github.com/AlexeyAB/MiDaS/releases/download/midas_dpt/midas_v21-f6b98070.pt",
        ),
        size=422509849,
        sha256="f6b980704cfd7259c7cc2b058c2f160159c55e84b3b6c08331b4156a84629f70",
        sha256_prefix="f6b98070",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("midas_v2",),
    ),
    WeightFile(
        name="leres",
        title="LeReS ResNeXt-101",
        filename="res101.pth",
        urls=(f"{_HF_ANNOTATORS}/res101.pth",),
        size=530760553,
        sha256="1d696b2ef3e8336b057d0c15bc82d2fecef821bfebe5ef9d7671a5ec5dde520b",
        licence="Non-commercial, no redistribution",
        licence_note=(
            "LeReS weights (Adobe Research licence): non-commercial use only, no redistribution. Read "
            "https://github.com/aim-uofa/AdelaiDepth/blob/main/LeReS/LICENSE before downloading."
        ),
        networks=("leres",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="sgr",
        title="SGR (Structure-Guided Ranking Loss)",
        filename="model.pth.tar",
        urls=(),
        size=None,
        sha256=None,
        licence="Non-commercial research only",
        licence_note=(
            "SGR weights: non-commercial research use only "
            "(https://github.com/KexianHust/Structure-Guided-Ranking-Loss)."
        ),
        manual=True,
        manual_instructions=(
            "The SGR weights are shared only through Google Drive, which cannot be downloaded "
            "automatically.\n"
            "  1. Open https://drive.google.com/file/d/1p8c8-nUTNry5usQmGdTC2TrwWrp3dQ0y/view in a "
            "browser and download the file.\n"
            "  2. Save it as {filename} in {models_dir}\n"
            "  3. Run: {command} verify sgr{models_dir_option}\n"
            "     (this records its SHA-256, so later corruption is caught)."
        ),
        networks=("sgr",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="dpt_beit_large_512",
        title="MiDaS 3.1 BEiT-L 512",
        filename="dpt_beit_large_512.pt",
        urls=("https://github.com/isl-org/MiDaS/releases/download/v3_1/dpt_beit_large_512.pt",),
        size=1581966003,
        sha256="9e9e900747e9e8b3112df716979219836a27716277b3d0dc53889cbba8b82328",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("dpt_beit_large_512",),
    ),
    WeightFile(
        name="dpt_hybrid_384",
        title="MiDaS 3.0 DPT-Hybrid",
        filename="dpt_hybrid_384.pt",
        urls=(
            "https://github.com/isl-org/MiDaS/releases/download/v3/dpt_hybrid_384.pt",
            "https://github.com/intel-isl/DPT/releases/download/1_0/dpt_hybrid-midas-501f0c75.pt",
        ),
        size=492757791,
        sha256="501f0c75b3bca7daec6b3682c5054c09b366765aef6fa3a09d03a5cb4b230853",
        sha256_prefix="501f0c75",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("dpt_hybrid_384",),
    ),
    WeightFile(
        name="dpt_large_384",
        title="MiDaS 3.0 DPT-Large",
        filename="dpt_large_384.pt",
        urls=("https://github.com/isl-org/MiDaS/releases/download/v3/dpt_large_384.pt",),
        size=1376378527,
        sha256="2f21e586477d90cb9624c7eef5df7891edca49a1c4795ee2cb631fd4daa6ca69",
        sha256_prefix="2f21e586",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("dpt_large_384",),
    ),
    WeightFile(
        name="depth_anything_v2_small",
        title="Depth Anything V2 Small",
        filename="depth_anything_v2_vits.pth",
        # Revision pinned (Hugging Face commit); the SHA-256 below matches the file at it.
        urls=(
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Small/resolve/"
            "03876f8651c73a60fe4c2c48294e09fcb6838fcf/depth_anything_v2_vits.pth",
        ),
        size=99218434,
        sha256="715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378",
        licence="Apache-2.0",
        licence_note="Apache License 2.0 (https://huggingface.co/depth-anything/Depth-Anything-V2-Small).",
        networks=("depth_anything_v2_small",),
    ),
    WeightFile(
        name="depth_anything_v2_base",
        title="Depth Anything V2 Base",
        filename="depth_anything_v2_vitb.pth",
        # No pinned revision known; the SHA-256 check rejects any other file served at "main".
        urls=(
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Base/resolve/main/"
            "depth_anything_v2_vitb.pth",
        ),
        size=389961218,
        sha256="0d2b7002e62d39d655571c371333340bd88f67ab95050c03591555aa05645328",
        licence="CC-BY-NC-4.0",
        licence_note="Depth Anything V2 Base weights: " + _CC_BY_NC,
        networks=("depth_anything_v2_base",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="depth_anything_v2_large",
        title="Depth Anything V2 Large",
        filename="depth_anything_v2_vitl.pth",
        # No pinned revision known; the SHA-256 check rejects any other file served at "main".
        urls=(
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Large/resolve/main/"
            "depth_anything_v2_vitl.pth",
        ),
        size=1341395338,
        sha256="a7ea19fa0ed99244e67b624c72b8580b7e9553043245905be58796a608eb9345",
        licence="CC-BY-NC-4.0",
        licence_note="Depth Anything V2 Large weights: " + _CC_BY_NC,
        networks=("depth_anything_v2_large",),
        requires_acceptance=True,
    ),
)

REGISTRY: Mapping[str, WeightFile] = types.MappingProxyType({w.name: w for w in _ENTRIES})
"""Every known weight file by registry name, in display order (read-only)."""


# ------------------------------------------------------------------------------------------- errors
class UnknownWeightsError(KeyError):
    """A name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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
_studio_cache: dict = {}


def studio_entries() -> dict[str, WeightFile]:
    """Entries from the JSON file named by ``BOOST_DEPTH_REGISTRY`` (none when unset).

    For studios that host their own files (a fine-tuned merge network, a mirror with other names):
    ``{"weights": [{"name": ..., "filename": ..., "urls": [...], "sha256": ..., "size": ..., "licence": ...,
    "networks": [...]}, ...]}``. An entry with an official name replaces it. Read again when the file changes.
    """
    path = os.environ.get(ENV_REGISTRY)
    if not path:
        return {}
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as error:
        raise UnknownWeightsError(f"{ENV_REGISTRY}={path}: cannot read it ({error.strerror}); fix or unset it") from None
    key = (path, mtime)
    if key not in _studio_cache:
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))["weights"]
            entries = {}
            for row in rows:
                entry = WeightFile(
                    name=row["name"], filename=row["filename"], urls=tuple(row.get("urls", ())),
                    size=row.get("size"), sha256=row.get("sha256"), sha256_prefix=row.get("sha256_prefix"),
                    licence=row.get("licence", "see your studio"), licence_note=row.get("licence_note", ""),
                    manual=bool(row.get("manual", False)), manual_instructions=row.get("manual_instructions", ""),
                    networks=tuple(row.get("networks", ())), requires_acceptance=bool(row.get("requires_acceptance")),
                    title=row.get("title", row["name"]))
                entries[entry.name] = entry
        except (ValueError, KeyError, TypeError) as error:
            raise UnknownWeightsError(
                f"{ENV_REGISTRY}={path} is not a weights registry file ({error!r}); expected "
                '{"weights": [{"name": ..., "filename": ..., "urls": [...], "sha256": ...}]}') from None
        _studio_cache.clear()
        _studio_cache[key] = entries
    return _studio_cache[key]


def registry() -> Mapping[str, WeightFile]:
    """The official registry with the studio's entries (``BOOST_DEPTH_REGISTRY``) added or replacing."""
    extra = studio_entries()
    return {**REGISTRY, **extra} if extra else REGISTRY


def names() -> tuple[str, ...]:
    """Registry names in display order."""
    return tuple(registry())


def get(name: str | WeightFile) -> WeightFile:
    """The :class:`WeightFile` called ``name`` (a WeightFile is returned as it is)."""
    if isinstance(name, WeightFile):
        return name
    entries = registry()
    try:
        return entries[name]
    except KeyError:
        raise UnknownWeightsError(
            f"unknown model weights {name!r}; known names: {', '.join(entries)}"
        ) from None


def format_size(n: int | None) -> str:
    """``318268048`` -> ``"318.3 MB"`` (decimal units); ``None`` -> ``"unknown"``."""
    if n is None:
        return "unknown"
    return _dl._human(n)


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
    "REGISTRY",
    "registry",
    "studio_entries",
    "WeightFile",
    "Report",
    "Status",
    "Progress",
    "DownloadError",
    "MissingWeightsError",
    "CorruptWeightsError",
    "ManualDownloadRequired",
    "UnknownWeightsError",
    "names",
    "get",
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
