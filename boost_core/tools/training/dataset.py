"""The merge network's training data (SPEC part two §A.2-§A.4): preparation from photos, and reading samples.

Preparation (:func:`prepare_dataset`), for every photo of a folder, in name order:

1. **Whole-image estimates** (§A.2) with a registered base network at two resolutions: ``low_res`` (default the
   network's receptive field, 384 for MiDaS v2 as the reference) and ``high_res`` (default 672), each brought back
   to the photo's size, min-max normalised and stored as 16-bit PNGs (``whole_low_est/``, ``whole_high_est/``),
   truncated to uint16 as the reference's ``write_depth``.
2. **Crops** (§A.3) on the reference's grids: for each (side, stride), centres ``k = b : stride : W-b`` (columns,
   outer loop) and ``j = b : stride : H-b`` (rows), ``b = side/2``, MATLAB colon ranges (end included when hit).
   The photo (as 16-bit, ``im2uint16``), the high-res and the low-res estimate are cropped and resized to
   ``crop_size`` (672) with MATLAB's bicubic ``imresize`` (antialiased when shrinking; ``training.imresize``):
   ``rgb/``, ``gtfake/`` (the *proxy ground truth*) and ``outer/`` (the low-res input). Names are
   ``<stem>_&<c1>_<c2>&.png`` with column / row grid counters starting at 0, 100, 200 for the three sizes.
3. **Inner** (§A.3 step 7): the base network at ``high_res`` on each RGB crop, read back as 8 bits as the
   reference's cv2 reader does (16-bit value >> 8), written to ``inner/`` (the high-res input).

The last ``test_count`` photos go to ``test/`` (the reference: 2 of Middlebury), the others to ``train/``.
Crop grids: ``"ibims"`` (480/70, 360/80, 280/50: 51 crops of a 640x480 photo), ``"middlebury"`` (1800/100,
1400/150, 1000/250), ``"auto"`` (the IBims grid scaled by the photo's shorter side / 480) or explicit
``"SIDE:STRIDE,..."``.

Differences from the reference: estimates are resized back with OpenCV's cubic (the reference's MiDaS script
uses torch's bicubic; both a = -0.75, borders differ); any registered base network may be used (the official
merge net was trained on MiDaS v2 inverse depth); an interrupted preparation resumes where it stopped.

Reading (:class:`MergeDataset`, §A.4): ``<root>/<phase>/{outer,inner,gtfake}`` with identical file names; each
PNG / 65536 as float32; in training the guided filters ``inner <- GF(gtfake, inner)`` and
``outer <- GF(outer, gtfake)`` (r = 64, eps = 1e-8); then each map min-max to [0, 1] and ``2x - 1``.
No augmentation (the reference has none).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ...normalise import min_max
from .guided_filter import guided_filter
from .imresize import imresize

SUBFOLDERS = ("rgb", "outer", "inner", "gtfake")
SAMPLE_FOLDERS = ("outer", "inner", "gtfake")
CROP_PRESETS = {
    "middlebury": ((1800, 100), (1400, 150), (1000, 250)),
    "ibims": ((480, 70), (360, 80), (280, 50)),
}
IBIMS_SHORT_SIDE = 480
OFFSET_STEP = 100  # counter offset between crop sizes (0, 100, 200)
HIGH_RES = 672
CROP_SIZE = 672
GF_RADIUS = 64
GF_EPS = 1e-8
PNG_SCALE = 65536.0  # the reference's loader divides by 65536, not 65535


@dataclass(frozen=True)
class CropSpec:
    """One crop size: ``side`` (even, pixels of the photo), grid ``stride`` and the name counter ``offset``."""

    side: int
    stride: int
    offset: int


def parse_crops(text: str, image_shape: tuple[int, int] | None = None) -> list[CropSpec]:
    """"ibims" | "middlebury" | "auto" | "SIDE:STRIDE,SIDE:STRIDE,..." -> CropSpecs (offsets 0, 100, 200, ...).

    "auto" scales the IBims grid by min(H, W) / 480 and needs ``image_shape`` = (H, W).
    Raises ValueError for a malformed spec or an odd / non-positive side.
    """
    text = text.strip().lower()
    if text in CROP_PRESETS:
        pairs = CROP_PRESETS[text]
    elif text == "auto":
        if image_shape is None:
            raise ValueError("auto crops need the photo's size")
        factor = min(image_shape) / IBIMS_SHORT_SIDE
        pairs = tuple((2 * max(1, round(side * factor / 2)), max(1, round(stride * factor)))
                      for side, stride in CROP_PRESETS["ibims"])
    else:
        pairs = []
        for item in text.split(","):
            try:
                side, stride = (int(v) for v in item.split(":"))
            except ValueError:
                raise ValueError(f"bad crop spec {item!r}: use SIDE:STRIDE (e.g. 480:70), or one of auto, "
                                 f"{', '.join(CROP_PRESETS)}") from None
            pairs.append((side, stride))
    specs = []
    for index, (side, stride) in enumerate(pairs):
        if side < 2 or side % 2 or stride < 1:
            raise ValueError(f"crop side must be even and >= 2 and stride >= 1, got {side}:{stride}")
        specs.append(CropSpec(side, stride, OFFSET_STEP * index))
    return specs


def crop_grid(height: int, width: int, spec: CropSpec) -> list[tuple[int, int, int, int]]:
    """The crops of one size on an (H, W) photo: (c1, c2, top, left), 0-based top-left, in the reference's order.

    Columns are the outer loop. c1 / c2 are the column / row grid counters (starting at ``spec.offset``).
    """
    half = spec.side // 2
    cols = range(half, width - half + 1, spec.stride)  # MATLAB half:stride:W-half (1-based centres)
    rows = range(half, height - half + 1, spec.stride)
    return [(spec.offset + ci, spec.offset + ri, j - half, k - half)
            for ci, k in enumerate(cols) for ri, j in enumerate(rows)]


def crop_name(stem: str, c1: int, c2: int) -> str:
    return f"{stem}_&{c1}_{c2}&.png"


def write_png(path: Path, image: np.ndarray) -> None:
    """Write a uint16 (H, W) or RGB (H, W, 3) array as PNG, atomically (RGB given in RGB order)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.tobytes())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_png16(path: Path) -> np.ndarray:
    """A single-channel PNG as stored (uint16 or uint8 array)."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise OSError(f"cannot read {path} as a PNG")
    if image.ndim == 3:
        image = image[..., 0]
    return image


def quantize16(depth: np.ndarray) -> np.ndarray:
    """The reference's ``write_depth``: uint16(65535·(d - min)/(max - min)), truncated (zeros when constant)."""
    from ...image_io import quantize16 as _quantize16

    return _quantize16(depth)


@dataclass(frozen=True)
class PrepareSettings:
    """What a prepared dataset was made with (stored as ``dataset.json`` in its root)."""

    net: str
    low_res: int
    high_res: int
    crop_size: int
    crops: str
    test_count: int


def list_photos(folder: Path) -> list[Path]:
    """Photos of ``folder`` in name order; ValueError when two share a stem (their outputs would collide)."""
    from ...image_io import PHOTO_EXTENSIONS

    photos = sorted(p for p in Path(folder).iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in PHOTO_EXTENSIONS)
    stems: dict[str, Path] = {}
    for photo in photos:
        if photo.stem in stems:
            raise ValueError(f"{photo.name} and {stems[photo.stem].name} share the name {photo.stem!r}; "
                             "rename one (crop names are built from it)")
        stems[photo.stem] = photo
    return photos


def prepare_dataset(images: str | Path, output: str | Path, net, model, *, device: str = "cpu",
                    low_res: int | None = None, high_res: int = HIGH_RES, crop_size: int = CROP_SIZE,
                    crops: str = "auto", test_count: int = 0, overwrite: bool = False,
                    log: Callable[[str], None] = print, cancel=None) -> dict:
    """Build a merge-net training set in ``output`` from the photos in ``images`` (see the module docstring).

    net: a registry ``BaseNetwork``; model: that network loaded (``registry.load_base``) on ``device``.
    Photos already done by an earlier run with the same settings are skipped unless ``overwrite``.
    Returns {"photos": n, "skipped": n, "crops": {"train": n, "test": n}}.
    """
    from ...networks.estimate import single_estimate

    images, output = Path(images), Path(output)
    low_res = int(low_res or net.receptive_field)
    settings = PrepareSettings(net.name, low_res, int(high_res), int(crop_size), crops, int(test_count))
    photos = list_photos(images)
    if not photos:
        raise ValueError(f"no photo in {images}")
    parse_crops(crops, (IBIMS_SHORT_SIDE, IBIMS_SHORT_SIDE))  # fail early on a malformed spec
    if test_count < 0 or test_count > len(photos):
        raise ValueError(f"test_count must be between 0 and the number of photos ({len(photos)}), got {test_count}")
    output.mkdir(parents=True, exist_ok=True)
    settings_file = output / "dataset.json"
    if settings_file.exists() and not overwrite:
        previous = json.loads(settings_file.read_text(encoding="utf-8"))
        if previous != asdict(settings):
            raise ValueError(f"{output} holds a dataset prepared with other settings ({previous}); "
                             "pass --overwrite to rebuild it, or choose another output folder")
    _write_text(settings_file, json.dumps(asdict(settings), indent=1))
    markers = output / ".prepared"
    markers.mkdir(exist_ok=True)

    counts = {"train": 0, "test": 0}
    skipped = 0
    for index, photo in enumerate(photos):
        if cancel is not None and cancel.is_set():
            raise KeyboardInterrupt
        subset = "test" if index >= len(photos) - test_count else "train"
        marker = markers / f"{photo.stem}.json"
        if marker.exists() and not overwrite:
            done = json.loads(marker.read_text(encoding="utf-8"))
            counts[done["subset"]] += done["crops"]
            skipped += 1
            log(f"{photo.name}: already prepared ({done['crops']} crops), skipped")
            continue
        n = _prepare_photo(photo, output, subset, net, model, device, settings, single_estimate)
        counts[subset] += n
        _write_text(marker, json.dumps({"subset": subset, "crops": n}))
        log(f"{photo.name}: {n} crops -> {subset}")
    return {"photos": len(photos), "skipped": skipped, "crops": counts}


def _prepare_photo(photo: Path, output: Path, subset: str, net, model, device, settings: PrepareSettings,
                   single_estimate) -> int:
    from ...image_io import read_image

    rgb = read_image(photo)  # float64 (H, W, 3) in [0, 1]
    height, width = rgb.shape[:2]
    low = quantize16(single_estimate(net, model, rgb, settings.low_res, device))
    high = quantize16(single_estimate(net, model, rgb, settings.high_res, device))
    write_png(output / "whole_low_est" / f"{photo.stem}.png", low)
    write_png(output / "whole_high_est" / f"{photo.stem}.png", high)
    rgb16 = np.round(rgb * 65535.0).astype(np.uint16)  # im2uint16: 8-bit values x 257
    size = (settings.crop_size, settings.crop_size)
    n = 0
    for spec in parse_crops(settings.crops, (height, width)):
        for c1, c2, top, left in crop_grid(height, width, spec):
            window = (slice(top, top + spec.side), slice(left, left + spec.side))
            rgb_crop = imresize(rgb16[window], size)
            name = crop_name(photo.stem, c1, c2)
            folder = output / subset
            write_png(folder / "rgb" / name, rgb_crop)
            write_png(folder / "gtfake" / name, imresize(high[window], size))
            write_png(folder / "outer" / name, imresize(low[window], size))
            rgb8 = (rgb_crop >> 8).astype(np.float64) / 255.0  # the reference reads the 16-bit crop as 8-bit
            inner = single_estimate(net, model, rgb8, settings.high_res, device)
            write_png(folder / "inner" / name, quantize16(inner))
            n += 1
    return n


def _write_text(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------ reading

def list_samples(root: str | Path, phase: str = "train") -> list[str]:
    """Sample names of ``<root>/<phase>``: the sorted PNG names, identical in outer/, inner/ and gtfake/."""
    base = Path(root) / phase
    names = {}
    for folder in SAMPLE_FOLDERS:
        path = base / folder
        if not path.is_dir():
            raise ValueError(f"{path} is missing: a dataset folder holds {phase}/outer, {phase}/inner and "
                             f"{phase}/gtfake (python -m boost_core prepare-dataset writes them)")
        names[folder] = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".png"
                               and not p.name.startswith("."))
    reference = names["outer"]
    if not reference:
        raise ValueError(f"{base / 'outer'} holds no PNG sample")
    for folder in ("inner", "gtfake"):
        if names[folder] != reference:
            missing = sorted(set(reference) ^ set(names[folder]))[:3]
            raise ValueError(f"{base / folder} does not hold the same files as {base / 'outer'} "
                             f"(e.g. {', '.join(missing)}); samples are paired by name")
    return reference


class MergeDataset:
    """``torch.utils.data``-compatible dataset of ``<root>/<phase>/{outer,inner,gtfake}`` samples (SPEC §A.4).

    Item: {"outer", "inner", "gtfake": float32 tensors (1, h, w) in [-1, 1], "name": str}. With
    ``guided=True`` (training) the guided filters of §A.4 are applied first (radius ``gf_radius``, eps 1e-8).
    """

    def __init__(self, root: str | Path, phase: str = "train", guided: bool | None = None,
                 gf_radius: int = GF_RADIUS, gf_eps: float = GF_EPS):
        self.root = Path(root)
        self.phase = phase
        self.guided = (phase == "train") if guided is None else guided
        self.gf_radius = gf_radius
        self.gf_eps = gf_eps
        self.names = list_samples(root, phase)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> dict[str, np.ndarray]:
        """The sample's three maps as float32 (h, w) arrays in [-1, 1], plus "name"."""
        name = self.names[index]
        maps = {k: read_png16(self.root / self.phase / k / name).astype(np.float32) / np.float32(PNG_SCALE)
                for k in SAMPLE_FOLDERS}
        shapes = {m.shape for m in maps.values()}
        if len(shapes) != 1:
            raise ValueError(f"sample {name}: outer, inner and gtfake have different sizes {sorted(shapes)}")
        if self.guided:
            inner = guided_filter(maps["gtfake"], maps["inner"], self.gf_radius, self.gf_eps)
            outer = guided_filter(maps["outer"], maps["gtfake"], self.gf_radius, self.gf_eps)
            maps["inner"], maps["outer"] = inner.astype(np.float32), outer.astype(np.float32)
        out = {k: (min_max(v) * 2 - 1).astype(np.float32) for k, v in maps.items()}
        out["name"] = name
        return out

    def __getitem__(self, index: int) -> dict:
        import torch

        sample = self.load(index)
        return {k: (torch.from_numpy(v)[None] if k != "name" else v) for k, v in sample.items()}

