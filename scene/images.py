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
    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as error:
        raise ValueError(f"cannot read depth map {path}: {error}") from None
    try:
        image.colorspace_settings.name = "Non-Color"
        image.alpha_mode = "NONE"
        if image.size[0] == 0 or image.size[1] == 0:
            raise ValueError(f"cannot read depth map {path}: Blender found no pixels in it")
        if pack:
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


def _file_pixels(path: str | os.PathLike):
    """((width, height), flat float32 RGBA pixels) of an image file, read by Blender (as load_depth_image does)."""
    path = str(path)
    try:
        temp = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as error:
        raise ValueError(f"cannot read depth map {path}: {error}") from None
    try:
        temp.colorspace_settings.name = "Non-Color"
        temp.alpha_mode = "NONE"
        size = tuple(temp.size)
        if 0 in size or temp.channels != 4:
            raise ValueError(f"cannot read depth map {path}: Blender found no pixels in it")
        pixels = np.empty(size[0] * size[1] * 4, dtype=np.float32)
        temp.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(temp)
    return size, pixels


class PartialDepth:
    """The depth image ``<photo> depth`` shown while an estimate runs, refreshed from the engine's intermediate maps.

    The first ``update`` creates the image (float, Non-Color, with the depth properties and ``depth_partial`` =
    "k/n") or, when the photo already has a depth image, writes the new pixels into it (its packed file or file
    stays as it was until the job ends). ``discard()`` puts the scene back as it was (removes the created image;
    reloads the old one from its packed data / file, or restores its pixels); ``keep()`` packs the partial map so
    it survives the job's temporary folder. ``finish()``: the final result replaced it (nothing to undo).
    """

    def __init__(self, photo_name: str, kind: str = "inverse_depth", properties: dict | None = None):
        self.photo_name = photo_name
        self.kind = kind
        self.properties = dict(properties or {})
        self.image_name: str | None = None  # the image being updated
        self.created = False
        self._backup = None  # (size, pixels) of an old image that cannot be reloaded
        self.updates = 0

    def image(self):
        return bpy.data.images.get(self.image_name) if self.image_name else None

    def update(self, path: str | os.PathLike, done: int = 0, of: int | None = None, kind: str | None = None):
        """Show the map in ``path`` (an EXR the engine wrote) as the photo's depth image. Returns the Image."""
        size, pixels = _file_pixels(path)
        image = self.image()
        if image is None:
            old = bpy.data.images.get(self.photo_name)
            old = find_depth_image(old) if old is not None else bpy.data.images.get(depth_image_name(self.photo_name))
            if is_depth_image(old):
                image, self.created = old, False
                reloadable = old.packed_file is not None or (
                    old.source == "FILE" and os.path.isfile(bpy.path.abspath(old.filepath)))
                if not reloadable and old.size[0] and old.size[1]:
                    backup = np.empty(len(old.pixels), dtype=np.float32)
                    old.pixels.foreach_get(backup)
                    self._backup = (tuple(old.size), backup)
            else:
                image = bpy.data.images.new(depth_image_name(self.photo_name), size[0], size[1], alpha=False,
                                            float_buffer=True, is_data=True)
                image.colorspace_settings.name = "Non-Color"
                image.alpha_mode = "NONE"
                image.use_fake_user = True
                image[KIND_KEY] = kind or self.kind
                image[SOURCE_KEY] = self.photo_name
                for key, value in self.properties.items():
                    if value is not None:
                        image[f"depth_{key}"] = value
                self.created = True
            self.image_name = image.name
        if tuple(image.size) != size:
            image.scale(*size)
        image.pixels.foreach_set(pixels)
        image.update()
        if self.created:
            image["depth_partial"] = f"{done}/{of}" if of is not None else f"{done}/?"
        self.updates += 1
        return image

    def discard(self) -> None:
        """Put the scene back as it was before the first update."""
        image = self.image()
        self.image_name = None
        if image is None:
            return
        if self.created:
            bpy.data.images.remove(image)
        elif self._backup is not None:
            size, pixels = self._backup
            if tuple(image.size) != size:
                image.scale(*size)
            image.pixels.foreach_set(pixels)
            image.update()
        else:
            image.reload()

    def keep(self) -> None:
        """Keep the partial map (cancelled job, the user asked to): packed as EXR, so it outlives the job."""
        image = self.image()
        self.image_name = None
        if image is None:
            return
        image.file_format = "OPEN_EXR"
        image.pack()
        if not self.created:
            image["depth_partial"] = "kept"

    def finish(self) -> None:
        """The final result replaced the image (load_depth_image removed it): forget it."""
        self.image_name = None
