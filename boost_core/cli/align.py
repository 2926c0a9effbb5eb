"""``python -m boost_core align``: temporal alignment of an existing depth sequence (any depth tool's output).

    python -m boost_core align RAW_DEPTH_PATTERN --photos PHOTO_PATTERN_OR_MOVIE --output DIR
                               [--format png16,exr,npy] [--overwrite]

RAW_DEPTH_PATTERN: frame pattern of the depth maps (``depth_####.npy`` or ``depth_%04d.npy``; npy, exr, png16,
tiff, pfm). --photos: the photos they were made from, a frame pattern (paired by frame number) or a movie file
(``.mp4 .mov .avi .mkv .webm .m4v``; movie frame n, counted from 1 as Blender does, pairs with depth frame n).
Each depth frame is fitted (robust scale + shift) to the previous aligned frame on the pixels that did not change
after motion compensation (``boost_core.footage.temporal``); outputs ``DIR/<depth stem><suffix>`` in one common
0..1 range for the whole sequence, each frame's formats written all-or-nothing. The flicker figures are printed and
written to ``DIR/flicker.json``. Exit codes: 0 done, 1 a file could not be read or written (frames written before
it are complete), 2 bad arguments or inputs (nothing written), 130 cancelled.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130
MOVIE_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class AlignInputError(ValueError):
    """The command's inputs cannot be used; the message names the problem and the fix."""


def build_parser() -> argparse.ArgumentParser:
    from ..image_io import FORMATS

    parser = argparse.ArgumentParser(
        prog="python -m boost_core align",
        description="Temporal alignment of a depth sequence: each frame's relative depth gets the scale and shift "
                    "that match it to the previous aligned frame where the picture did not change (after motion "
                    "compensation), so the same wall keeps the same depth through the shot.")
    parser.add_argument("depths", metavar="RAW_DEPTH_PATTERN",
                        help="frame pattern of the depth maps: depth_####.npy or depth_%%04d.npy")
    parser.add_argument("--photos", required=True, metavar="PHOTO_PATTERN_OR_MOVIE",
                        help="frame pattern of the photos (paired by frame number) or a movie file (frame n from 1)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--format", default="png16", type=_formats(FORMATS),
                        help=f"comma-separated subset of {','.join(FORMATS)} (default png16)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    return parser


def _formats(known):
    def parse(text: str) -> list[str]:
        formats = [f.strip().lower() for f in text.split(",") if f.strip()]
        bad = [f for f in formats if f not in known]
        if bad or not formats:
            raise argparse.ArgumentTypeError(f"unknown format {', '.join(bad) or text!r}; "
                                             f"choose from {','.join(known)}")
        return list(dict.fromkeys(formats))
    return parse


# Frame patterns: deliberately minimal and private. TODO(merge): use boost_core.footage.frames (helper JOBS).
_PLACEHOLDER = re.compile(r"#+|%0?(\d*)d")


def _pattern_files(pattern: str, what: str) -> dict[int, Path]:
    """{frame number: file} of the files matching a ``name_####.ext`` / ``name_%04d.ext`` pattern."""
    path = Path(pattern)
    found = list(_PLACEHOLDER.finditer(path.name))
    if len(found) != 1:
        raise AlignInputError(f"{what} {pattern!r} is not a frame pattern; write the frame number as #### or %04d "
                              "(e.g. depth_####.npy)")
    mark = found[0]
    digits = len(mark.group(0)) if mark.group(0).startswith("#") else int(mark.group(1) or 1)
    regex = re.compile(re.escape(path.name[:mark.start()]) + r"(\d{%d,})" % digits
                       + re.escape(path.name[mark.end():]) + r"\Z")
    folder = path.parent
    if not folder.is_dir():
        raise AlignInputError(f"{what}: folder {folder} does not exist; check the pattern's folder")
    files = {}
    for entry in sorted(folder.iterdir()):
        match = regex.match(entry.name)
        if match and entry.is_file():
            files.setdefault(int(match.group(1)), entry)
    if not files:
        raise AlignInputError(f"{what}: no file in {folder} matches {path.name}; check the pattern")
    return files


class _Movie:
    """Frames of a movie read forward once: ``loader(n)`` gives a zero-argument callable returning frame n (from
    1) as (H, W, 3) float 0..1 RGB; the callables must be called in increasing n (as align_job does)."""

    def __init__(self, path: Path):
        import cv2

        self.path = path
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise AlignInputError(f"cannot open movie {path} with OpenCV; convert it to .mp4 (H.264) or give the "
                                  "frames as an image pattern")
        self.count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.position = 0  # frames read so far

    def loader(self, number: int):
        return lambda: self._frame(number)

    def _frame(self, number: int):
        import cv2
        import numpy as np

        if number <= self.position:
            raise RuntimeError(f"movie frames must be read in order (frame {number} after {self.position})")
        image = None
        while self.position < number:
            ok, image = self.capture.read()
            if not ok:
                raise AlignInputError(f"movie {self.path} ends before frame {number}; give fewer depth frames")
            self.position += 1
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def plan_frames(args) -> list[tuple]:
    """[(photo path or loader, depth path, {format: output path})] in frame order; AlignInputError when a depth
    frame has no photo, an output would replace an input, or (without --overwrite) an output exists."""
    from ..image_io import output_paths

    depths = _pattern_files(args.depths, "RAW_DEPTH_PATTERN")
    if Path(args.photos).suffix.lower() in MOVIE_SUFFIXES:
        if not Path(args.photos).is_file():
            raise AlignInputError(f"--photos {args.photos}: no such movie file; check the path")
        movie = _Movie(Path(args.photos))
        missing = [n for n in depths if n < 1 or (movie.count > 0 and n > movie.count)]
        photos = {n: movie.loader(n) for n in depths if n not in missing}
        where = f"movie {args.photos} ({movie.count} frames, counted from 1)"
    else:
        photos = _pattern_files(args.photos, "--photos")
        missing = [n for n in depths if n not in photos]
        where = f"--photos {args.photos}"
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise AlignInputError(f"depth frames {shown} have no photo in {where}; give the photos each depth map was "
                              "made from")
    if args.output.exists() and not args.output.is_dir():
        raise AlignInputError(f"--output {args.output} is a file; give a folder")
    inputs = {_identity(p) for p in depths.values()}
    frames = []
    for number in sorted(depths):
        outputs = output_paths(depths[number].stem, args.output, args.format)
        for path in outputs.values():
            if _identity(path) in inputs:
                raise AlignInputError(f"writing {path} would overwrite an input depth map; choose another --output")
            if path.exists() and not args.overwrite:
                raise AlignInputError(f"{path} already exists; pass --overwrite to replace it, or choose another "
                                      "--output")
        frames.append((photos[number], depths[number], outputs))
    return frames


def _identity(path: Path):
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.normcase(str(Path(path).resolve())))


def main(argv: list[str] | None = None) -> int:
    from ..footage.temporal import SequenceError, align_job
    from ..image_io import ImageReadError

    args = build_parser().parse_args(argv)
    try:
        frames = plan_frames(args)
    except AlignInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    names = [depth.stem for _, depth, _ in frames]

    def report(stats) -> None:
        how = (f"scale {stats.scale:.6g} shift {stats.shift:.6g}, {stats.static_fraction:.1%} static"
               if stats.fitted else stats.fallback)
        print(f"{names[stats.index]}: {how} ({stats.seconds * 1000:.0f} ms)", flush=True)

    try:
        summary = align_job(args.output, frames, report=report)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except SequenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (AlignInputError, ImageReadError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"flicker (mean frame-to-frame change on static pixels, in the sequence's depth range): "
          f"{summary['flicker_aligned']:.5f} aligned, {summary['flicker_unaligned']:.5f} without alignment; "
          f"{summary['static_fraction']:.1%} of the pixels static; {summary['frames']} frames, "
          f"{summary['seconds_per_frame'] * 1000:.0f} ms per frame; {args.output / 'flicker.json'}")
    if summary["fallback_frames"]:
        shown = ", ".join(names[i] for i in summary["fallback_frames"])
        print(f"not aligned to their predecessor (own min-max, see above): {shown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
