"""``python -m boost_core merge``: Boost Your Own Depth on two maps or on folders of pairs (see ``tools.byod``).

    python -m boost_core merge --low LOW --high HIGH --output OUT [--merge-weights PATH]
                               [--output-size low|1024] [--device auto|cpu|cuda|mps]
    python -m boost_core merge --low LOW_DIR --high HIGH_DIR --output OUT_DIR [--format png16|exr|npy]
    python -m boost_core merge --data-dir DIR --output OUT_DIR      # DIR/low-res and DIR/high-res
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..host.atomic_files import file_identity
from ..tools.byod import INPUT_SUFFIXES, OUTPUT_SIZES, MergeInputError, load_merge_network, merge_files

SUFFIX_FORMATS = {".png": "png16", ".exr": "exr", ".npy": "npy"}
FORMAT_SUFFIXES = {"png16": ".png", "exr": ".exr", "npy": ".npy"}
EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130


@dataclass
class Job:
    """One merge: two input files and the output file (its format from its suffix)."""

    name: str
    low: Path
    high: Path
    output: Path | None
    problem: str | None = None

    @property
    def format(self) -> str:
        return SUFFIX_FORMATS[self.output.suffix.lower()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m boost_core merge",
        description="Boost Your Own Depth: merge a low-resolution depth map (consistent structure) with a "
                    "high-resolution one (details) of the same scene using the merge network. Inputs: 16/8-bit "
                    "PNG, TIFF, EXR, NPY or PFM, read at full precision.")
    parser.add_argument("--low", type=Path, help="low-resolution map, or a folder of them")
    parser.add_argument("--high", type=Path, help="high-resolution map, or a folder of them (paired by file stem)")
    parser.add_argument("--data-dir", type=Path,
                        help="folder holding low-res/ and high-res/ (the reference's layout); "
                             "instead of --low and --high")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="output file (.png = 16-bit, .exr, .npy), or a folder in folder mode")
    parser.add_argument("--format", choices=tuple(FORMAT_SUFFIXES), default="png16",
                        help="output format in folder mode (default png16)")
    parser.add_argument("--merge-weights", type=Path,
                        help="merge network latest_net_G.pth (default: the models folder's merge_net)")
    parser.add_argument("--models-dir", type=Path, help="models folder (default: BOOST_DEPTH_MODELS or per-user)")
    parser.add_argument("--output-size", choices=OUTPUT_SIZES, default="low",
                        help="low: the low-resolution map's size (reference default); 1024: the 1024x1024 square")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    parser.add_argument("--json", action="store_true",
                        help="stdout carries JSON lines (result / error / done events) instead of text")
    return parser


def plan_jobs(args) -> list[Job]:
    """The merges asked for, each with its output path or the problem that prevents it.

    Raises MergeInputError for a usage problem that concerns the whole command.
    """
    if args.data_dir is not None:
        if args.low is not None or args.high is not None:
            raise MergeInputError("give either --data-dir or --low and --high, not both")
        low, high = args.data_dir / "low-res", args.data_dir / "high-res"
        for folder in (low, high):
            if not folder.is_dir():
                raise MergeInputError(f"{folder} is not a folder; --data-dir must hold low-res/ and high-res/")
    elif args.low is None or args.high is None:
        raise MergeInputError("give --low and --high (files or folders), or --data-dir")
    else:
        low, high = args.low, args.high
    if low.is_file() and high.is_file():
        suffix = args.output.suffix.lower()
        if suffix not in SUFFIX_FORMATS:
            raise MergeInputError(f"cannot tell the output format from {args.output.name!r}: end it with "
                                  f"{', '.join(SUFFIX_FORMATS)} (16-bit PNG, EXR, NPY)")
        if args.output.is_dir():
            raise MergeInputError(f"--output {args.output} is a folder; give a file name such as merged.png")
        return [Job(low.stem, low, high, args.output)]
    if low.is_dir() and high.is_dir():
        if args.output.exists() and not args.output.is_dir():
            raise MergeInputError(f"--output {args.output} is a file; in folder mode it must be a folder")
        return _pair_folders(low, high, args.output, FORMAT_SUFFIXES[args.format])
    for path, name in ((low, "--low"), (high, "--high")):
        if not path.exists():
            raise MergeInputError(f"{name} {path} does not exist")
    raise MergeInputError("--low and --high must both be files or both be folders")


def _depth_files(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in INPUT_SUFFIXES:
            found.setdefault(path.stem, []).append(path)
    return found


def _pair_folders(low_dir: Path, high_dir: Path, out_dir: Path, suffix: str) -> list[Job]:
    lows, highs = _depth_files(low_dir), _depth_files(high_dir)
    if not lows:
        raise MergeInputError(f"no depth map ({', '.join(INPUT_SUFFIXES)}) in {low_dir}")
    jobs = []
    for stem in sorted(lows):
        low = lows[stem][0]
        candidates = highs.get(stem, [])
        job = Job(stem, low, candidates[0] if candidates else high_dir / stem, out_dir / f"{stem}{suffix}")
        if len(lows[stem]) > 1:
            job.problem = f"several low-res maps named {stem}.*: {', '.join(p.name for p in lows[stem])}"
        elif not candidates:
            job.problem = f"no high-res map named {stem}.* in {high_dir}"
        elif len(candidates) > 1:
            job.problem = f"several high-res maps named {stem}.*: {', '.join(p.name for p in candidates)}"
        jobs.append(job)
    return jobs


def check_outputs(jobs: list[Job], overwrite: bool) -> None:
    """Raise MergeInputError when an output would replace an input (never allowed) or, without ``overwrite``,
    an existing file, or when two merges would write the same file."""
    inputs = {file_identity(p) for job in jobs for p in (job.low, job.high) if p.exists()}
    seen: set = set()
    for job in jobs:
        if job.problem:
            continue
        target = file_identity(job.output)
        if target in inputs:
            raise MergeInputError(f"writing {job.output} would overwrite an input file; choose another --output")
        if target in seen:
            raise MergeInputError(f"two merges would write {job.output}; use separate --output folders")
        seen.add(target)
        if job.output.exists() and not overwrite:
            raise MergeInputError(f"{job.output} already exists; pass --overwrite to replace it, or pick "
                                  "another --output")



def main(argv: list[str] | None = None) -> int:
    from ..host.devices import resolve_device
    from ..host.signals import terminate_as_interrupt
    from ..image_io import write_depth_files

    args = build_parser().parse_args(argv)
    emit = _Emitter(args.json)
    try:
        jobs = plan_jobs(args)
        check_outputs(jobs, args.overwrite)
    except MergeInputError as error:
        emit.error(None, str(error))
        emit.done(0, 0)
        return EXIT_USAGE
    terminate_as_interrupt()
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        networks = load_merge_network(args.merge_weights, args.models_dir, device)
    except Exception as error:  # weights missing or wrong, device unavailable: nothing can run
        message = str(error)
        if args.merge_weights is None and "merge_net" in message:
            message += "\nOr pass --merge-weights PATH (the merge network's latest_net_G.pth)."
        emit.error(None, message)
        emit.done(0, len(jobs))
        return EXIT_USAGE

    ok = failed = 0
    try:
        for job in jobs:
            if job.problem:
                failed += 1
                emit.error(job.name, job.problem)
                continue
            try:
                warnings: list[str] = []
                depth = merge_files(job.low, job.high, networks, args.output_size, warnings=warnings)
                write_depth_files(depth, {job.format: job.output})
            except (OSError, ValueError) as error:
                failed += 1
                emit.error(job.name, str(error))
                continue
            ok += 1
            emit.result(job, depth.shape, warnings)
    except KeyboardInterrupt:
        emit.done(ok, failed, cancelled=True)
        return EXIT_CANCELLED
    emit.done(ok, failed)
    return EXIT_FAILED if failed else 0


class _Emitter:
    """Text lines (results on stdout, errors on stderr) or JSON lines on stdout."""

    def __init__(self, as_json: bool):
        self.as_json = as_json

    def _json(self, event: dict) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def error(self, name, message: str) -> None:
        if self.as_json:
            self._json({"event": "error", "image": name, "message": message})
        print(f"{name + ': ' if name else ''}error: {message}", file=sys.stderr)

    def result(self, job: Job, shape, warnings=()) -> None:
        if self.as_json:
            self._json({"event": "result", "image": job.name, "low": str(job.low), "high": str(job.high),
                        "outputs": {job.format: str(job.output)}, "shape": list(shape),
                        "warnings": list(warnings)})
        else:
            print(f"{job.low} + {job.high} -> {job.output} ({shape[1]}x{shape[0]})")
            for warning in warnings:
                print(f"{job.name}: warning: {warning}", file=sys.stderr)

    def done(self, ok: int, failed: int, cancelled: bool = False) -> None:
        if self.as_json:
            event = {"event": "done", "ok": ok, "failed": failed}
            if cancelled:
                event["cancelled"] = True
            self._json(event)
        elif cancelled:
            print("cancelled", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
