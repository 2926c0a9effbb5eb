"""The estimate command: ``python -m boost_core IMAGE [IMAGE ...] --net ... --mode ... --output DIR``.

With ``--progress json`` stdout carries only JSON objects, one per line (the protocol the Blender extension
reads: start / stage / progress / partial / result / error / done, the last with the job's peak memory:
``peak_rss_mib`` and, on CUDA, ``cuda_peak_mib``); human-readable messages go to stderr. Stage, progress and
partial events carry ``elapsed_s`` (seconds since the image started) and, once measurable, ``eta_s``.
``--partial`` (final mode) publishes intermediate maps: ``{"event": "partial", "image", "path", "done": k,
"of": n}`` with k = patches merged so far (0 and of = null for the whole-image map; the last has k = n).
Exit codes: 0 all images done, 1 some image failed, 2 bad arguments or setup (weights, device), 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from ..host import peak_memory
from ..host.devices import resolve_device
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
                    "Subcommands: weights, merge, resolution, evaluate, prepare-dataset, train "
                    "(e.g. `python -m boost_core weights list`).")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photos (png, jpg, tif, ...)")
    parser.add_argument("--net", default="midas_v2", choices=registry.names(), help="base network")
    parser.add_argument("--mode", default="final", type=str.lower, choices=MODES,
                        help="r0 / r20: whole-image double estimate; final: plus local boosting (default); "
                             "single: the network's own pass, no boosting")
    parser.add_argument("--base-weights", type=Path, help="base network checkpoint (default: models folder)")
    parser.add_argument("--merge-weights", type=Path, help="merge network latest_net_G.pth (default: models folder)")
    parser.add_argument("--models-dir", type=Path, help="models folder (default: BOOST_DEPTH_MODELS or per-user)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--max-res", type=float, default=None, help="cap on the boosted long side in px")
    parser.add_argument("--output-size", choices=("input", "full"), default="input",
                        help="input: map at the photo's size (reference default); full: at the boosted size")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    parser.add_argument("--plain", action="store_true",
                        help="run the networks as loaded, without the default parity-safe optimisations (BatchNorm "
                             "folding, channels-last, Winograd convolutions, freed-memory reuse): the benchmarks' "
                             "baseline, slower")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="bf16 (CPU/CUDA) or fp16 (CUDA/MPS) autocast: faster, breaks parity (default fp32)")
    parser.add_argument("--batch", type=int, default=None,
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
    return parser


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
        self.image = None
        self._stage = ""
        self._count = ""

    def emit(self, event: dict) -> None:
        if self.image is not None and "image" not in event and event["event"] not in ("done",):
            event = {"event": event["event"], "image": self.image, **{k: v for k, v in event.items() if k != "event"}}
        if self.style == "json":
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
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
    args = build_parser().parse_args(argv)
    reporter = Reporter(args.progress)
    terminate_as_interrupt()
    try:
        networks, device = _setup(args)
    except Exception as error:  # weights missing/corrupt, device unavailable: nothing can run
        reporter.emit({"event": "error", "image": None, "message": str(error), "hint": getattr(error, "hint", "")})
        reporter.emit({"event": "done", "ok": 0, "failed": len(args.images), **peak_memory.job_memory()})
        reporter.message(f"error: {error}")
        return EXIT_USAGE
    ok = failed = 0
    cancel = threading.Event()
    names = _planned_outputs(args)
    total = len(args.images)
    try:
        for index, image_path in enumerate(args.images):
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


def _planned_outputs(args) -> list:
    """Output stem per image, or an Exception to report for that image (duplicate stem)."""
    seen: dict[str, str] = {}
    plan = []
    for image in args.images:
        stem = Path(image).stem
        if stem in seen:
            plan.append(ValueError(f"its output name {stem!r} is already used by {seen[stem]}; "
                                   "rename one of them or run them with separate --output folders"))
        else:
            seen[stem] = str(image)
            plan.append(stem)
    return plan


def _process_one(path: Path, stem, args, networks, device, reporter, cancel) -> None:
    from ..image_io import output_paths, read_image, write_depth_files
    from ..algorithm.pipeline import boost
    from ..algorithm.progressive import JobClock, PartialPublisher, partial_path

    if isinstance(stem, Exception):
        raise stem
    paths = output_paths(stem, args.output, args.format)
    source = path.resolve()
    for target in paths.values():
        if target.resolve() == source:
            raise ValueError(f"writing {target} would overwrite the input image; choose another --output folder")
        if target.exists() and not args.overwrite:
            raise FileExistsError(f"{target} already exists; pass --overwrite to replace it, or pick another --output")
    start = time.perf_counter()
    clock = JobClock(reporter.emit)
    publisher = None
    if (args.partial or args.partial_dir) and args.mode == "final":
        from ..networks import registry

        publisher = PartialPublisher(partial_path(args.output, stem, args.partial_dir), clock,
                                     interval=args.partial_interval, kind=registry.get(args.net).output_kind)
    rgb = read_image(path)
    result = boost(rgb, args.net, args.mode, args.max_res, networks=networks, device=device,
                   output_size=args.output_size, progress=clock, cancel=cancel, max_batch=args.batch,
                   partial=publisher)
    clock({"event": "stage", "stage": "writing"})
    written = write_depth_files(result.depth, paths)
    reporter.emit({
        "event": "result", "outputs": {fmt: str(p) for fmt, p in written.items()}, "R": result.R,
        "factor": result.factor, "kind": result.kind, "net": result.net, "mode": result.mode,
        "shape": list(result.depth.shape), "patches": len(result.patches), "boosted": result.boosted,
        "warnings": result.warnings, "seconds": round(time.perf_counter() - start, 3),
        "elapsed_s": round(clock.elapsed, 3),
    })
