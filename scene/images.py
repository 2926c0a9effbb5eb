"""Image datablocks: the float depth image ``<photo> depth`` and the photo's pixels on disk for the engine.

Depth images are float, Non-Color, packed into the .blend, kept with a fake user, and carry custom properties:
``depth_kind`` ("depth" | "inverse_depth"), ``depth_source`` (the photo datablock's name) and, when estimated,
``depth_net``, ``depth_mode``, ``depth_R``, ``depth_factor``.
Blender stores pixels bottom-up; every array handed to ``scene.geometry`` is top-down (row 0 = top).
"""

import os
import re
import typing
from pathlib import Path

import bpy
import numpy as np

DEPTH_SUFFIX = " depth"
KIND_KEY = "depth_kind"
SOURCE_KEY = "depth_source"


def depth_image_name(photo_name: str) -> str:
    return f"{photo_name}{DEPTH_SUFFIX}"


def adopt_as_depth(image, photo_name: str, kind: str) -> None:
    """Make ``image`` the depth image of ``photo_name`` (named ``<photo> depth``, kept with a fake user, its kind
    and photo recorded); an earlier depth image of that name hands its users over and is removed."""
    name = depth_image_name(photo_name)
    old = bpy.data.images.get(name)
    if old is not None and old != image:
        old.user_remap(image)
        bpy.data.images.remove(old)
    image.name = name
    image.use_fake_user = True
    image[KIND_KEY] = kind
    image[SOURCE_KEY] = photo_name


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
    path: str | os.PathLike, photo_name: str, kind: str, properties: dict | None = None, pack: bool = True,
    expected_size: tuple | None = None,
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
        mark_as_data(image)
        pack = True
    else:
        image = _load_as_data(path)
    try:
        image.alpha_mode = "NONE"
        if image.size[0] == 0 or image.size[1] == 0:
            raise ValueError(f"cannot read depth map {path}: Blender found no pixels in it")
        if expected_size is not None and tuple(image.size) != tuple(expected_size):
            w, h = expected_size
            raise ValueError(f"the depth map is {image.size[0]}x{image.size[1]} but the photo is {w}x{h} "
                             "(rotated or resized on the way?); it was not loaded")
        if pack and image.packed_file is None:
            image.pack()
    except Exception:
        bpy.data.images.remove(image)
        raise
    adopt_as_depth(image, photo_name, kind)
    for key, value in (properties or {}).items():
        if value is not None:
            image[f"depth_{key}"] = value
    return image


def read_pfm(path) -> np.ndarray:
    """A Portable Float Map's first channel, (height, width) float32, rows as stored (bottom-up).
    Header: 'Pf' (grey) or 'PF' (RGB), 'width height', scale (negative: little-endian). ValueError if broken."""
    with open(path, "rb") as f:
        header: list[bytes] = []
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
    pixels: typing.Any = image.pixels  # the stubs type it as a float; it is a bpy_prop_array
    pixels.foreach_set(rgba.ravel())
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


#: Files the engine (OpenCV) reads exactly as Blender shows them; anything else is handed over as Blender's pixels.
ENGINE_READS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8) of JPEG bytes; 1 when there is none or it cannot be read. Blender ignores it;
    OpenCV applies it."""
    if data[:2] != b"\xff\xd8":
        return 1
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xDA, 0xD9):  # start of scan / end: no more metadata
            break
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\0\0":
            tiff = segment[6:]
            order: typing.Literal["little", "big"] | None = {b"II": "little", b"MM": "big"}.get(tiff[:2])  # type: ignore[assignment]
            if order is None or len(tiff) < 8:
                return 1
            ifd = int.from_bytes(tiff[4:8], order)
            if ifd + 2 > len(tiff):
                return 1
            count = int.from_bytes(tiff[ifd : ifd + 2], order)
            for i in range(count):
                entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
                if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
                    value = int.from_bytes(entry[8:10], order)
                    return value if 1 <= value <= 8 else 1
            return 1
        pos += 2 + length
    return 1


def engine_reads_as_shown(data_or_path, suffix: str) -> bool:
    """Does the engine read this file's pixels exactly as Blender shows them? (A format OpenCV reads, and no
    EXIF rotation that OpenCV would apply and Blender does not.)"""
    suffix = suffix.lower()
    if suffix not in ENGINE_READS:
        return False
    if suffix in (".jpg", ".jpeg"):
        if isinstance(data_or_path, (bytes, bytearray)):
            head = bytes(data_or_path[:1 << 17])
        else:
            with open(data_or_path, "rb") as f:
                head = f.read(1 << 17)  # the EXIF segment is at the start (at most 64 KiB)
        return jpeg_orientation(head) == 1
    return True


def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * np.power(values, 1 / 2.4) - 0.055)


def shown_pixels(image) -> np.ndarray:
    """What Blender shows of ``image``: (height, width, 4) float32 in [0, 1], display sRGB, bottom-up (Blender's
    row order). Float images (EXR, HDR, float generated) hold scene-linear values: they go through the sRGB
    transfer function (the Standard view); byte images already hold their display values; Non-Color data is
    taken as it is."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"image {image.name!r} has no pixels to estimate depth from (is its file missing?)")
    channels = image.channels
    buffer = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(buffer)
    pixels = buffer.reshape(height, width, channels)
    rgba = np.ones((height, width, 4), np.float32)
    if channels >= 3:
        rgba[..., :3] = pixels[..., :3]
    else:
        rgba[..., :3] = pixels[..., :1]
    if image.is_float and not image.colorspace_settings.is_data:
        rgba[..., :3] = _linear_to_srgb(rgba[..., :3])
    return np.clip(rgba, 0.0, 1.0)


def write_pixels_png(rgba_bottom_up: np.ndarray, target: Path) -> Path:
    """Write (height, width, 4) [0, 1] display pixels, bottom-up, as an 8-bit RGB PNG with Blender's writer."""
    height, width = rgba_bottom_up.shape[:2]
    out = bpy.data.images.new("boost_depth_handover", width, height, alpha=False)
    try:
        pixels: typing.Any = out.pixels  # the stubs type it as a float; it is a bpy_prop_array
        pixels.foreach_set(np.ascontiguousarray(rgba_bottom_up, dtype=np.float32).ravel())
        out.filepath_raw = str(target)
        out.file_format = "PNG"
        out.save()
    finally:
        bpy.data.images.remove(out)
    return target


def _frame_user(image):
    """The ImageUser of an Image Editor showing ``image`` (the frame it shows), or None."""
    wm = bpy.context.window_manager
    screens = [w.screen for w in wm.windows if w.screen is not None] if wm else []
    for screen in screens:
        for area in screen.areas:
            if area.type == "IMAGE_EDITOR" and area.spaces.active.image == image:
                return area.spaces.active.image_user
    return None


def photo_file(image, folder: str | os.PathLike) -> Path:
    """A file on disk holding what Blender shows of the photo, for the engine (named after the photo's stem,
    so the engine's outputs are too):

    - the image's own file when the engine reads it as Blender shows it (PNG, JPEG without EXIF rotation,
      TIFF, BMP, WebP) and it has no unsaved edits;
    - its packed bytes, under the same condition;
    - the frame an Image Editor shows (else the scene's frame) of an image sequence, under the same condition;
    - otherwise Blender's pixels written as a PNG into ``folder`` (a job's work folder): EXR / HDR / TGA / DPX
      files, JPEGs that carry an EXIF rotation, generated images, unsaved paint edits (``is_dirty``), movie
      frames; float images pass through the sRGB transfer function;
    - the Render Result / Viewer images: saved with the scene's colour management (``save_render``).
    """
    folder = Path(folder)
    stem = safe_stem(image.name)
    if image.type in {"RENDER_RESULT", "COMPOSITING"}:
        target = folder / f"{stem}.png"
        scene = bpy.context.scene
        settings = scene.render.image_settings
        saved = (settings.file_format, settings.color_mode, settings.color_depth)
        try:
            settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGB", "8"
            image.save_render(str(target), scene=scene)
        except RuntimeError as error:
            raise ValueError(f"{image.name!r} has no pixels yet (render first): {error}") from None
        finally:
            settings.file_format, settings.color_mode, settings.color_depth = saved
        return target
    if not image.is_dirty:
        if image.packed_file is not None:
            suffix = Path(image.filepath).suffix or f".{image.file_format.lower()}"
            data = image.packed_file.data
            if image.source == "FILE" and engine_reads_as_shown(data, suffix):
                target = folder / f"{stem}{suffix}"
                target.write_bytes(data)
                return target
        elif image.source in {"FILE", "SEQUENCE"} and image.filepath:
            user = _frame_user(image) if image.source == "SEQUENCE" else None
            try:
                name = image.filepath_from_user(image_user=user) if user is not None else image.filepath_from_user()
            except TypeError:
                name = image.filepath_from_user()
            path = Path(bpy.path.abspath(name or image.filepath, library=image.library))
            if image.source == "SEQUENCE" and user is None:  # no editor shows it: the scene's frame
                from . import footage

                path = footage.scene_frame_file(image, bpy.context.scene) or path
            if path.is_file() and engine_reads_as_shown(path, path.suffix):
                return path
            if image.source == "SEQUENCE" and path.is_file():
                frame = bpy.data.images.load(str(path), check_existing=False)  # that frame alone
                try:
                    frame.colorspace_settings.name = image.colorspace_settings.name
                    return write_pixels_png(shown_pixels(frame), folder / f"{stem}.png")
                finally:
                    bpy.data.images.remove(frame)
    return write_pixels_png(shown_pixels(image), folder / f"{stem}.png")


def load_photo(path: str | os.PathLike):
    """The image datablock of a photo file (reused when already loaded)."""
    try:
        return bpy.data.images.load(str(path), check_existing=True)
    except RuntimeError as error:
        raise ValueError(f"cannot read photo {path}: {error}") from None


def _load_as_data(path: str):
    """A new image datablock of the depth map file at ``path``, marked as data; ValueError when Blender cannot
    read it."""
    try:
        image = bpy.data.images.load(path, check_existing=False)
    except RuntimeError as error:
        raise ValueError(f"cannot read depth map {path}: {error}") from None
    mark_as_data(image)
    return image


def _file_pixels(path: str | os.PathLike):
    """((width, height), flat float32 RGBA pixels) of an image file, read by Blender (as load_depth_image does)."""
    path = str(path)
    temp = _load_as_data(path)
    try:
        temp.alpha_mode = "NONE"
        size = tuple(temp.size)
        if 0 in size or temp.channels != 4:
            raise ValueError(f"cannot read depth map {path}: Blender found no pixels in it")
        pixels = np.empty(size[0] * size[1] * 4, dtype=np.float32)
        temp_pixels: typing.Any = temp.pixels  # the stubs type it as a float; it is a bpy_prop_array
        temp_pixels.foreach_get(pixels)
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
        self._backup: tuple | None = None  # (size, pixels) of an old image that cannot be reloaded
        self.updates = 0

    def image(self):
        return bpy.data.images.get(self.image_name) if self.image_name else None

    def update(self, path: str | os.PathLike, done: int = 0, of: int | None = None, kind: str | None = None):
        """Show the map in ``path`` (an EXR the engine wrote) as the photo's depth image. Returns the Image."""
        size, pixels = _file_pixels(path)
        image = self.image()
        if image is None:
            photo = bpy.data.images.get(self.photo_name)
            old: typing.Any = (find_depth_image(photo) if photo is not None
                               else bpy.data.images.get(depth_image_name(self.photo_name)))
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
                mark_as_data(image)
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
