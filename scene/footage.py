"""Footage: an image sequence or a movie as the photo, its depth as an image sequence on disk, and what follows the
timeline (the depth mesh's vertices, the displaced plane's texture, the photo material, the focus distance).

Frame numbers. Scene frame ``f`` shows the source's frame number ``f + offset`` (a file ``shot_0007.png`` is frame
7; a movie's frames are numbered from 1, as Blender numbers them) and the depth frame of the same number. The
depth of a range ``start..end`` (scene frames) lands in a folder as the engine names it
(``DIR/shot_0007.exr`` for a sequence, ``DIR/<movie stem>_000007.exr`` for a movie) together with ``.npy`` copies
of the same float values, which Python reads without Blender's image loader (the frame handler, the focus
keyframes). Outside ``start..end`` the first / last depth frame is held, as Blender's image users do.

The depth image of footage is an Image with source 'SEQUENCE' (not packed: its frames stay in the folder) whose
custom property ``depth_footage`` records the folder and the names (see :class:`DepthSequence`).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import geometry, images

FOOTAGE_KEY = "depth_footage"
MOVIE_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
_DIGITS = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits (Blender numbers a sequence by it)


class FootageError(ValueError):
    """The footage cannot be used as it is; the message names the problem and the fix."""


# --------------------------------------------------------------------------------------------- the source
@dataclass(frozen=True)
class Source:
    """An image sequence or a movie on disk.

    kind: 'SEQUENCE' | 'MOVIE'; path: the Image's file (a sequence: one of its frames); for a sequence
    ``prefix`` + number zero-padded to ``width`` + ``suffix`` is a frame's file name in ``path.parent``."""

    kind: str
    path: Path
    prefix: str = ""
    width: int = 0
    suffix: str = ""
    frames: int = 0  # a movie's frame count when Blender knows it (0: unknown)

    @property
    def pattern(self) -> Path:
        """The engine's frame pattern (``shot_####.png``) of a sequence; the movie itself for a movie."""
        if self.kind == "MOVIE":
            return self.path
        return self.path.parent / f"{self.prefix}{'#' * self.width}{self.suffix}"

    def frame_file(self, number: int) -> Path:
        """The file of frame ``number`` (a sequence only)."""
        return self.path.parent / f"{self.prefix}{number:0{self.width}d}{self.suffix}"

    @property
    def stem(self) -> str:
        """What the depth folder is named after: the movie's stem, or the sequence's prefix without separators."""
        if self.kind == "MOVIE":
            return self.path.stem
        return self.prefix.rstrip("._- ") or "frames"


def split_sequence_name(name: str) -> tuple[str, int, str, int]:
    """(prefix, width, suffix, number) of a frame file name, numbered by the last run of digits before the
    extension (as Blender numbers a sequence). FootageError when the name holds no number."""
    stem, ext = os.path.splitext(name)
    match = _DIGITS.search(stem)
    if match is None:
        raise FootageError(f"{name!r} has no frame number; an image sequence needs numbered files such as "
                           "shot_0001.png")
    return stem[: match.start()], len(match.group(1)), stem[match.end() :] + ext, int(match.group(1))


def is_footage(image) -> bool:
    """An image sequence or a movie (the Image datablock's source)."""
    return image is not None and not images.is_depth_image(image) and image.source in {"SEQUENCE", "MOVIE"}


def source_of(image) -> Source:
    """The footage on disk behind an Image with source 'SEQUENCE' or 'MOVIE'. FootageError when it is packed or
    has no file."""
    if not is_footage(image):
        raise FootageError(f"{image.name!r} is not an image sequence or a movie")
    if image.packed_file is not None or not image.filepath:
        raise FootageError(f"{image.name!r} is packed into the .blend; footage must be files on disk "
                           "(Image > Unpack, or open the frames again)")
    path = Path(bpy.path.abspath(image.filepath, library=image.library))
    if image.source == "MOVIE":
        return Source("MOVIE", path, frames=int(getattr(image, "frame_duration", 0) or 0))
    prefix, width, suffix, _ = split_sequence_name(path.name)
    return Source("SEQUENCE", path, prefix, width, suffix)


def scene_frame_file(image, scene) -> Path | None:
    """The file of an image sequence shown at the scene's current frame (frame number = scene frame + the Depth
    tab's offset), or None when the name holds no number."""
    try:
        source = source_of(image)
    except FootageError:
        return None
    if source.kind != "SEQUENCE":
        return None
    settings = getattr(scene, "boost_depth", None)
    return source.frame_file(int(scene.frame_current) + int(getattr(settings, "footage_offset", 0)))


def frame_range(settings, scene) -> tuple[int, int]:
    """The scene frames an estimate covers: the scene's range, or the Depth tab's own."""
    if settings.footage_scene_range:
        return int(scene.frame_start), int(scene.frame_end)
    return int(settings.footage_start), int(settings.footage_end)


def default_folder(source: Source) -> Path:
    """Where the depth sequence goes unless the Depth tab says otherwise: ``<stem>_depth`` beside the footage."""
    return source.path.parent / f"{source.stem}_depth"


def output_folder(settings, source: Source) -> Path:
    folder = settings.footage_folder.strip()
    return Path(bpy.path.abspath(folder)) if folder else default_folder(source)


JOB_FOLDER = ".boost_depth_job"  # the engine's job file folder beside its outputs (issue 22)


def has_job(folder: Path) -> bool:
    """Does ``folder`` hold the engine's record of an earlier run (``.boost_depth_job/job.json``)?"""
    return (Path(folder) / JOB_FOLDER / "job.json").is_file()


def missing_frames(source: Source, numbers) -> list[Path]:
    """The frame files of ``numbers`` that do not exist (a sequence), or the movie when it is missing."""
    if source.kind == "MOVIE":
        return [] if source.path.is_file() else [source.path]
    return [source.frame_file(n) for n in numbers if not source.frame_file(n).is_file()]


# --------------------------------------------------------------------------------------------- the depth sequence
@dataclass(frozen=True)
class DepthSequence:
    """The depth frames of footage: ``folder / (prefix + number:0{width}d + suffix + ext)`` for the numbers
    ``start + offset .. end + offset``, shown at scene frames ``start .. end``."""

    folder: str
    prefix: str
    width: int
    suffix: str  # the part of a frame's stem after its number (usually empty)
    start: int
    end: int
    offset: int

    @classmethod
    def for_source(cls, source: Source, folder: Path, start: int, end: int, offset: int) -> "DepthSequence":
        """The names the engine gives the outputs (the input's stem for a sequence frame, ``<stem>_<n:06d>`` for
        a movie frame)."""
        if source.kind == "MOVIE":
            return cls(str(folder), f"{source.path.stem}_", 6, "", start, end, offset)
        stem_suffix = source.suffix[: len(source.suffix) - len(source.path.suffix)]  # ".png" -> ""
        return cls(str(folder), source.prefix, source.width, stem_suffix, start, end, offset)

    @classmethod
    def of(cls, image) -> "DepthSequence | None":
        """The record of a footage depth image, or None for a still."""
        if image is None:
            return None
        data = image.get(FOOTAGE_KEY)
        if data is None:
            return None
        data = data.to_dict() if hasattr(data, "to_dict") else dict(data)
        return cls(str(data["folder"]), str(data["prefix"]), int(data["width"]), str(data["suffix"]),
                   int(data["start"]), int(data["end"]), int(data["offset"]))

    def record(self) -> dict:
        return {"folder": self.folder, "prefix": self.prefix, "width": self.width, "suffix": self.suffix,
                "start": self.start, "end": self.end, "offset": self.offset}

    def scene_frames(self) -> range:
        return range(self.start, self.end + 1)

    def number(self, scene_frame: int) -> int:
        """The depth frame number shown at ``scene_frame`` (the first / last held outside the range)."""
        return min(max(int(scene_frame), self.start), self.end) + self.offset

    def path(self, scene_frame: int, ext: str = ".exr") -> Path:
        folder = Path(bpy.path.abspath(self.folder))  # "//depth/" in a saved .blend: beside it, wherever it is
        return folder / f"{self.prefix}{self.number(scene_frame):0{self.width}d}{self.suffix}{ext}"


def set_frame_user(image_user, start: int, end: int, offset: int) -> None:
    """Make an ImageUser show frame number ``f + offset`` at scene frame ``f`` for ``f`` in ``start..end`` (the
    first / last frame held outside) and follow the timeline by itself (auto refresh: renders on a farm need no
    Python)."""
    image_user.frame_duration = int(end) - int(start) + 1
    image_user.frame_start = int(start)
    image_user.frame_offset = int(start) - 1 + int(offset)
    image_user.use_cyclic = False
    image_user.use_auto_refresh = True


def frame_user_settings(image) -> tuple[int, int, int] | None:
    """(start, end, offset) that an ImageUser of ``image`` needs: a footage depth image's own, or for a photo its
    depth's; None for stills and footage without depth."""
    if image is None:
        return None
    sequence = DepthSequence.of(image) or DepthSequence.of(images.find_depth_image(image))
    if sequence is None or image.source not in {"SEQUENCE", "MOVIE"}:
        return None
    return sequence.start, sequence.end, sequence.offset


def load_depth_sequence(sequence: DepthSequence, photo_name: str, kind: str, properties: dict | None = None):
    """The depth image ``<photo> depth`` as an Image with source 'SEQUENCE' over the depth frames (not packed,
    float, data), replacing (remapping the users of) an older depth image of that name. ValueError naming the
    missing frames when any is not on disk, or when Blender cannot read the first."""
    missing = [sequence.path(f) for f in sequence.scene_frames() if not sequence.path(f).is_file()]
    missing += [sequence.path(f, ".npy") for f in sequence.scene_frames() if not sequence.path(f, ".npy").is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ValueError(f"the depth sequence is incomplete: {', '.join(str(p) for p in missing[:3])}{more} "
                         "not found; run Estimate Depth again (finished frames are kept)")
    try:
        image = bpy.data.images.load(str(sequence.path(sequence.start)), check_existing=False)
    except RuntimeError as error:
        raise ValueError(f"cannot read depth frame {sequence.path(sequence.start)}: {error}") from None
    try:
        images.mark_as_data(image)
        image.alpha_mode = "NONE"
        if image.size[0] == 0 or image.size[1] == 0:
            raise ValueError(f"cannot read depth frame {sequence.path(sequence.start)}: Blender found no pixels")
        image.source = "SEQUENCE"
    except Exception:
        bpy.data.images.remove(image)
        raise
    images.adopt_as_depth(image, photo_name, kind)
    record = sequence.record()
    if bpy.data.filepath and bpy.context.preferences.filepaths.use_relative_paths:
        try:  # relative to the saved .blend, as Blender stores the files it opens: the shot moves as a whole
            image.filepath = bpy.path.relpath(bpy.path.abspath(image.filepath))
            record["folder"] = bpy.path.relpath(str(Path(bpy.path.abspath(sequence.folder)))) + "/"
        except ValueError:  # another drive (Windows): keep them absolute
            pass
    image[FOOTAGE_KEY] = record
    for key, value in (properties or {}).items():
        if value is not None:
            image[f"depth_{key}"] = value
    forget_cache()
    return image


# --------------------------------------------------------------------------------------------- reading frames
_CACHE_BYTES = 256 << 20  # per cache (depth maps; mesh vertices): a few 4K frames, dozens of small ones
_values: OrderedDict = OrderedDict()  # (path, mtime_ns, size) -> (H, W) float32, top-down


def _file_key(path: Path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size)


def _cached(cache: OrderedDict, key, make):
    """``cache[key]``, made by ``make()`` when missing; the least recently used arrays are dropped beyond
    _CACHE_BYTES (the newest always stays)."""
    value = cache.get(key)
    if value is None:
        value = make()
        cache[key] = value
        while len(cache) > 1 and sum(v.nbytes for v in cache.values()) > _CACHE_BYTES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


def read_frame(path: Path) -> np.ndarray:
    """The depth values (H, W) float32, top-down, of one ``.npy`` frame; cached while the file is unchanged.
    ValueError when it is missing or not a 2-D map."""
    key = _file_key(path)
    if key is None:
        raise ValueError(f"depth frame {path} not found; run Estimate Depth over the frame range again")

    def load():
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, EOFError, ValueError) as error:
            raise ValueError(f"cannot read depth frame {path} ({error}); run Estimate Depth over the frame range "
                             "again (Start Over)") from None
        if values.ndim == 3:
            values = values[..., 0]
        if values.ndim != 2:
            raise ValueError(f"depth frame {path} holds a {values.shape} array, not a depth map")
        values = np.ascontiguousarray(values, dtype=np.float32)
        values.setflags(write=False)
        return values

    return _cached(_values, key, load)


def forget_cache() -> None:
    _values.clear()
    _vertices.clear()


def depth_values(depth_image, scene_frame: int | None = None) -> np.ndarray:
    """The values of a depth image at ``scene_frame`` (default: the scene's frame): a footage depth's frame from
    its ``.npy`` file, a still's pixels."""
    sequence = DepthSequence.of(depth_image)
    if sequence is None:
        return images.read_depth(depth_image)
    frame = bpy.context.scene.frame_current if scene_frame is None else scene_frame
    return read_frame(sequence.path(frame, ".npy"))


def value_range(sequence: DepthSequence, samples: int = 1 << 18) -> tuple[float, float]:
    """(min, max) of the finite values over every depth frame (frames larger than ``samples`` pixels are read at
    every n-th pixel)."""
    lo, hi = np.inf, -np.inf
    for frame in sequence.scene_frames():
        values = np.load(sequence.path(frame, ".npy"), mmap_mode="r", allow_pickle=False)
        step = max(1, int(np.sqrt(values.shape[0] * values.shape[1] / samples)))
        sample = np.asarray(values[::step, ::step] if values.ndim == 2 else values[::step, ::step, 0])
        flo, fhi = geometry.finite_range(sample)
        lo, hi = min(lo, flo), max(hi, fhi)
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------- the mesh follows
_vertices: OrderedDict = OrderedDict()  # (file key, mapping, rows, cols) -> (N*3,) float32


def grid_vertices(values: np.ndarray, m: dict, rows: int, cols: int) -> np.ndarray:
    """Camera-space vertex positions (rows*cols*3,) float32 of the depth mesh's grid for one depth map under
    mapping ``m`` (as ``scene.build.mapping``): the same pinhole unprojection as ``geometry.depth_mesh``."""
    z_map = geometry.metric_depth(values, m["kind"], method=m["range_method"], near=m["near"], far=m["far"],
                                  scale=m["scale"])
    h, w = z_map.shape
    intr = geometry.intrinsics_from_fov(w, h, np.degrees(m["fov"]))
    xs, ys = geometry.grid_coordinates(w, h, rows, cols)
    z = geometry.bilinear_sample(z_map, xs, ys)
    return geometry.unproject(z, xs, ys, intr).astype(np.float32).ravel()


def follow_mesh(obj, depth_image, scene_frame: int) -> bool:
    """Move the vertices of a depth mesh built from footage to the depth of ``scene_frame``. False (nothing
    changed) when the mesh no longer has the grid's vertex count (edited) or the frame is missing."""
    from .build import PROP

    data = obj.get(PROP)
    sequence = DepthSequence.of(depth_image)
    if data is None or sequence is None or obj.type != "MESH":
        return False
    rows, cols = int(data["rows"]), int(data["cols"])
    mesh = obj.data
    if len(mesh.vertices) != rows * cols:
        return False
    path = sequence.path(scene_frame, ".npy")
    key = _file_key(path)
    if key is None:
        return False
    m = {k: data[k] for k in ("kind", "fov", "range_method", "near", "far", "scale")}
    vkey = (key, tuple(sorted(m.items())), rows, cols)
    co = _cached(_vertices, vkey, lambda: grid_vertices(read_frame(path), m, rows, cols))
    mesh.vertices.foreach_set("co", co)  # always written: undo may have brought back another frame's shape
    mesh.update()
    return True


@bpy.app.handlers.persistent
def follow_frame(scene, _depsgraph=None) -> None:
    """frame_change_post: every depth mesh of footage in ``scene`` takes the current frame's depth. Returns at
    once when no depth image is footage."""
    footage = [image for image in bpy.data.images if image.get(FOOTAGE_KEY) is not None]
    if not footage:
        return
    from .build import PROP

    names = {image.name for image in footage}
    for obj in scene.objects:
        data = obj.get(PROP)
        if data is None or data.get("type") != "MESH" or not data.get("footage"):
            continue
        name = data.get("depth_image")
        if name not in names:
            continue
        try:
            follow_mesh(obj, bpy.data.images[name], scene.frame_current)
        except (ValueError, OSError) as error:  # a frame deleted or broken: keep the last shape, say why once
            _warn_once(f"Boost Depth: {obj.name}: {error}")


_warned: set = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message)


def register_handlers() -> None:
    if follow_frame not in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.append(follow_frame)


def unregister_handlers() -> None:
    while follow_frame in bpy.app.handlers.frame_change_post:
        bpy.app.handlers.frame_change_post.remove(follow_frame)
    forget_cache()


# --------------------------------------------------------------------------------------------- focus over time
FOCUS_PATH = "dof.focus_distance"


def _fcurves(camera_data):
    """The F-curve collection of a camera datablock's action (Blender 4.2's ``action.fcurves``, 5.0's slot
    channel bag), or None."""
    anim = camera_data.animation_data
    action = anim.action if anim is not None else None
    if action is None:
        return None
    if bpy.app.version < (5, 0, 0):
        return action.fcurves
    from bpy_extras import anim_utils

    channelbag = getattr(anim_utils, "action_get_channelbag_for_slot")  # Blender 4.4+ (the stubs are 4.2's)
    bag = channelbag(action, anim.action_slot)
    return bag.fcurves if bag is not None else None


def focus_fcurve(camera_data):
    """The F-curve animating the camera's focus distance, or None."""
    fcurves = _fcurves(camera_data)
    return fcurves.find(FOCUS_PATH) if fcurves is not None else None


def clear_focus_keys(camera_data) -> None:
    """Remove the focus distance's animation (the other animation of the camera stays)."""
    fcurves = _fcurves(camera_data)
    fcurve = fcurves.find(FOCUS_PATH) if fcurves is not None else None
    if fcurve is not None:
        fcurves.remove(fcurve)


def key_focus(camera, distances: dict) -> None:
    """Keyframe the camera's focus distance, linear between keys: {scene frame: distance}; replaces earlier
    keys of it."""
    cam = camera.data
    clear_focus_keys(cam)
    for frame, distance in sorted(distances.items()):
        cam.dof.focus_distance = float(distance)
        cam.keyframe_insert(FOCUS_PATH, frame=int(frame))
    fcurve = focus_fcurve(cam)
    if fcurve is not None:
        for point in fcurve.keyframe_points:
            point.interpolation = "LINEAR"


def retime_users(photo, depth_image, sequence: DepthSequence) -> int:
    """Everything that shows the photo or its depth image follows the timeline with the depth's frame mapping:
    Image Editors, image textures (the displaced plane's) and image nodes of materials (the photo material).
    Returns how many image users were set."""
    targets = {image for image in (photo, depth_image) if image is not None}
    users = []
    wm = bpy.context.window_manager
    for window in (wm.windows if wm else []):
        screen = window.screen
        for area in (screen.areas if screen else []):
            if area.type == "IMAGE_EDITOR" and area.spaces.active.image in targets:
                users.append(area.spaces.active.image_user)
    for texture in bpy.data.textures:
        if texture.type == "IMAGE" and getattr(texture, "image", None) in targets:
            users.append(getattr(texture, "image_user"))
    for material in bpy.data.materials:
        tree = material.node_tree
        for node in (tree.nodes if tree is not None else []):
            if node.type == "TEX_IMAGE" and getattr(node, "image", None) in targets:
                users.append(getattr(node, "image_user"))
    for user in users:
        set_frame_user(user, sequence.start, sequence.end, sequence.offset)
    return len(users)
