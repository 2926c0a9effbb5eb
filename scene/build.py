"""Scene building from a photo and its depth image: the depth mesh, the displaced plane, the photo material and the
depth-of-field camera. Plain functions (no operators), shared by the operators and scripts/batch_depth.py.

The math lives in ``scene.geometry`` (numpy only). Here: datablocks. The mesh is built in camera space
(camera at the origin looking down -Z) and its object gets the camera's world matrix, so seen from the camera
it reproduces the photo. Objects record what they were built from in the custom property ``boost_depth``.
"""

import math
import typing

import bpy
import numpy as np
from mathutils import Euler, Matrix

from . import images
from . import footage, geometry

PROP = "boost_depth"
MESH_SUFFIX = " mesh"
PLANE_SUFFIX = " plane"
CAMERA_SUFFIX = " camera"
MATERIAL_SUFFIX = " photo"


def default_matrix() -> Matrix:
    """Where a new camera goes: at the origin, looking along +Y with Z up (Blender's front view)."""
    return Euler((math.pi / 2.0, 0.0, 0.0), "XYZ").to_matrix().to_4x4()


def mapping(depth_image, *, fov, range_method="NEAR_FAR", near=1.0, far=10.0, scale=1.0) -> dict:
    """What turns the depth image into scene depths; stored on built objects so the camera agrees.
    fov in radians (Blender's angle unit)."""
    return {
        "depth_image": depth_image.name,
        "kind": images.depth_kind(depth_image),
        "fov": float(fov),
        "range_method": range_method,
        "near": float(near),
        "far": float(far),
        "scale": float(scale),
    }


def metric_depth(depth_image, m: dict) -> np.ndarray:
    """Scene depths (H, W) float64, top-down, of ``depth_image`` under mapping ``m``."""
    values = footage.depth_values(depth_image)  # a footage depth: the scene's current frame
    return geometry.metric_depth(
        values, m["kind"], method=m["range_method"], near=m["near"], far=m["far"], scale=m["scale"]
    )


def _link(obj, collection):
    if obj.name not in collection.objects:
        collection.objects.link(obj)


def photo_material(photo, shading: str = "EMISSION"):
    """Material ``<photo> photo`` showing the photo through the mesh UVs (rebuilt on every call)."""
    name = f"{photo.name}{MATERIAL_SUFFIX}"
    material = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0) or material.node_tree is None:
        material.use_nodes = True  # always on (and deprecated) from Blender 5.0
    nodes = material.node_tree.nodes
    links = material.node_tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (400, 0)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = photo
    frames = footage.frame_user_settings(photo)
    if frames is not None:  # footage: the photo's frame follows the timeline as its depth does
        footage.set_frame_user(tex.image_user, *frames)
    tex.extension = "EXTEND"
    tex.interpolation = "Linear"
    tex.location = (-400, 0)
    if shading == "EMISSION":
        shader = nodes.new("ShaderNodeEmission")
        shader.inputs["Strength"].default_value = 1.0
        links.new(tex.outputs["Color"], shader.inputs["Color"])
    elif shading == "PRINCIPLED":
        shader = nodes.new("ShaderNodeBsdfPrincipled")
        shader.inputs["Roughness"].default_value = 1.0
        links.new(tex.outputs["Color"], shader.inputs["Base Color"])
    else:
        raise ValueError(f"shading must be EMISSION or PRINCIPLED, got {shading!r}")
    shader.location = (0, 0)
    links.new(shader.outputs[0], out.inputs["Surface"])
    material[PROP] = {"photo": photo.name, "shading": shading}
    return material


def fill_mesh(mesh, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray) -> None:
    """Fill an empty mesh: vertices (N, 3), quads (F, 4) int, per-vertex uvs (N, 2); one UV map 'UVMap'."""
    n, f = len(vertices), len(faces)
    mesh.vertices.add(n)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    mesh.loops.add(4 * f)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).ravel())
    mesh.polygons.add(f)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 4 * f, 4, dtype=np.int32))
    mesh.update(calc_edges=True)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    if f:
        uv_layer.data.foreach_set("uv", np.ascontiguousarray(uvs[faces.ravel()], dtype=np.float32).ravel())


def _replace_mesh_object(name: str, mesh, collection):
    """The object ``name`` built by us earlier gets the new mesh (its old mesh is removed); else a new
    object."""
    obj = bpy.data.objects.get(name)
    if obj is not None and obj.type == "MESH" and PROP in obj.keys():
        old = obj.data
        obj.data = mesh
        if old.users == 0:
            bpy.data.meshes.remove(old)
    else:
        obj = bpy.data.objects.new(name, mesh)
    _link(obj, collection)
    return obj


def build_mesh(
    context,
    photo,
    depth_image,
    *,
    fov: float,
    resolution: int = 256,
    range_method: str = "NEAR_FAR",
    near: float = 1.0,
    far: float = 10.0,
    scale: float = 1.0,
    discontinuity: float = 0.05,
    shading: str = "EMISSION",
    camera=None,
    collection=None,
):
    """Mesh object ``<photo> mesh`` unprojected from ``depth_image`` (see ``scene.geometry.depth_mesh``),
    with UVs and the photo material, placed at ``camera``'s world matrix (or the default camera placement).
    fov in radians across the longer side. Returns the object."""
    g = geometry
    m = mapping(depth_image, fov=fov, range_method=range_method, near=near, far=far, scale=scale)
    z_map = metric_depth(depth_image, m)
    dm = g.depth_mesh(z_map, math.degrees(fov), resolution, discontinuity=discontinuity)
    collection = collection or context.collection or context.scene.collection
    mesh = bpy.data.meshes.new(f"{photo.name}{MESH_SUFFIX}")
    fill_mesh(mesh, dm.vertices, dm.faces, dm.uvs)
    mesh.materials.append(photo_material(photo, shading))
    obj = _replace_mesh_object(f"{photo.name}{MESH_SUFFIX}", mesh, collection)
    obj.matrix_world = camera.matrix_world.copy() if camera is not None else default_matrix()
    obj[PROP] = {
        **m,
        "type": "MESH",
        "photo": photo.name,
        "resolution": int(resolution),
        "rows": dm.rows,
        "cols": dm.cols,
        "discontinuity": float(discontinuity),
        "dropped_faces": dm.dropped,
        "width": int(z_map.shape[1]),
        "height": int(z_map.shape[0]),
        "footage": footage.DepthSequence.of(depth_image) is not None,  # follows the timeline (footage handler)
    }
    return obj


def build_displaced_plane(
    context,
    photo,
    depth_image,
    *,
    fov: float,
    resolution: int = 256,
    distance: float = 5.0,
    relief: float = 1.0,
    shading: str = "EMISSION",
    camera=None,
    collection=None,
):
    """Lightweight variant: a grid plane ``<photo> plane`` filling the camera's view at ``distance``, with a
    Displace modifier driven by the float depth image (an Image texture, no 8-bit steps) that moves the
    nearest
    point ``relief`` towards the camera and the farthest not at all. Returns the object."""
    g = geometry
    values = footage.depth_values(depth_image)
    kind = images.depth_kind(depth_image)
    sequence = footage.DepthSequence.of(depth_image)
    h, w = values.shape
    dm = g.depth_mesh(np.full((h, w), float(distance)), math.degrees(fov), resolution)
    collection = collection or context.collection or context.scene.collection
    mesh = bpy.data.meshes.new(f"{photo.name}{PLANE_SUFFIX}")
    fill_mesh(mesh, dm.vertices, dm.faces, dm.uvs)
    mesh.materials.append(photo_material(photo, shading))
    obj = _replace_mesh_object(f"{photo.name}{PLANE_SUFFIX}", mesh, collection)
    obj.matrix_world = camera.matrix_world.copy() if camera is not None else default_matrix()

    texture = bpy.data.textures.get(depth_image.name)
    if texture is None or texture.type != "IMAGE":
        texture = bpy.data.textures.new(depth_image.name, "IMAGE")
    texture = typing.cast(bpy.types.ImageTexture, texture)
    texture.image = depth_image
    texture.extension = "EXTEND"
    texture.use_interpolation = True
    texture.use_clamp = False
    if sequence is not None:  # footage: the texture follows the timeline by itself; one range for every frame
        footage.set_frame_user(texture.image_user, sequence.start, sequence.end, sequence.offset)
        lo, hi = footage.value_range(sequence)
    else:
        lo, hi = g.finite_range(values)
    span = (hi - lo) or 1.0
    for old in [mod for mod in obj.modifiers if mod.type == "DISPLACE"]:
        obj.modifiers.remove(old)
    mod = obj.modifiers.new("Depth", "DISPLACE")
    mod.texture = texture
    mod.texture_coords = "UV"
    mod.uv_layer = "UVMap"
    mod.direction = "Z"  # local +Z points at the camera (the plane lies at z = -distance in camera space)
    mod.space = "LOCAL"
    if kind == "inverse_depth":  # larger = nearer: the largest value moves by `relief`
        mod.mid_level, mod.strength = lo, relief / span
    else:  # larger = farther: the smallest value moves by `relief`
        mod.mid_level, mod.strength = hi, -relief / span
    obj[PROP] = {
        "type": "PLANE",
        "photo": photo.name,
        "depth_image": depth_image.name,
        "kind": kind,
        "fov": float(fov),
        "distance": float(distance),
        "relief": float(relief),
        "value_range": [float(lo), float(hi)],
    }
    return obj


def built_object(depth_image, types=("MESH",)):
    """The object built from ``depth_image`` (the active one first), or None."""
    active = bpy.context.view_layer.objects.active if bpy.context.view_layer else None
    candidates = ([active] if active is not None else []) + list(bpy.data.objects)
    for obj in candidates:
        data = obj.get(PROP)
        if data is not None and data.get("type") in types and data.get("depth_image") == depth_image.name:
            return obj
    return None


def ensure_camera(
    context,
    photo_name: str,
    width: int,
    height: int,
    *,
    fov: float,
    sensor: float = 36.0,
    matrix: Matrix | None = None,
    collection=None,
    set_render_resolution: bool = True,
    make_active_camera: bool = True,
    changes: list | None = None,
):
    """Create or update camera ``<photo> camera`` matching a ``width`` x ``height`` photo with field of view
    ``fov`` (radians, across the longer side): sensor fit AUTO, sensor width ``sensor`` mm, lens from the FOV.
    A new camera goes to ``matrix`` (or the default placement); an existing one keeps its transform. With
    ``set_render_resolution`` the scene's render size becomes the photo's size (pixel aspect 1); with
    ``make_active_camera`` the camera becomes the scene camera. What changed in the scene beyond the camera is
    appended to ``changes`` (short sentences for the operator's report). Returns the object."""
    g = geometry
    name = f"{photo_name}{CAMERA_SUFFIX}"
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "CAMERA":
        obj = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        obj.matrix_world = matrix.copy() if matrix is not None else default_matrix()
    _link(obj, collection or context.collection or context.scene.collection)
    cam = typing.cast(bpy.types.Camera, obj.data)
    cam.type = "PERSP"
    cam.sensor_fit = "AUTO"
    cam.sensor_width = float(sensor)
    cam.lens_unit = "MILLIMETERS"
    cam.lens = g.focal_length_mm(math.degrees(fov), sensor)
    cam.shift_x = cam.shift_y = 0.0
    render = context.scene.render
    if set_render_resolution:
        before = (render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y)
        render.resolution_x, render.resolution_y = int(width), int(height)
        render.pixel_aspect_x = render.pixel_aspect_y = 1.0
        if changes is not None and before != (int(width), int(height), 1.0, 1.0):
            changes.append(f"render size {before[0]}x{before[1]} -> {int(width)}x{int(height)}")
    if make_active_camera:
        previous = context.scene.camera
        context.scene.camera = obj
        if changes is not None and previous != obj:
            changes.append(f"scene camera {previous.name if previous else 'none'} -> {obj.name}")
    data = dict(typing.cast(dict, obj.get(PROP)) or {})
    data.update(
        {"type": "CAMERA", "photo": photo_name, "fov": float(fov), "width": int(width), "height": int(height)}
    )
    obj[PROP] = data
    return obj


def fit_clipping(camera, near: float, far: float) -> None:
    """Clip range wide enough for depths in [near, far]."""
    cam = camera.data
    cam.clip_start = min(cam.clip_start, max(1e-4, near * 0.5))
    cam.clip_end = max(cam.clip_end, far * 1.5)


def focus_distance(z_map: np.ndarray, focus: str, *, pixel=None, photo_size=None) -> float:
    """Focus distance (scene units) on a scene-depth map (H, W, top-down).

    focus: 'PIXEL' (``pixel`` = (x, y) in photo pixels, origin bottom-left as in the Image Editor;
    ``photo_size``
    = (width, height) of the photo, when the depth map has another size), 'CENTER' or 'NEAREST'."""
    g = geometry
    if focus == "PIXEL":
        h, w = z_map.shape
        pw, ph = photo_size or (w, h)
        x, y = pixel
        if not (0 <= x < pw and 0 <= y < ph):
            raise ValueError(f"pixel ({x}, {y}) lies outside the {pw}x{ph} photo")
        # to continuous top-down coordinates of the depth map (pixel centres)
        u = (x + 0.5) * w / pw
        v = (ph - y - 0.5) * h / ph
        return g.focus_distance_at(z_map, u, v)
    if focus == "CENTER":
        return g.focus_distance_center(z_map)
    if focus == "NEAREST":
        return g.focus_distance_nearest_region(z_map)
    raise ValueError(f"focus must be PIXEL, CENTER or NEAREST, got {focus!r}")


def focus_over_frames(depth_image, sequence, m: dict, focus: str, *, pixel=None, photo_size=None) -> dict:
    """{scene frame: focus distance} over a footage depth's frames, each from that frame's depth under mapping
    ``m`` (see ``focus_distance``)."""
    distances = {}
    for frame in sequence.scene_frames():
        values = footage.read_frame(sequence.path(frame, ".npy"))
        z_map = geometry.metric_depth(values, m["kind"], method=m["range_method"], near=m["near"], far=m["far"],
                                      scale=m["scale"])
        distances[frame] = focus_distance(z_map, focus, pixel=pixel, photo_size=photo_size)
    return distances


def set_dof(camera, distance: float, fstop: float) -> None:
    dof = camera.data.dof
    dof.use_dof = True
    dof.focus_object = None
    dof.focus_distance = float(distance)
    dof.aperture_fstop = float(fstop)
    data = dict(camera.get(PROP, {}))
    data["focus_distance"] = float(distance)
    camera[PROP] = data
