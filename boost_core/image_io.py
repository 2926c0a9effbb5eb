"""Reading photos and depth maps; writing depth maps atomically (temp name in the target folder, then replace).

Formats written: ``png16`` (the reference's quantisation), ``exr`` (float32, one channel "Y"), ``npy`` (float32,
the map before quantisation) and ``color`` (8-bit INFERNO PNG, as the reference's --colorize_results).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

FORMATS = ("png16", "exr", "npy", "color")
SUFFIXES = {"png16": ".png", "exr": ".exr", "npy": ".npy", "color": "_color.png"}
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file and why."""


def read_image(path: str | Path, warnings: list | None = None) -> np.ndarray:
    """A photo file -> float64 (H, W, 3) RGB in [0, 1].

    8-bit files are divided by 255 (bit-identical to the reference's cv2.imread path), 16-bit by 65535.
    Grey images become 3 channels, alpha is dropped, EXIF orientation is applied.
    What the decoders print (libjpeg's "Corrupt JPEG data", libpng's errors) is captured, not left on stderr:
    appended to ``warnings`` when the image decodes, part of the ImageReadError message when it does not.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"cannot read image {path}: it is a folder, not an image file; give the photo files "
                             "inside it")
    if not path.is_file():
        raise ImageReadError(f"cannot read image {path}: no such file; check the path")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # imdecode also handles non-ASCII paths on Windows
    except OSError as error:
        raise ImageReadError(f"cannot read image {path}: {error.strerror or error}; check its permissions") from None
    try:
        with captured_stderr() as said:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    except cv2.error as error:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(error) or "validateInputImageSize" in str(error):
            raise ImageReadError(
                f"cannot read image {path}: its header declares more pixels than OpenCV allows (a damaged file or a "
                "decompression bomb); re-save the photo at a normal size") from None
        raise ImageReadError(f"cannot read image {path}: OpenCV refused it ({_one_line(str(error))}); re-save it as "
                             "PNG or JPEG") from None
    decoder = "; ".join(said)
    if image is None:
        why = f"damaged or truncated ({decoder})" if decoder else "not an image OpenCV can decode"
        raise ImageReadError(f"cannot read image {path}: {why}; re-save or re-export it "
                             f"(one of {', '.join(PHOTO_EXTENSIONS)})")
    if warnings is not None:
        warnings.extend(f"{path.name}: decoder: {line}" for line in said)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if scale is None:  # float files (e.g. 32-bit TIFF): taken as linear [0, 1]
        return np.clip(rgb.astype(np.float64), 0, 1)
    return rgb.astype(np.float64) / scale


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text.split(") ", 1)[-1][:200] if "error:" in text else text[:200]


@contextlib.contextmanager
def captured_stderr():
    """Redirect file descriptor 2 (where native decoders write) to a temp file; yields the list of its non-empty
    lines, filled when the block ends. Python's own sys.stderr is flushed first and left pointing at fd 2."""
    lines: list[str] = []
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon): nothing to capture, nothing printed anywhere
        yield lines
        return
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
                lines.extend(line.strip() for line in text.splitlines() if line.strip())
    finally:
        os.close(saved)


def read_depth(path: str | Path) -> np.ndarray:
    """A depth map file (16/8-bit PNG or TIFF, EXR, NPY, PFM) -> float32 (H, W) at full precision.

    Integer images are scaled to [0, 1] by their type's range; colour images are refused (a colour-mapped
    depth picture is not depth).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"cannot read depth map {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        depth = np.load(path, allow_pickle=False)
    elif suffix == ".exr":
        depth = _read_exr(path)
    elif suffix == ".pfm":
        depth = _read_pfm(path)
    else:
        data = np.fromfile(path, dtype=np.uint8)
        depth = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if depth is None:
            raise ImageReadError(f"cannot read depth map {path}: not a PNG/TIFF/EXR/NPY/PFM file")
        if depth.ndim == 3:
            if depth.shape[2] >= 3 and not (np.array_equal(depth[..., 0], depth[..., 1])
                                            and np.array_equal(depth[..., 1], depth[..., 2])):
                raise ImageReadError(
                    f"{path} is a colour image; depth maps must be single-channel (16-bit PNG, EXR or NPY)")
            depth = depth[..., 0]
        if depth.dtype == np.uint8:
            depth = depth / 255.0
        elif depth.dtype == np.uint16:
            depth = depth / 65535.0
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ImageReadError(f"{path}: expected a single-channel (H, W) depth map, got shape {depth.shape}")
    return depth.astype(np.float32)


def quantize16(depth: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Reference quantisation: uint16(65535·(d - min)/(max - min)) computed in float32, truncated.

    A constant map becomes all zeros (the reference crashes there). ``value_range`` (lo, hi): quantise over that
    range instead of the map's own min..max (values outside are clipped), e.g. a depth sequence in one common range.
    """
    return _quantize(depth, 65535, np.uint16, value_range)


def colorize(depth: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """8-bit INFERNO visualisation (reference --colorize_results): uint8 (H, W, 3) in BGR channel order.
    ``value_range`` as quantize16's."""
    return cv2.applyColorMap(_quantize(depth, 255, np.uint8, value_range), cv2.COLORMAP_INFERNO)


def _quantize(depth, levels, dtype, value_range=None):
    d = np.asarray(depth, dtype=np.float32)
    if value_range is not None:
        lo, hi = np.float32(value_range[0]), np.float32(value_range[1])
        d = np.clip(d, lo, hi)
    else:
        lo, hi = d.min(), d.max()
    if not (hi - lo) > np.finfo(float).eps:
        return np.zeros(d.shape, dtype)
    return (levels * (d - lo) / (hi - lo)).astype(dtype)


def output_paths(stem: str, directory: str | Path, formats) -> dict[str, Path]:
    """Where each requested format of ``stem`` goes: {format: DIR/<stem><suffix>}."""
    return {fmt: Path(directory) / f"{stem}{SUFFIXES[fmt]}" for fmt in formats}


class WriteError(OSError):
    """Writing an image's outputs failed; nothing of them was kept and replaced files were restored."""


def write_depth_files(depth: np.ndarray, paths: dict[str, Path],
                      value_range: tuple[float, float] | None = None) -> dict[str, Path]:
    """Write every format in ``paths`` all-or-nothing.

    ``value_range``: png16 and color quantise over this (lo, hi) instead of each map's own min..max (a sequence
    written in one common range); exr and npy keep the values as they are.

    All formats are written to temps in their target folders first, then renamed over the targets
    (``host.atomic_files.replace_all``). If anything fails (or a KeyboardInterrupt arrives) the renames already
    done are undone, a file that was replaced is put back with its content and mode, and every temp is removed.
    New files get the umask's mode (0666 & ~umask); a replaced file keeps its mode. An OSError is re-raised as
    WriteError with one line naming the file, the problem and the fix.
    """
    from .host.atomic_files import replace_all, unlink_quietly

    temps: dict[str, Path] = {}
    current = None
    try:
        for fmt, path in paths.items():
            current = Path(path)
            temps[fmt] = _write_temp(fmt, depth, current, value_range)
        current = None
        replace_all([(temps[fmt], Path(path)) for fmt, path in paths.items()])
    except BaseException as error:
        for temp in temps.values():
            unlink_quietly(temp)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            failed = current or _failed_target(error, paths)
            raise WriteError(_write_problem(failed, error)) from error
        raise
    return dict(paths)


def _failed_target(error: OSError, paths: dict[str, Path]) -> Path | None:
    named = {str(error.filename2 or ""), str(error.filename or "")}
    return next((Path(p) for p in paths.values() if str(p) in named), None)


def _write_problem(path: Path | None, error: OSError) -> str:
    if isinstance(error, IsADirectoryError) or (path is not None and path.is_dir()):
        why, fix = "a folder has that name", "remove or rename that folder, or choose another --output"
    elif isinstance(error, PermissionError):
        why, fix = ("permission denied (a read-only folder, or a file owned by someone else in a shared folder)",
                    "choose another --output folder")
    else:
        why, fix = error.strerror or str(error), "free space or choose another --output folder"
    return f"cannot write {path}: {why}; nothing of this image was kept (any replaced file was restored); {fix}"


def _write_temp(fmt: str, depth: np.ndarray, path: Path, value_range=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        if fmt == "npy":
            with open(temp, "wb") as f:
                np.save(f, np.asarray(depth, np.float32))
        elif fmt == "exr":
            write_exr(temp, depth)
        elif fmt in ("png16", "color"):
            image = quantize16(depth, value_range) if fmt == "png16" else colorize(depth, value_range)
            ok, buffer = cv2.imencode(".png", image)
            if not ok:
                raise OSError(f"PNG encoding failed for {path}")
            buffer.tofile(temp)
        else:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_exr(path: str | Path, depth: np.ndarray) -> None:
    """Single-channel ("Y") float32 ZIP-compressed scanline OpenEXR, rows top-down as in the array."""
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {"Y": np.ascontiguousarray(depth, dtype=np.float32)}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


def _read_exr(path: Path) -> np.ndarray:
    import OpenEXR

    with OpenEXR.File(str(path)) as exr:
        channels = exr.channels()
        for name in ("Y", "Z", "R", "depth", "V"):
            if name in channels:
                return np.asarray(channels[name].pixels, np.float32)
        first = next(iter(channels.values())).pixels
        return np.asarray(first[..., 0] if first.ndim == 3 else first, np.float32)


def _read_pfm(path: Path) -> np.ndarray:
    """Portable Float Map (as Middlebury's disparities): header 'Pf', 'W H', scale (<0: little-endian)."""
    with open(path, "rb") as f:
        kind = f.readline().strip()
        if kind not in (b"Pf", b"PF"):
            raise ImageReadError(f"{path}: not a PFM file")
        width, height = map(int, f.readline().split())
        scale = float(f.readline())
        data = np.fromfile(f, dtype="<f4" if scale < 0 else ">f4")
    channels = 3 if kind == b"PF" else 1
    data = data.reshape(height, width, channels)[..., 0]
    return np.flipud(data).astype(np.float32)  # PFM rows run bottom-up
