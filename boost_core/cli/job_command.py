"""The estimate command as a resumable job (``boost_core.footage``): folders, frame patterns, movies, ``--frames``
chunks, ``--job``, ``--retries``, ``--start-over``, ``--temporal``, ``--ray``.

Events (``--progress json``) as for photos (start / stage / progress / result / error / done) with ``name`` (the
output stem) and ``frame`` (its number, patterns and movies) added, plus ``skipped`` for a frame already done and
verified, and before ``done`` one ``job`` event: ``{"event": "job", "folder", "frames", "done", "skipped",
"failed": [{"image", "name", "error", "attempts"}]}``. Exit codes: 0 every frame of this run is done (now or
before), 1 any failed, 2 bad arguments, changed settings or setup, 130 cancelled (SIGINT / SIGTERM).
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..host import peak_memory
from ..host.atomic_files import file_identity
from .estimate import EXIT_CANCELLED, EXIT_FAILED, EXIT_USAGE, PlanError, _check_output_folder, _setup


def job_main(args, parser, reporter) -> int:
    from ..footage.frames import expand_sources
    from ..footage.job import Job, SettingsChanged, settings_of
    from ..footage.runner import JobSummary, LocalBackend, engine_options, run_frames

    device = None
    summary = JobSummary()
    problems: list = []
    try:
        if args.temporal:
            _temporal_module(parser)
        if args.ray:
            from ..footage.ray_runner import ray_available

            why = ray_available()
            if why:
                parser.error(why)
        notes: list[str] = []
        frames, problems = expand_sources([str(i) for i in args.images], args.frames, notes)
        for note in notes:
            reporter.message(note)
        try:
            _check_output_folder(args.output)
            _check_collisions(frames, args)
        except PlanError as error:
            parser.error(str(error))
        try:
            job = Job.open(args.output, settings_of(args), [str(i) for i in args.images], start_over=args.start_over)
        except SettingsChanged as error:
            return _refuse(reporter, str(error), len(frames))
        for name, why in problems:
            reporter.emit({"event": "error", "image": name, "message": why, "hint": ""})
            reporter.message(f"{name}: error: {why}")
        options = engine_options(args)
        cancel = threading.Event()
        if args.ray and not _has_work(job, frames, args):
            backend = LocalBackend(options, None, None, cancel)  # nothing to compute: no cluster needed
        elif args.ray:
            from ..footage.ray_runner import RayBackend, RaySetupError

            try:
                backend = RayBackend(args.ray, options, workers=args.workers, reporter=reporter)
            except RaySetupError as error:
                return _refuse(reporter, str(error), len(frames))
        else:
            try:
                networks, device = _setup(args) if _has_work(job, frames, args) else (None, None)
            except Exception as error:  # weights missing/corrupt, device unavailable: nothing can run
                return _refuse(reporter, str(error), len(frames), hint=getattr(error, "hint", ""))
            backend = LocalBackend(options, networks, device, cancel)
        try:
            run_frames(job, frames, backend, reporter, formats=args.format, retries=args.retries,
                       overwrite=args.overwrite, temporal=args.temporal, summary=summary)
        finally:
            close = getattr(backend, "close", None)
            if close:
                close()
        aligned = all((job.state(f.name) or {}).get("aligned") for f in frames)
        if args.temporal and not summary.failed and not problems and (summary.done or not aligned):
            _align(job, frames, args, reporter)
    except KeyboardInterrupt:
        reporter.image = None
        reporter.emit({"event": "done", "ok": len(summary.done) + len(summary.skipped), "failed": len(summary.failed),
                       "cancelled": True, **peak_memory.job_memory(device)})
        reporter.message("cancelled")
        return EXIT_CANCELLED
    return _finish(job, frames, summary, problems, reporter, device)


def _refuse(reporter, message: str, total: int, hint: str = "") -> int:
    reporter.image = None
    reporter.emit({"event": "error", "image": None, "message": message, "hint": hint})
    reporter.emit({"event": "done", "ok": 0, "failed": total, **peak_memory.job_memory()})
    reporter.message(f"error: {message}")
    return EXIT_USAGE


def _has_work(job, frames, args) -> bool:
    """Whether any frame still needs the networks (an all-done job finishes without loading them)."""
    from ..footage.runner import targets_of

    return any(not job.is_done(f.name, f.label, targets_of(job, f, args.format, args.temporal)) for f in frames)


def _check_collisions(frames, args) -> None:
    """An output that is one of the inputs, or two frames with one output: PlanError (exit 2) before any work."""
    from ..image_io import output_paths

    inputs = {file_identity(f.path): str(f.path) for f in frames}
    owners: dict = {}
    for frame in frames:
        for target in output_paths(frame.name, args.output, args.format).values():
            key = file_identity(target)
            if key in inputs:
                raise PlanError(f"the output {target} of {frame.label} would overwrite the input {inputs[key]}; "
                                "choose another --output folder")
            if key in owners:
                raise PlanError(f"{frame.label} and {owners[key]} would both write {target}; rename one of them "
                                "or run them with separate --output folders")
            owners[key] = frame.label


def _temporal_module(parser):
    """boost_core.footage.temporal (issue 22 part 2), or exit 2 naming what is missing."""
    try:
        from ..footage import temporal
    except ImportError as error:
        parser.error(f"--temporal needs boost_core/footage/temporal.py (temporal alignment), which this copy of "
                     f"boost_core lacks ({error}); update boost_core, or leave --temporal out")
    if not hasattr(temporal, "align_job"):
        parser.error("--temporal needs boost_core.footage.temporal.align_job, which this copy of boost_core lacks; "
                     "update boost_core, or leave --temporal out")
    return temporal


def _align(job, frames, args, reporter) -> None:
    """--temporal: align the frames' raw depth in frame order (temporal.align_job writes the outputs), then record
    the aligned outputs' sizes and hashes so the next run verifies them."""
    from ..footage import temporal
    from ..footage.runner import targets_of
    from ..image_io import output_paths

    ordered = sorted(frames, key=lambda f: (str(f.path), f.number or 0))
    reporter.emit({"event": "stage", "stage": "temporal_alignment"})
    figures = temporal.align_job(job.folder, [(f.read, job.raw_path(f.name), output_paths(f.name, job.output,
                                                                                          args.format))
                                              for f in ordered])
    for frame in ordered:
        state = job.state(frame.name) or {}
        job.mark_done(frame.name, frame.label, targets_of(job, frame, args.format, True), state.get("attempts", 1),
                      {"R": state.get("R"), "seconds": state.get("seconds"), "aligned": True})
    if isinstance(figures, dict):
        reporter.emit({"event": "flicker", **figures})
        reporter.message("flicker: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


def _finish(job, frames, summary, problems, reporter, device) -> int:
    failed = [{"image": f.label, "name": f.name, "error": why,
               "attempts": int((job.state(f.name) or {}).get("attempts") or 0)} for f, why in summary.failed]
    failed += [{"image": name, "name": Path(name).stem, "error": why, "attempts": 0} for name, why in problems]
    reporter.image = None
    reporter.emit({"event": "job", "folder": str(job.folder), "frames": len(frames) + len(problems),
                   "done": len(summary.done), "skipped": len(summary.skipped), "failed": failed})
    memory = peak_memory.job_memory(device)
    ok = len(summary.done) + len(summary.skipped)
    reporter.emit({"event": "done", "ok": ok, "failed": len(failed), **memory})
    reporter.message(f"job {job.output}: {len(frames) + len(problems)} frame(s): {len(summary.done)} done, "
                     f"{len(summary.skipped)} already done, {len(failed)} failed")
    for entry in failed:
        reporter.message(f"  failed: {entry['image']}: {entry['error']}")
    return EXIT_FAILED if failed else 0
