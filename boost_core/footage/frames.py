"""Frame sources: the photos of a job, from plain photo files, folders, frame patterns and movie files.

An INPUT is
- a photo file (``beach.png``);
- a folder: its images, sorted by name (hidden files skipped);
- a frame pattern ``shot_####.png`` or ``shot_%04d.png``: every matching file, or those of ``--frames``;
- a movie (``.mp4 .mov .avi .mkv .webm .m4v``), read with OpenCV's ``cv2.VideoCapture``; frames are numbered from
  1 as Blender numbers a movie's frames; ``--frames`` picks some.

``--frames`` takes ranges and lists: ``1-100,120``. Every source becomes a list of ``Frame``: what to read and the
output stem (a file's stem; ``<movie stem>_<n:06d>`` for movie frame n).

Standard library + numpy + cv2 only: the batch script imports this module in Blender's Python too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr", ".hdr"}
MOVIE_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}

_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%0?(\d*)d")


class FrameReadError(ValueError):
    """A movie frame could not be read; the message names the movie, the frame and the fix."""


@dataclass(frozen=True)
class Frame:
    """One photo of a job.

    ``path``: the photo file, or the movie file for a movie frame. ``number``: the frame number (patterns and
    movies; movies count from 1), else None. ``name``: the output stem. ``label``: how events and messages name
    the frame (the photo's path; ``<movie>#<n>`` for a movie frame)."""

    path: Path
    name: str
    number: int | None = None
    movie: bool = False

    @property
    def label(self) -> str:
        return f"{self.path}#{self.number}" if self.movie else str(self.path)

    def read(self, warnings: list | None = None):
        """The photo as float64 (H, W, 3) RGB in [0, 1] (``image_io.read_image``'s convention)."""
        if self.movie:
            return read_movie_frame(self.path, self.number)
        from ..image_io import read_image

        return read_image(self.path, warnings=warnings)


def parse_frames(text: str) -> list[int]:
    """'1-240' / '1-10,15,20-22' -> sorted unique frame numbers. ValueError with the fix on bad input."""
    frames: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)
        if not m:
            raise ValueError(f"--frames: cannot read {part!r}; write ranges and lists like 1-240 or 1-10,15")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"--frames: range {part!r} runs backwards; write {hi}-{lo}")
        frames.update(range(lo, hi + 1))
    return sorted(frames)


def is_pattern(text: str) -> bool:
    """Whether a file name holds a frame-number placeholder (``####`` or ``%04d``)."""
    name = Path(text).name
    return bool(_HASHES.search(name) or _PRINTF.search(name))


def is_movie(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MOVIE_SUFFIXES


def frame_path(pattern: str, frame: int) -> Path:
    """``shot_####.png``, 7 -> ``shot_0007.png`` (``%04d`` the same)."""
    name = Path(pattern).name
    m = _HASHES.search(name)
    if m:
        name = name[: m.start()] + f"{frame:0{len(m.group())}d}" + name[m.end():]
    else:
        m = _PRINTF.search(name)
        width = int(m.group(1) or 0)
        name = name[: m.start()] + f"{frame:0{width}d}" + name[m.end():]
    return Path(pattern).with_name(name)


def pattern_regex(pattern: str) -> re.Pattern:
    """A regex matching the pattern's file names; group 1 is the frame number."""
    name = Path(pattern).name
    m = _HASHES.search(name) or _PRINTF.search(name)
    return re.compile(re.escape(name[: m.start()]) + r"(\d+)" + re.escape(name[m.end():]) + "$")


def movie_frame_name(movie: str | Path, number: int) -> str:
    """Output stem of movie frame ``number`` (from 1): ``clip.mp4``, 7 -> ``clip_000007``."""
    return f"{Path(movie).stem}_{number:06d}"


def movie_frame_count(movie: str | Path) -> int:
    """Frames in a movie as its container declares them (0 when OpenCV cannot open it)."""
    import cv2

    capture = cv2.VideoCapture(str(movie))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


class _MovieReader:
    """One open capture per process: frames read in order are decoded one after the other; any other frame is
    reached by seeking (``CAP_PROP_POS_FRAMES``)."""

    def __init__(self):
        self.path = None
        self.capture = None
        self.next = None  # the 1-based number the capture reads next

    def read(self, movie: Path, number: int):
        import cv2
        import numpy as np

        if self.path != movie or self.capture is None:
            self.close()
            capture = cv2.VideoCapture(str(movie))
            if not capture.isOpened():
                raise FrameReadError(f"cannot open movie {movie}: OpenCV cannot decode it; convert it to an image "
                                     "sequence or an MJPG/H.264 movie")
            self.path, self.capture, self.next = movie, capture, 1
        if number != self.next:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, number - 1)
        ok, bgr = self.capture.read()
        if not ok or bgr is None:
            self.close()
            raise FrameReadError(f"cannot read frame {number} of movie {movie}: the movie has "
                                 f"{movie_frame_count(movie)} frame(s) or is damaged there; pick frames with --frames")
        self.next = number + 1
        scale = 65535.0 if bgr.dtype == np.uint16 else 255.0
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float64) / scale

    def close(self):
        if self.capture is not None:
            self.capture.release()
        self.path = self.capture = self.next = None


_reader = _MovieReader()


def read_movie_frame(movie: str | Path, number: int):
    """Frame ``number`` (from 1) of a movie -> float64 (H, W, 3) RGB in [0, 1] (8-bit values / 255)."""
    if number < 1:
        raise FrameReadError(f"movie frames are numbered from 1 (as in Blender); frame {number} of {movie} does not "
                             "exist; fix --frames")
    return _reader.read(Path(movie), int(number))


def expand_sources(items: list[str], frames: list[int] | None,
                   notes: list[str] | None = None) -> tuple[list[Frame], list[tuple[str, str]]]:
    """(frames to run, [(name, why)] problems found before running): folders give their images, patterns and
    movies their frames (those of ``frames``, or all), plain paths must exist. A file reached twice is kept once
    (a line saying so is appended to ``notes``)."""
    found: list[Frame] = []
    problems: list[tuple[str, str]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = folder_images(path)
            if not files:
                problems.append((item, "folder holds no images"))
            found += [Frame(p, p.stem) for p in files]
        elif is_pattern(item) and not path.is_file():
            found += _pattern_frames(item, frames, problems)
        elif path.is_file() and is_movie(path):
            count = movie_frame_count(path)
            if count <= 0:
                problems.append((item, "OpenCV cannot open this movie; convert it to an image sequence"))
                continue
            wanted = frames if frames else range(1, count + 1)
            for number in wanted:
                if 1 <= number <= count:
                    found.append(Frame(path, movie_frame_name(path, number), number, movie=True))
                else:
                    problems.append((movie_frame_name(path, number),
                                     f"frame {number} is not in {path.name} (frames 1-{count})"))
        elif path.is_file():
            found.append(Frame(path, path.stem))
        else:
            problems.append((item, "file not found"))
    unique: list[Frame] = []
    seen: dict = {}
    for frame in found:
        key = (str(frame.path.resolve()), frame.number if frame.movie else None)
        if key not in seen:
            seen[key] = frame
            unique.append(frame)
        elif notes is not None:
            notes.append(f"{frame.label}: listed more than once (same file as {seen[key].label}); processed once")
    return unique, problems


def _pattern_frames(pattern: str, frames, problems) -> list[Frame]:
    if frames:
        out = []
        for number in frames:
            p = frame_path(pattern, number)
            if p.is_file():
                out.append(Frame(p, p.stem, number))
            else:
                problems.append((p.name, f"frame {number} is missing ({p})"))
        return out
    rx = pattern_regex(pattern)
    folder = Path(pattern).parent
    matches = sorted((int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else [])
                     if (m := rx.match(p.name)))
    if not matches:
        problems.append((pattern, "no file matches this frame pattern"))
    return [Frame(p, p.stem, n) for n, p in matches]


def folder_images(folder: Path) -> list[Path]:
    """A folder's image files (not hidden), sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def needs_job(items: list[str]) -> bool:
    """Whether these inputs make a job: a folder holding images, a frame pattern or a movie among them. (An empty
    folder makes none: given as a photo, it fails alone with "it is a folder", as any unreadable photo.)"""
    return any((Path(i).is_dir() and bool(folder_images(Path(i)))) or (is_pattern(i) and not Path(i).is_file())
               or is_movie(i) for i in items)
