"""The dependency lock (``dependencies.lock.json`` at the extension's root): every wheel the extension bundles
and every torch build it can download, each pinned by file name, address, size and SHA-256.

Read by ``scripts/fetch_wheels.py`` (fills ``wheels/`` and the manifest's ``wheels`` list) and by
:mod:`boost_core.host.torch_install` (the consented torch download). Standard library only; imports neither torch
nor bpy.

Platforms are Blender's names: ``linux-x64``, ``windows-x64``, ``macos-arm64``, ``macos-x64``. Pythons are
``"3.11"`` (Blender 4.2 to 5.0) and ``"3.13"`` (Blender 5.1 and later).
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "dependencies.lock.json"
LOCK_FILE = Path(__file__).resolve().parents[2] / LOCK_NAME


@dataclass(frozen=True)
class LockedFile:
    """One wheel of the lock.

    ``name``/``version``: the distribution; ``platform``: a Blender platform name, or ``"any"`` for a pure
    wheel; ``pythons``: the Python versions (``"3.11"``...) it serves; ``size`` in bytes and ``sha256`` (64 hex)
    may be ``None`` only for torch builds whose host could not be read when the lock was written (the hash is
    then taken from the package index page at download time); ``index``: the PEP 503 index the file is listed
    on (its page gives the hash), ``None`` for PyPI files; ``build``: torch's build kind (``"cpu"``) or ``""``.
    """

    name: str
    version: str
    filename: str
    url: str
    platform: str
    pythons: tuple[str, ...]
    size: int | None
    sha256: str | None
    index: str | None = None
    build: str = ""
    note: str = ""

    @classmethod
    def from_json(cls, item: dict) -> "LockedFile":
        return cls(item["name"], item["version"], item["filename"], item["url"], item["platform"],
                   tuple(item["pythons"]), item.get("size"), item.get("sha256"), item.get("index"),
                   item.get("build", ""), item.get("note", ""))

    def to_json(self) -> dict:
        out = {"name": self.name, "version": self.version, "filename": self.filename, "url": self.url,
               "platform": self.platform, "pythons": list(self.pythons), "size": self.size, "sha256": self.sha256}
        if self.index:
            out["index"] = self.index
        if self.build:
            out["build"] = self.build
        if self.note:
            out["note"] = self.note
        return out

    def serves(self, platform: str, python: str) -> bool:
        return self.platform in ("any", platform) and python in self.pythons


@dataclass(frozen=True)
class Lock:
    """The whole lock: ``platforms`` and ``pythons`` supported, ``requirements`` (name -> pinned version of
    what is bundled), ``bundled`` wheels (into ``wheels/``) and ``torch`` downloads."""

    platforms: tuple[str, ...]
    pythons: tuple[str, ...]
    requirements: dict
    torch_version: str
    bundled: tuple[LockedFile, ...]
    torch: tuple[LockedFile, ...]

    def bundled_for(self, platform: str, python: str | None = None) -> list[LockedFile]:
        """The bundled wheels a platform's zip carries (for one Python, or all)."""
        return [f for f in self.bundled
                if f.platform in ("any", platform) and (python is None or python in f.pythons)]

    def torch_for(self, platform: str, python: str, build: str = "cpu") -> LockedFile | None:
        """The torch wheel of ``build`` for this platform and Python, or None when the lock has none."""
        for f in self.torch:
            if f.build == build and f.serves(platform, python):
                return f
        return None

    def wheel_paths(self) -> list[str]:
        """The manifest's ``wheels`` entries: ``./wheels/<file>`` for every bundled file, sorted, unique."""
        return sorted({f"./wheels/{f.filename}" for f in self.bundled})


def load(path: str | os.PathLike | None = None) -> Lock:
    """Read the lock (default: the extension's). Raises FileNotFoundError / ValueError naming the fix."""
    p = Path(path) if path is not None else LOCK_FILE
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p} is missing: it ships with Boost Depth; reinstall the extension") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON ({e}); restore it from the extension's zip or git") from None
    return Lock(tuple(data["platforms"]), tuple(data["pythons"]), dict(data["requirements"]),
                data["torch_version"], tuple(LockedFile.from_json(i) for i in data["bundled"]),
                tuple(LockedFile.from_json(i) for i in data["torch"]))


def dump(lock: Lock, path: str | os.PathLike) -> None:
    """Write the lock as indented JSON (atomically: temp file + rename)."""
    p = Path(path)
    data = {
        "about": "Pinned wheels of Boost Depth: 'bundled' go into wheels/ (python scripts/fetch_wheels.py) and "
                 "the manifest; 'torch' are the builds the extension downloads on request. Written by "
                 "scripts/fetch_wheels.py --update-lock.",
        "platforms": list(lock.platforms),
        "pythons": list(lock.pythons),
        "requirements": lock.requirements,
        "torch_version": lock.torch_version,
        "bundled": [f.to_json() for f in lock.bundled],
        "torch": [f.to_json() for f in lock.torch],
    }
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def this_platform(platform_tag: str | None = None) -> str | None:
    """Blender's name for this machine's platform (``linux-x64``...), or None when Boost Depth has no wheels
    for it. ``platform_tag``: a ``sysconfig.get_platform()`` value, for tests."""
    tag = (platform_tag or sysconfig.get_platform()).lower()
    if tag.startswith("linux") and tag.endswith(("x86_64", "amd64")):
        return "linux-x64"
    if tag.startswith("linux") and tag.endswith(("aarch64", "arm64")):
        return "linux-arm64"
    if tag.startswith("win") and tag.endswith("amd64"):
        return "windows-x64"
    if tag.startswith("macosx"):
        return "macos-arm64" if tag.endswith("arm64") else "macos-x64"
    return None


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
