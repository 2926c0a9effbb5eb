"""Runs a job's frames: skip those already done and verified, compute the others (in this process, or on Ray via
``ray_runner``), write each frame's outputs all-or-nothing and record its state in the job file, retry failures.

A backend turns frames into depth: ``backend.process(frames, reporter) -> iterator of (frame, outcome)`` with
``outcome`` a ``FrameDepth`` or the exception that made the frame fail. Outputs are written here only, by the
process that owns the job file (the Ray driver, or the single process), so every backend gives the same files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .frames import Frame
from .job import Job

# What a backend needs to set up and run the engine (argparse names; everything that is not about files).
ENGINE_OPTIONS = ("net", "mode", "max_res", "output_size", "device", "threads", "plain", "precision", "batch",
                  "base_weights", "merge_weights", "models_dir")


def engine_options(args) -> dict:
    """The engine settings of an estimate command line as a plain dict (picklable: sent to Ray actors)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in ((k, getattr(args, k, None)) for k in ENGINE_OPTIONS)}


@dataclass
class FrameDepth:
    """A frame's result: ``depth`` float32 (H, W) relative depth as the outputs store it; ``info`` the result
    event's fields (R, factor, kind, net, mode, shape, patches, boosted, warnings, seconds, elapsed_s)."""

    depth: object
    info: dict


def load_engine(options: dict):
    """(networks, device) for these engine options (``cli.estimate._setup``)."""
    from ..cli.estimate import _setup

    return _setup(_namespace(options))


def _namespace(options: dict) -> SimpleNamespace:
    ns = SimpleNamespace(**{k: options.get(k) for k in ENGINE_OPTIONS})
    for key in ("base_weights", "merge_weights", "models_dir"):
        if getattr(ns, key):
            setattr(ns, key, Path(getattr(ns, key)))
    return ns


def compute_frame(frame: Frame, options: dict, networks, device, progress=None, cancel=None,
                  partial=None) -> FrameDepth:
    """Read the frame and boost it: the depth map float32 (H, W) and the result fields."""
    import numpy as np

    from ..algorithm.pipeline import boost
    from ..algorithm.progressive import JobClock

    start = time.perf_counter()
    clock = progress if progress is not None else JobClock(lambda event: None)
    warnings: list[str] = []
    rgb = frame.read(warnings=warnings)
    result = boost(rgb, options["net"], options["mode"], options.get("max_res"), networks=networks, device=device,
                   output_size=options.get("output_size") or "input", progress=clock, cancel=cancel,
                   max_batch=options.get("batch"), partial=partial)
    info = {"R": result.R, "factor": result.factor, "kind": result.kind, "net": result.net, "mode": result.mode,
            "shape": list(result.depth.shape), "patches": len(result.patches), "boosted": result.boosted,
            "warnings": warnings + list(result.warnings), "seconds": round(time.perf_counter() - start, 3),
            "elapsed_s": round(getattr(clock, "elapsed", time.perf_counter() - start), 3)}
    return FrameDepth(np.asarray(result.depth, np.float32), info)


class LocalBackend:
    """Frames computed one after the other in this process, networks loaded once."""

    def __init__(self, options: dict, networks, device, cancel):
        self.options, self.networks, self.device, self.cancel = options, networks, device, cancel

    def process(self, frames: list[Frame], reporter, index_of):
        from ..algorithm.progressive import JobClock

        for frame in frames:
            reporter.image = frame.label
            reporter.emit({"event": "start", "index": index_of[frame.name], "total": len(index_of),
                           **_frame_fields(frame)})
            try:
                outcome = compute_frame(frame, self.options, self.networks, self.device,
                                        progress=JobClock(reporter.emit), cancel=self.cancel)
            except KeyboardInterrupt:
                raise
            except Exception as error:  # noqa: BLE001 - one bad frame must not stop the job
                outcome = error
            yield frame, outcome


def _frame_fields(frame: Frame) -> dict:
    return {"frame": frame.number, "name": frame.name} if frame.number is not None else {"name": frame.name}


@dataclass
class JobSummary:
    """What a run did: frames ``done`` now, ``skipped`` (already done and verified), ``failed`` [(frame, error)]."""

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    attempts: dict = field(default_factory=dict)


def targets_of(job: Job, frame: Frame, formats, temporal: bool) -> dict[str, Path]:
    """Every file the frame writes: {format: DIR/<name><suffix>} and, with --temporal, {"raw": its raw depth}."""
    from ..image_io import output_paths

    targets = output_paths(frame.name, job.output, formats)
    if temporal:
        targets["raw"] = job.raw_path(frame.name)
    return targets


def run_frames(job: Job, frames: list[Frame], backend, reporter, *, formats, retries: int, overwrite: bool,
               temporal: bool = False, summary: JobSummary | None = None) -> JobSummary:
    """Run every frame of ``frames`` that is not done yet; at most ``1 + retries`` attempts per frame. ``summary``
    (filled as frames finish, so a cancel can still report them) is returned."""
    summary = JobSummary() if summary is None else summary
    index_of = {frame.name: i for i, frame in enumerate(frames)}
    todo: list[Frame] = []
    for frame in frames:
        targets = targets_of(job, frame, formats, temporal)
        if job.is_done(frame.name, frame.label, targets):
            summary.skipped.append(frame)
            reporter.image = frame.label
            reporter.emit({"event": "skipped", **_frame_fields(frame),
                           "outputs": {k: str(v) for k, v in targets.items() if k != "raw"},
                           "reason": "already done and verified"})
            continue
        foreign = [t for t in targets.values() if os.path.lexists(t) and not job.owns(frame.name, t)]
        if foreign and not overwrite:
            error = FileExistsError(f"{foreign[0]} already exists and was not written by this job; pass "
                                    "--overwrite to replace it, or pick another --output")
            _fail(job, frame, error, summary, reporter, attempts=(job.state(frame.name) or {}).get("attempts", 0))
            continue
        todo.append(frame)
    previous = {f.name: int((job.state(f.name) or {}).get("attempts") or 0) for f in todo}
    for round_ in range(1 + max(0, retries)):
        if not todo:
            break
        again = []
        for frame, outcome in backend.process(todo, reporter, index_of):
            summary.attempts[frame.name] = summary.attempts.get(frame.name, 0) + 1
            attempts = previous[frame.name] + summary.attempts[frame.name]
            reporter.image = frame.label
            if isinstance(outcome, FrameDepth):
                try:
                    _write_frame(job, frame, outcome, formats, temporal, attempts, reporter, summary)
                    continue
                except KeyboardInterrupt:
                    raise
                except Exception as error:  # noqa: BLE001 - a failed write fails this frame only
                    outcome = error
            _fail(job, frame, outcome, None, reporter, attempts)
            again.append(frame)
        todo = again
        if todo and round_ < retries:
            reporter.message(f"retrying {len(todo)} failed frame(s) (attempt {round_ + 2} of {retries + 1})")
    for frame in todo:
        summary.failed.append((frame, (job.state(frame.name) or {}).get("error", "failed")))
    reporter.image = None
    return summary


def _write_frame(job: Job, frame: Frame, result: FrameDepth, formats, temporal, attempts, reporter, summary) -> None:
    """Write the frame's outputs (all-or-nothing), record it done, count it, then announce it (in that order: a
    cancel after the result event still counts the frame in the cancelled job's done event)."""
    from ..image_io import output_paths, write_depth_files

    reporter.emit({"event": "stage", "stage": "writing"})
    targets = targets_of(job, frame, formats, temporal)
    job.mark_writing(frame.name, frame.label, targets, attempts)
    if temporal:
        write_depth_files(result.depth, {"npy": targets["raw"]})
    written = write_depth_files(result.depth, output_paths(frame.name, job.output, formats))
    job.mark_done(frame.name, frame.label, targets, attempts,
                  {"R": result.info.get("R"), "seconds": result.info.get("seconds")})
    summary.done.append(frame)
    reporter.emit({"event": "result", **_frame_fields(frame),
                   "outputs": {fmt: str(p) for fmt, p in written.items()}, **result.info})


def _fail(job: Job, frame: Frame, error: BaseException, summary, reporter, attempts: int) -> None:
    message = str(error) or type(error).__name__
    job.mark_failed(frame.name, frame.label, attempts, message)
    reporter.image = frame.label
    reporter.emit({"event": "error", **_frame_fields(frame), "message": message,
                   "hint": getattr(error, "hint", ""), "attempt": attempts})
    reporter.message(f"{frame.label}: error: {message}")
    if summary is not None:
        summary.failed.append((frame, message))
