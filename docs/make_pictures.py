"""The README's render: a real photograph (the Middlebury 2014 "Motorcycle" left view, shipped by scikit-image)
turned into a scene with the extension's own scene building, from its ground-truth disparity, seen through a
depth-of-field camera focused on the motorcycle's tank, rendered with Cycles.

    .venv/bin/python docs/make_pictures.py data build/pictures          # photo + disparity (engine venv)
    bash .ci/real_blender.sh run -- blender -b --python docs/make_pictures.py -- render build/pictures
    # -> build/pictures/motorcycle_render.png (copied to docs/ by hand)

The Depth tab's picture comes from the real-Blender suite's screenshots (build/test-artifacts/real-blender/).
"""

import importlib.util
import math
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOCUS_PIXEL = (420, 200)  # the tank, (x, y) from the photo's top-left
FOV = math.radians(55.0)
NEAR, FAR, FSTOP = 2.0, 8.0, 0.7


def write_data(out: Path) -> None:
    """motorcycle.png (741x500 RGB) and motorcycle_disparity.exr (float32, inverse-depth-like, holes filled)."""
    import cv2
    import numpy as np
    import skimage.data

    sys.path.insert(0, str(ROOT))
    from boost_core.image_io import write_exr

    left, _right, disparity = skimage.data.stereo_motorcycle()
    out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / "motorcycle.png"), left[..., ::-1])
    d = np.where(np.isfinite(disparity), disparity, 0).astype(np.float32)
    while not d.all():  # occlusion holes (inf in the ground truth): grow the neighbours' values into them
        grown = cv2.dilate(d, np.ones((3, 3), np.uint8))
        d = np.where(d > 0, d, grown)
    write_exr(out / "motorcycle_disparity.exr", d)


def render(out: Path) -> None:
    import bpy

    spec = importlib.util.spec_from_file_location("batch_depth", ROOT / "scripts" / "batch_depth.py")
    batch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(batch)
    images, build = batch.extension_module("scene.images"), batch.extension_module("scene.build")

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    context = types.SimpleNamespace(scene=scene, collection=scene.collection)
    photo = images.load_photo(out / "motorcycle.png")
    depth = images.load_depth_image(out / "motorcycle_disparity.exr", photo.name, "inverse_depth", {"net": "ground truth"})
    width, height = photo.size
    camera = build.ensure_camera(context, photo.name, width, height, fov=FOV)
    build.build_mesh(context, photo, depth, fov=FOV, resolution=400, near=NEAR, far=FAR, discontinuity=0.08,
                     camera=camera)
    m = build.mapping(depth, fov=FOV, near=NEAR, far=FAR)
    x, y = FOCUS_PIXEL
    distance = build.focus_distance(build.metric_depth(depth, m), "PIXEL", pixel=(x, height - 1 - y))
    build.set_dof(camera, distance, FSTOP)
    build.fit_clipping(camera, NEAR, FAR)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 48
    scene.cycles.use_denoising = False
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"  # the photo's own colours on the emission material
    scene.render.filepath = str(out / "motorcycle_render.png")
    print(f"focus {distance:.3f} m at pixel {FOCUS_PIXEL}, f/{FSTOP}", flush=True)
    bpy.ops.render.render(write_still=True)
    # the same scene from 25 degrees to the side, around the focus point: it is geometry, not a picture
    from mathutils import Matrix, Vector

    pivot = camera.matrix_world @ Vector((0.0, 0.0, -distance))
    orbit = Matrix.Translation(pivot) @ Matrix.Rotation(math.radians(25.0), 4, "Z") @ Matrix.Translation(-pivot)
    camera.matrix_world = orbit @ camera.matrix_world
    camera.data.dof.use_dof = False
    scene.render.filepath = str(out / "motorcycle_orbit.png")
    bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    command, folder = args[0], Path(args[1]).resolve()
    {"data": write_data, "render": render}[command](folder)
