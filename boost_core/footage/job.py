"""The job file: a job's settings and each frame's state, beside its outputs, so a job can be resumed.

Layout (in the output folder DIR)::

    DIR/.boost_depth_job/job.json            {"version": 1, "settings": {...}, "inputs": [...], "created": ...}
    DIR/.boost_depth_job/frames/<name>.json  one per frame (name = the output stem)
    DIR/.boost_depth_job/raw/<name>.npy      --temporal: the frame's raw float32 depth before alignment

``job.json`` holds the settings that change the result and is written once (created exclusively, so two
processes starting chunks of one job together agree on it). A frame file is
``{"name", "input", "state", "outputs": {fmt: {"path", "size", "sha256"}}, "attempts", "error", ...}`` with state
``writing`` (its outputs are being replaced: they belong to the job, whatever is there), ``done`` (outputs written,
sizes in bytes and sha256 recorded), ``failed`` (``attempts`` and the last ``error``) or ``stale`` (written by a job
that was started over: to be redone, its outputs still belong to the job). Every file is written atomically (temp
name in the same folder + ``os.replace``), so several machines working on different frames of one shared DIR never
write the same file and a kill at any moment leaves either the old or the new state.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ..host import atomic_files

JOB_FOLDER = ".boost_depth_job"
VERSION = 1
# The settings that change the result (output names and bytes); anything else (device, threads, batch, progress)
# may change between runs of one job.
SETTINGS = ("net", "mode", "max_res", "output_size", "formats", "precision", "temporal")
OPTIONS = {"net": "--net", "mode": "--mode", "max_res": "--max-res", "output_size": "--output-size",
           "formats": "--format", "precision": "--precision", "temporal": "--temporal"}


class SettingsChanged(ValueError):
    """The job in DIR was made with other settings; the message names them and the fix (--start-over)."""


def settings_of(args) -> dict:
    """The result-changing settings of an estimate command line (argparse namespace)."""
    return {"net": args.net, "mode": args.mode, "max_res": args.max_res, "output_size": args.output_size,
            "formats": list(args.format), "precision": args.precision, "temporal": bool(args.temporal)}


sha256_of = atomic_files.sha256_file  # SHA-256 (hex) of a file's bytes


def write_json_atomically(path: Path, data: dict) -> None:
    """``data`` as JSON at ``path``: a temp in the same folder, fsynced, then one rename (whole or absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        try:
            os.unlink(name)
        except OSError:
            pass
        raise


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


class Job:
    """The job of one output folder: its settings and the state of each frame (by output stem)."""

    def __init__(self, output: Path):
        self.output = Path(output)
        self.folder = self.output / JOB_FOLDER
        self.frames_dir = self.folder / "frames"
        self.raw_dir = self.folder / "raw"
        self.settings: dict = {}

    # -- the job file -----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, output: Path, settings: dict, inputs: list[str], start_over: bool = False) -> "Job":
        """The job in ``output`` with these settings, created if there is none.

        SettingsChanged when one exists with other settings (unless ``start_over``: then its state is forgotten,
        every frame it wrote is marked ``stale`` so this job may replace its outputs; no output is deleted)."""
        job = cls(output)
        job.frames_dir.mkdir(parents=True, exist_ok=True)
        record = {"version": VERSION, "settings": settings, "inputs": [str(i) for i in inputs],
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        existing = job._create_or_read(record)
        if existing is not None and existing.get("settings") != settings:
            if not start_over:
                raise SettingsChanged(job._difference(existing.get("settings") or {}, settings))
            job._forget()
            write_json_atomically(job.folder / "job.json", record)
        elif existing is not None and start_over:
            job._forget()
        job.settings = settings
        return job

    def _create_or_read(self, record: dict) -> dict | None:
        """Create job.json exclusively (a hard link of a complete temp: fails when one exists); None when this
        call created it, else the existing record."""
        target = self.folder / "job.json"
        fd, name = tempfile.mkstemp(prefix=".job.json.", suffix=".part", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(name, target)
                return None
            except FileExistsError:
                pass
            except OSError:  # no hard links (FAT, some network shares): exclusive create + rename
                if not target.exists():
                    os.replace(name, target)
                    return None
        finally:
            try:
                os.unlink(name)
            except OSError:
                pass
        existing = _read_json(target)
        if existing is None:  # damaged job.json (cannot happen with atomic writes; a hand edit): start it anew
            write_json_atomically(target, record)
        return existing

    def _difference(self, old: dict, new: dict) -> str:
        changed = [k for k in SETTINGS if old.get(k) != new.get(k)]
        detail = ", ".join(f"{OPTIONS[k]} {_show(old.get(k))} -> {_show(new.get(k))}" for k in changed)
        return (f"the job in {self.output} was made with other settings ({detail}); run it with its settings to "
                f"resume it, or pass --start-over to start a new job there (outputs already written are kept until "
                f"they are redone)")

    def _forget(self) -> None:
        """Start over: frames become ``stale`` (their outputs still belong to the job); raw depth is removed."""
        for path in sorted(self.frames_dir.glob("*.json")):
            state = _read_json(path) or {}
            write_json_atomically(path, {"name": path.stem, "state": "stale",
                                         "outputs": state.get("outputs") or {}, "attempts": 0})
        shutil.rmtree(self.raw_dir, ignore_errors=True)

    # -- frames -----------------------------------------------------------------------------------------------
    def frame_file(self, name: str) -> Path:
        return self.frames_dir / f"{name}.json"

    def state(self, name: str) -> dict | None:
        return _read_json(self.frame_file(name))

    def raw_path(self, name: str) -> Path:
        return self.raw_dir / f"{name}.npy"

    def is_done(self, name: str, label: str, targets: dict[str, Path]) -> bool:
        """Whether the frame is recorded ``done`` from the same input with these outputs, and every output (raw
        depth included with --temporal) exists with its recorded size and sha256.

        The input is compared by file name (and movie frame number), not by path: machines running chunks of one
        job may mount the footage at different places, and a relative path names the same file as an absolute one."""
        state = self.state(name)
        if not state or state.get("state") != "done" or Path(str(state.get("input"))).name != Path(label).name:
            return False
        recorded = state.get("outputs") or {}
        if set(recorded) != set(targets):
            return False
        for key, target in targets.items():
            entry = recorded[key]
            if entry.get("path") != self._relative(target):
                return False
            try:
                if os.path.getsize(target) != entry.get("size") or sha256_of(target) != entry.get("sha256"):
                    return False
            except OSError:
                return False
        return True

    def owns(self, name: str, target: Path) -> bool:
        """Whether ``target`` was written (or is being written) by this job for frame ``name``: it may replace it."""
        state = self.state(name) or {}
        return self._relative(target) in {e.get("path") for e in (state.get("outputs") or {}).values()}

    def mark_writing(self, name: str, label: str, targets: dict[str, Path], attempts: int) -> None:
        self._write(name, {"name": name, "input": label, "state": "writing", "attempts": attempts,
                           "outputs": {k: {"path": self._relative(t)} for k, t in targets.items()}})

    def mark_done(self, name: str, label: str, targets: dict[str, Path], attempts: int, info: dict) -> None:
        outputs = {k: {"path": self._relative(t), "size": os.path.getsize(t), "sha256": sha256_of(t)}
                   for k, t in targets.items()}
        self._write(name, {"name": name, "input": label, "state": "done", "attempts": attempts,
                           "outputs": outputs, **info})

    def mark_failed(self, name: str, label: str, attempts: int, error: str) -> None:
        previous = self.state(name) or {}
        self._write(name, {"name": name, "input": label, "state": "failed", "attempts": attempts, "error": error,
                           "outputs": {k: {"path": e.get("path")} for k, e in (previous.get("outputs") or {}).items()
                                       if e.get("path")}})

    def _write(self, name: str, data: dict) -> None:
        data.update(host=socket.gethostname(), pid=os.getpid(), time=time.time())
        write_json_atomically(self.frame_file(name), data)

    def _relative(self, target: Path) -> str:
        try:
            return str(Path(target).relative_to(self.output))
        except ValueError:
            return str(target)

    def states(self) -> dict[str, dict]:
        """Every frame file's state, by name."""
        return {p.stem: s for p in sorted(self.frames_dir.glob("*.json")) if (s := _read_json(p)) is not None}


def _show(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "(none)" if value is None else str(value)
