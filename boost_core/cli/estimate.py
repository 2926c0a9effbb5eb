"""The estimate command: ``python -m boost_core IMAGE [IMAGE ...] --net ... --mode ... --output DIR``.

With ``--progress json`` stdout carries only JSON objects, one per line (the protocol the Blender extension
reads: start / stage / progress / partial / result / error / done, the last with the job's peak memory:
``peak_rss_mib`` and, on CUDA, ``cuda_peak_mib``); human-readable messages go to stderr. Stage, progress and
partial events carry ``elapsed_s`` (seconds since the image started) and, once measurable, ``eta_s``.
``--partial`` (final mode) publishes intermediate maps: ``{"event": "partial", "image", "path", "done": k,
"of": n}`` with k = patches merged so far (0 and of = null for the whole-image map; the last has k = n).
Exit codes: 0 all images done, 1 some image failed, 2 bad arguments or setup (weights, device), 130 cancelled.

Every output name is planned before any work (``plan_job``): an output that is an input of the job, two images
with one output, or an unwritable / non-folder ``--output`` refuse the job with exit 2. The same file listed twice
is processed once. Writes are all-or-nothing per image (``image_io.write_depth_files``).

Folders, frame patterns, movies, ``--frames``, ``--job`` (and ``--ray``, ``--temporal``) run as a resumable job:
``cli.job_command`` and ``boost_core.footage``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from ..host import peak_memory
from ..host.devices import resolve_device
from ..host.atomic_files import file_identity
from ..host.signals import terminate_as_interrupt
from ..algorithm.progressive import DEFAULT_INTERVAL

EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    from ..image_io import FORMATS
    from ..networks import registry
    from ..algorithm.pipeline import MODES

    parser = argparse.ArgumentParser(
        prog="python -m boost_core",
        description="Boosted monocular depth (Miangoleh, Dille et al., CVPR 2021). "
                    "Subcommands: weights, merge, resolution, evaluate, prepare-dataset, train, align "
                    "(e.g. `python -m boost_core weights list`).")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="photos (png, jpg, tif, ...), folders (their images), frame patterns (shot_####.png, "
                             "shot_%%04d.png) or movies (.mp4 .mov .avi .mkv .webm .m4v; frames numbered from 1)")
    parser.add_argument("--net", default="midas_v2", choices=registry.names(), help="base network")
    parser.add_argument("--mode", default="final", type=str.lower, choices=MODES,
                        help="r0 / r20: whole-image double estimate; final: plus local boosting (default); "
                             "single: the network's own pass, no boosting")
    parser.add_argument("--base-weights", type=Path, help="base network checkpoint (default: models folder)")
    parser.add_argument("--merge-weights", type=Path, help="merge network latest_net_G.pth (default: models folder)")
    parser.add_argument("--models-dir", type=Path, help="models folder (default: BOOST_DEPTH_MODELS or per-user)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--max-res", type=_positive_float("--max-res"), default=None,
                        help="cap on the boosted long side in px")
    parser.add_argument("--output-size", choices=("input", "full"), default="input",
                        help="input: map at the photo's size (reference default); full: at the boosted size")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=_positive_int("--threads"), default=None,
                        help="CPU threads for torch (default: all cores)")
    parser.add_argument("--plain", action="store_true",
                        help="run the networks as loaded, without the default parity-safe optimisations (BatchNorm "
                             "folding, channels-last, Winograd convolutions, freed-memory reuse): the benchmarks' "
                             "baseline, slower")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="bf16 (CPU/CUDA) or fp16 (CUDA/MPS) autocast: faster, breaks parity (default fp32)")
    parser.add_argument("--batch", type=_positive_int("--batch"), default=None,
                        help="patches per batched network call in final mode (default: 2 on CPU, 4 on GPUs; 1 = one "
                             "patch at a time as the reference; same output)")
    parser.add_argument("--format", default="png16", type=_formats(FORMATS),
                        help=f"comma-separated subset of {','.join(FORMATS)} (default png16)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                        help="auto: a bar on a terminal; json: JSON lines on stdout")
    parser.add_argument("--partial", action="store_true",
                        help="final mode: publish intermediate depth maps while patches are merged (the "
                             "whole-image map first, then the canvas at most every --partial-interval seconds, "
                             "float32 EXR written atomically; a 'partial' event each with --progress json). Off "
                             "by default; the result is the same either way")
    parser.add_argument("--partial-dir", type=Path, default=None,
                        help="folder for the intermediate maps <stem>.exr (default OUTPUT/.partial; implies "
                             "--partial)")
    parser.add_argument("--partial-interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help=f"minimum seconds between intermediate maps (default {DEFAULT_INTERVAL:g}); "
                             "publishing never takes more than 3%% of the job's time")
    job = parser.add_argument_group(
        "jobs (footage and farms)",
        "A folder, a frame pattern or a movie among the inputs (or --job) makes a resumable job: its state lives in "
        "OUTPUT/.boost_depth_job; running the same command again skips frames already written and verified.")
    job.add_argument("--frames", type=_frame_list, default=None, metavar="LIST",
                     help="frames of patterns and movies: ranges and lists like 1-100,120 (default: all); chunks "
                          "of one job (1-100 here, 101-200 elsewhere) may run at once into one --output")
    job.add_argument("--job", action="store_true", help="keep a job file for plain photos too")
    job.add_argument("--retries", type=_non_negative_int("--retries"), default=2, metavar="N",
                     help="retry a failed frame up to N times in this run (default 2)")
    job.add_argument("--start-over", action="store_true",
                     help="forget the job's recorded state and settings (outputs are kept, and replaced when redone)")
    job.add_argument("--temporal", action="store_true",
                     help="footage: align each frame's depth to its predecessors on static regions (less flicker)")
    job.add_argument("--ray", metavar="ADDRESS", default=None,
                     help="run the job on a Ray cluster (ADDRESS, e.g. 10.0.0.5:6379, or auto); needs "
                          "`pip install -r requirements-ray.txt`")
    job.add_argument("--workers", type=_positive_int("--workers"), default=None,
                     help="with --ray: actors (each keeps its networks loaded; default one per cluster node)")
    return parser


def _frame_list(text: str) -> list[int]:
    from ..footage.frames import parse_frames

    try:
        return parse_frames(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--frames: "))


def _non_negative_int(option):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0; give e.g. {option} 2")
        return value
    return parse


def _positive_float(option):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a positive number of pixels; give e.g. {option} 2000, or leave it out")
        return value
    return parse


def _positive_int(option):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number of at least 1; give e.g. {option} 2, or leave it out for the default")
        return value
    return parse


def _formats(known):
    def parse(text: str) -> list[str]:
        formats = [f.strip().lower() for f in text.split(",") if f.strip()]
        bad = [f for f in formats if f not in known]
        if bad or not formats:
            raise argparse.ArgumentTypeError(f"unknown format {', '.join(bad) or text!r}; choose from {','.join(known)}")
        return list(dict.fromkeys(formats))
    return parse


class Reporter:
    """Emits protocol events: JSON lines on stdout, or a progress bar / messages on stderr."""

    def __init__(self, style: str):
        if style == "auto":
            style = "bar" if sys.stderr.isatty() else "none"
        self.style = style
        self.out = None  # where JSON lines go (None: sys.stdout)
        self.image = None
        self._stage = ""
        self._count = ""

    def emit(self, event: dict) -> None:
        if self.image is not None and "image" not in event and event["event"] not in ("done",):
            event = {"event": event["event"], "image": self.image, **{k: v for k, v in event.items() if k != "event"}}
        if self.style == "json":
            out = self.out or sys.stdout
            out.write(json.dumps(event) + "\n")
            out.flush()
        elif self.style == "bar":
            self._bar(event)

    def message(self, text: str) -> None:
        """One line for a person, on stderr (always: failures must be visible without JSON)."""
        if self.style == "bar":
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def _bar(self, event: dict) -> None:
        kind = event["event"]
        name = Path(event.get("image") or "").name
        if kind == "stage":
            self._stage = event["stage"].replace("_", " ")
            sys.stderr.write(f"\r\033[K{name}: {self._stage}{_times(event)}")
        elif kind == "progress":
            width = 30
            filled = int(width * min(max(float(event.get("fraction") or 0.0), 0.0), 1.0))
            if "done" in event:
                self._count = f" {event['done']}/{event['of']}"
            elif event.get("stage") == "whole_image":
                self._count = f" step {event['step']}/{event['steps']}"
            stage = "patches" if event.get("stage", "patches") == "patches" else event["stage"].replace("_", " ")
            sys.stderr.write(f"\r\033[K{name}: {stage} [{'#' * filled}{'.' * (width - filled)}]"
                             f"{self._count}{_times(event)}")
        elif kind == "result":
            sys.stderr.write(f"\r\033[K{Path(event['image']).name}: done (R={event['R']}) -> "
                             f"{', '.join(str(p) for p in event['outputs'].values())}\n")
        sys.stderr.flush()


def _times(event: dict) -> str:
    """'  12 s elapsed, ~40 s left' for the bar (the left part only once the engine can estimate it)."""
    if "elapsed_s" not in event:
        return ""
    text = f"  {_seconds(event['elapsed_s'])} elapsed"
    if event.get("eta_s") is not None:
        text += f", ~{_seconds(event['eta_s'])} left"
    return text


def _seconds(value: float) -> str:
    value = int(round(float(value)))
    return f"{value // 60} min {value % 60:02d} s" if value >= 60 else f"{value} s"


def estimate_main(argv: list[str]) -> int:
    terminate_as_interrupt()
    parser = build_parser()
    args = parser.parse_args(argv)
    reporter = Reporter(args.progress)
    from ..footage.frames import needs_job

    if args.job or args.frames or args.ray or args.temporal or args.start_over or needs_job(args.images):
        from .job_command import job_main

        return job_main(args, parser, reporter)
    ok = failed = 0
    device = None
    try:
        try:
            images, names, notes = plan_job(args)
        except PlanError as error:
            parser.error(str(error))  # exit 2 with the usage line, before any work
        for note in notes:
            reporter.message(note)
        try:
            networks, device = _setup(args)
        except Exception as error:  # weights missing/corrupt, device unavailable: nothing can run
            reporter.emit({"event": "error", "image": None, "message": str(error), "hint": getattr(error, "hint", "")})
            reporter.emit({"event": "done", "ok": 0, "failed": len(images), **peak_memory.job_memory()})
            reporter.message(f"error: {error}")
            return EXIT_USAGE
        cancel = threading.Event()
        total = len(images)
        for index, image_path in enumerate(images):
            reporter.image = str(image_path)
            reporter.emit({"event": "start", "index": index, "total": total})
            try:
                _process_one(Path(image_path), names[index], args, networks, device, reporter, cancel)
                ok += 1
            except KeyboardInterrupt:
                raise
            except Exception as error:
                failed += 1
                hint = getattr(error, "hint", "")
                reporter.emit({"event": "error", "message": str(error), "hint": hint})
                reporter.message(f"{image_path}: error: {error}")
    except KeyboardInterrupt:
        reporter.image = None
        reporter.emit({"event": "done", "ok": ok, "failed": failed, "cancelled": True,
                       **peak_memory.job_memory(device)})
        reporter.message("cancelled")
        return EXIT_CANCELLED
    reporter.image = None
    memory = peak_memory.job_memory(device)
    reporter.emit({"event": "done", "ok": ok, "failed": failed, **memory})
    if reporter.style != "json" and total > 1:
        reporter.message(f"{ok} done, {failed} failed; {peak_memory.describe(memory)}".rstrip("; "))
    return EXIT_FAILED if failed else 0


class PlanError(ValueError):
    """The job cannot start: an output name collides with an input or another image's output, or the output
    folder cannot be written. Reported up front (exit 2) before any network is loaded."""



def _check_output_folder(folder: Path) -> None:
    """The output folder (or, when it does not exist yet, its nearest existing parent) must be a writable folder.

    Probed by creating and removing a temp entry, so it also holds for root and read-only file systems."""
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        if probe == folder:
            raise PlanError(f"--output {folder} is a file, not a folder; give a folder (it is created if needed)")
        raise PlanError(f"--output {folder} cannot be created: {probe} is a file; give another folder")
    try:
        if probe == folder:
            fd, name = tempfile.mkstemp(prefix=".boost-depth-probe-", dir=probe)
            os.close(fd)
            os.unlink(name)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".boost-depth-probe-", dir=probe))
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = folder if probe == folder else probe
        raise PlanError(f"--output {folder} is not writable ({where}: {reason}); give a folder you can write to")


def plan_job(args) -> tuple[list[str], list[str], list[str]]:
    """Every output name of the job, decided before any work: (images, output stem per image, notes).

    The same file listed more than once is processed once (a note says so). Raises PlanError when an output
    would be one of the job's inputs, when two images would write the same output, or when --output is not a
    writable folder."""
    from ..image_io import output_paths

    _check_output_folder(args.output)
    images: list[str] = []
    notes: list[str] = []
    seen_inputs: dict = {}
    for image in args.images:
        key = file_identity(Path(image))
        if key in seen_inputs:
            notes.append(f"{image}: listed more than once (same file as {seen_inputs[key]}); processed once")
            continue
        seen_inputs[key] = image
        images.append(image)
    stems: list[str] = []
    owners: dict = {}
    for image in images:
        stem = Path(image).stem
        for target in output_paths(stem, args.output, args.format).values():
            key = file_identity(target)
            if key in seen_inputs:
                raise PlanError(f"the output {target} of {image} would overwrite the input {seen_inputs[key]}; "
                                "choose another --output folder")
            if key in owners:
                raise PlanError(f"{image} and {owners[key]} would both write {target}; rename one of them "
                                "or run them with separate --output folders")
            owners[key] = image
        stems.append(stem)
    return images, stems, notes


def _setup(args):
    import torch

    from ..algorithm.pipeline import load_networks

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    from ..speed.acceleration import PLAIN, Acceleration

    options = Acceleration(precision=args.precision)
    if args.plain:
        options = replace(PLAIN, precision=args.precision)
    networks = load_networks(args.net, args.base_weights, args.merge_weights, models_dir=args.models_dir,
                             device=device, with_merge=args.mode != "single", acceleration=options)
    return networks, device


def _process_one(path: Path, stem, args, networks, device, reporter, cancel) -> None:
    from ..image_io import output_paths, write_depth_files
    from ..algorithm.progressive import JobClock, PartialPublisher, partial_path
    from ..footage.frames import Frame
    from ..footage.runner import compute_frame, engine_options

    paths = output_paths(stem, args.output, args.format)
    for target in paths.values():
        if os.path.lexists(target) and not args.overwrite:
            raise FileExistsError(f"{target} already exists; pass --overwrite to replace it, or pick another --output")
    clock = JobClock(reporter.emit)
    publisher = None
    if (args.partial or args.partial_dir) and args.mode == "final":
        from ..networks import registry

        publisher = PartialPublisher(partial_path(args.output, stem, args.partial_dir), clock,
                                     interval=args.partial_interval, kind=registry.get(args.net).output_kind)
    result = compute_frame(Frame(path, stem), engine_options(args), networks, device, progress=clock, cancel=cancel,
                           partial=publisher)
    clock({"event": "stage", "stage": "writing"})
    written = write_depth_files(result.depth, paths)
    info = dict(result.info, elapsed_s=round(clock.elapsed, 3))
    reporter.emit({"event": "result", "outputs": {fmt: str(p) for fmt, p in written.items()}, **info})
