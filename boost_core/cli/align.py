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
import sys
from pathlib import Path

from ..host.atomic_files import file_identity

EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130


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


def _pattern_files(pattern: str, what: str) -> dict[int, Path]:
    """{frame number: file} of the files matching a ``name_####.ext`` / ``name_%04d.ext`` pattern
    (``footage.frames``' pattern rules)."""
    from ..footage import frames

    path = Path(pattern)
    if not frames.is_pattern(pattern):
        raise AlignInputError(f"{what} {pattern!r} is not a frame pattern; write the frame number as #### or %04d "
                              "(e.g. depth_####.npy)")
    if not path.parent.is_dir():
        raise AlignInputError(f"{what}: folder {path.parent} does not exist; check the pattern's folder")
    regex = frames.pattern_regex(pattern)
    files: dict[int, Path] = {}
    for entry in sorted(path.parent.iterdir()):
        match = regex.match(entry.name)
        if match and entry.is_file():
            files.setdefault(int(match.group(1)), entry)
    if not files:
        raise AlignInputError(f"{what}: no file in {path.parent} matches {path.name}; check the pattern")
    return files


def _movie_loader(movie: Path, number: int):
    """A zero-argument callable giving frame ``number`` (from 1) of ``movie`` as float32 (H, W, 3) RGB in [0, 1]
    (``footage.frames.read_movie_frame``: frames read in order are decoded one after the other)."""
    from ..footage import frames

    def load():
        try:
            return frames.read_movie_frame(movie, number).astype("float32")
        except frames.FrameReadError as error:
            raise AlignInputError(str(error)) from None

    return load


def plan_frames(args) -> list[tuple]:
    """[(photo path or loader, depth path, {format: output path})] in frame order; AlignInputError when a depth
    frame has no photo, an output would replace an input, or (without --overwrite) an output exists."""
    from ..image_io import output_paths

    depths = _pattern_files(args.depths, "RAW_DEPTH_PATTERN")
    from ..footage import frames as footage_frames

    if footage_frames.is_movie(args.photos):
        movie = Path(args.photos)
        if not movie.is_file():
            raise AlignInputError(f"--photos {args.photos}: no such movie file; check the path")
        count = footage_frames.movie_frame_count(movie)
        if count == 0:
            raise AlignInputError(f"cannot open movie {movie} with OpenCV; convert it to .mp4 (H.264) or give the "
                                  "frames as an image pattern")
        missing = [n for n in depths if n < 1 or n > count]
        photos = {n: _movie_loader(movie, n) for n in depths if n not in missing}
        where = f"movie {args.photos} ({count} frames, counted from 1)"
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
    inputs = {file_identity(p) for p in depths.values()}
    frames = []
    for number in sorted(depths):
        outputs = output_paths(depths[number].stem, args.output, args.format)
        for path in outputs.values():
            if file_identity(path) in inputs:
                raise AlignInputError(f"writing {path} would overwrite an input depth map; choose another --output")
            if path.exists() and not args.overwrite:
                raise AlignInputError(f"{path} already exists; pass --overwrite to replace it, or choose another "
                                      "--output")
        frames.append((photos[number], depths[number], outputs))
    return frames



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
