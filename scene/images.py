"""Image datablocks: the float depth image ``<photo> depth`` and the photo's pixels on disk for the engine.

Depth images are float, Non-Color, packed into the .blend, kept with a fake user, and carry custom properties:
``depth_kind`` ("depth" | "inverse_depth"), ``depth_source`` (the photo datablock's name) and, when estimated,
``depth_net``, ``depth_mode``, ``depth_R``, ``depth_factor``.
Blender stores pixels bottom-up; every array handed to ``scene.geometry`` is top-down (row 0 = top).
"""

import os
import re
from pathlib import Path

import bpy
import numpy as np

DEPTH_SUFFIX = " depth"
KIND_KEY = "depth_kind"
SOURCE_KEY = "depth_source"


def depth_image_name(photo_name: str) -> str:
    return f"{photo_name}{DEPTH_SUFFIX}"


def is_depth_image(image) -> bool:
    return image is not None and KIND_KEY in image.keys()


def find_depth_image(photo):
    """The depth image of ``photo`` (an Image, or None), looked up by name then by its source property."""
    if photo is None:
        return None
    if is_depth_image(photo):
        return photo
    image = bpy.data.images.get(depth_image_name(photo.name))
    if is_depth_image(image):
        return image
    for image in bpy.data.images:
        if is_depth_image(image) and image.get(SOURCE_KEY) == photo.name:
            return image
    return None


def photo_of(depth_image):
    """The photo datablock a depth image belongs to, or None."""
    if depth_image is None:
        return None
    return bpy.data.images.get(str(depth_image.get(SOURCE_KEY, "")))


def load_depth_image(
    path: str | os.PathLike, photo_name: str, kind: str, properties: dict | None = None, pack: bool = True
):
    """Load a depth map file (EXR / 16-bit PNG / any format Blender reads) as the float Non-Color image
    ``<photo_name> depth``, pack it (unless ``pack`` is False: then the file must stay), and replace (remap
    users of) an older image of that name.

    Returns the Image. Raises ValueError when Blender cannot read the file.
    """
    if kind not in ("depth", "inverse_depth"):
        raise ValueError(f"depth kind must be 'depth' or 'inverse_depth', got {kind!r}")
    path = str(path)
    if path.lower().endswith(".pfm"):  # Blender has no PFM reader: its values become a float image here
        image = _pfm_image(path)
        pack = True
    else:
        try:
            image = bpy.data.images.load(path, check_existing=False)
        except RuntimeError as error:
            raise ValueError(f"cannot read depth map {path}: {error}") from None
    try:
        mark_as_data(image)
        image.alpha_mode = "NONE"
        if image.size[0] == 0 or image.size[1] == 0:
            raise ValueError(f"cannot read depth map {path}: Blender found no pixels in it")
        if pack and image.packed_file is None:
            image.pack()
    except Exception:
        bpy.data.images.remove(image)
        raise
    name = depth_image_name(photo_name)
    old = bpy.data.images.get(name)
    if old is not None and old != image:
        old.user_remap(image)
        bpy.data.images.remove(old)
    image.name = name
    image.use_fake_user = True
    image[KIND_KEY] = kind
    image[SOURCE_KEY] = photo_name
    for key, value in (properties or {}).items():
        if value is not None:
            image[f"depth_{key}"] = value
    return image


def read_pfm(path) -> np.ndarray:
    """A Portable Float Map's first channel, (height, width) float32, rows as stored (bottom-up).
    Header: 'Pf' (grey) or 'PF' (RGB), 'width height', scale (negative: little-endian). ValueError if broken."""
    with open(path, "rb") as f:
        header = []
        while len(header) < 4:  # magic, width, height, scale: whitespace-separated, usually on three lines
            line = f.readline()
            if not line or (header == [] and line.split()[:1] not in ([b"Pf"], [b"PF"])):
                raise ValueError(f"cannot read depth map {path}: not a PFM file")
            header += line.split()
        try:
            magic, width, height, scale = header[0], int(header[1]), int(header[2]), float(header[3])
        except ValueError:
            raise ValueError(f"cannot read depth map {path}: bad PFM header") from None
        if width <= 0 or height <= 0:
            raise ValueError(f"cannot read depth map {path}: bad PFM size")
        channels = 3 if magic == b"PF" else 1
        data = np.fromfile(f, dtype="<f4" if scale < 0 else ">f4", count=width * height * channels)
    if data.size != width * height * channels:
        raise ValueError(f"cannot read depth map {path}: the PFM file is shorter than its header says")
    return data.reshape(height, width, channels)[:, :, 0].astype(np.float32)


def _pfm_image(path: str):
    """A float data image holding a PFM file's values (grey in R, G, B; alpha 1), to be packed."""
    rows = read_pfm(path)  # bottom-up, as Blender stores pixels
    height, width = rows.shape
    image = bpy.data.images.new(Path(path).name, width, height, alpha=False, float_buffer=True, is_data=True)
    rgba = np.empty((height, width, 4), np.float32)
    rgba[..., :3] = rows[..., None]
    rgba[..., 3] = 1.0
    image.pixels.foreach_set(rgba.ravel())
    image.file_format = "OPEN_EXR"
    image.pack()  # as a float EXR in memory: from here on the image reloads from it (colour-space changes do)
    return image


def mark_as_data(image) -> None:
    """Values, not colours: ``is_data`` works under any OCIO config (ACES, studio configs); the name
    "Non-Color" is also set where the config has it (Blender's default), so the UI shows it."""
    settings = image.colorspace_settings
    try:
        settings.name = "Non-Color"
    except (TypeError, ValueError):  # the config has no such colour space
        pass
    settings.is_data = True


def image_array(image) -> np.ndarray:
    """Pixels of ``image`` as (height, width, channels) float32, top-down. ValueError when it has none."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"image {image.name!r} has no pixels (is its file missing?)")
    channels = image.channels
    buffer = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    return buffer.reshape(height, width, channels)[::-1]


def read_depth(image) -> np.ndarray:
    """The depth map of a depth image: (height, width) float32, top-down, the first channel's raw values."""
    return np.ascontiguousarray(image_array(image)[:, :, 0])


def depth_kind(image) -> str:
    kind = image.get(KIND_KEY)
    if kind not in ("depth", "inverse_depth"):
        raise ValueError(f"image {image.name!r} records no depth kind; load it with Load Depth Map")
    return kind


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    stem = _UNSAFE.sub("_", Path(name).stem).strip("._") or "image"
    return stem[:80]


def photo_file(image, folder: str | os.PathLike) -> Path:
    """A file on disk holding the photo's pixels, for the engine: the image's own file when it exists, else
    its packed bytes or its pixels written into ``folder`` (a temporary folder). The name keeps the photo's
    stem, so the engine's outputs are named after it."""
    folder = Path(folder)
    if image.packed_file is not None:
        ext = Path(image.filepath).suffix or f".{image.file_format.lower()}"
        target = folder / f"{safe_stem(image.name)}{ext}"
        target.write_bytes(image.packed_file.data)
        return target
    if image.source in {"FILE", "SEQUENCE"} and image.filepath:
        path = Path(bpy.path.abspath(image.filepath_from_user() or image.filepath, library=image.library))
        if path.is_file():
            return path
    if image.size[0] == 0 or image.size[1] == 0:
        raise ValueError(f"image {image.name!r} has no pixels to estimate depth from (is its file missing?)")
    target = folder / f"{safe_stem(image.name)}.png"
    copy = image.copy()
    try:
        copy.file_format = "PNG"
        copy.filepath_raw = str(target)
        copy.save()
    finally:
        bpy.data.images.remove(copy)
    return target


def load_photo(path: str | os.PathLike):
    """The image datablock of a photo file (reused when already loaded)."""
    try:
        return bpy.data.images.load(str(path), check_existing=True)
    except RuntimeError as error:
        raise ValueError(f"cannot read photo {path}: {error}") from None
