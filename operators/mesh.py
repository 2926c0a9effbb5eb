"""Operators that build geometry from a photo and its depth image: the depth mesh (plus its camera) and the
lightweight displaced plane."""

import math
import typing

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..scene import build
from ..scene import footage, images
from .estimate import context_photo
from .properties import (RANGE_SETTINGS, SHADING_ITEMS, OpDepthRangeProps, OpMeshProps, OpSceneChangeProps,
                         fill_from_settings)

NEEDS_DEPTH = "Estimate depth or load a depth map first"


def resolve_targets(context, image_name: str = "", depth_name: str = ""):
    """(photo, depth image) from operator properties or the context. Raises ValueError naming what is
    missing."""
    depth = None
    if depth_name:
        depth = bpy.data.images.get(depth_name)
        if not images.is_depth_image(depth):
            raise ValueError(f"no depth image named {depth_name!r}")
    photo = bpy.data.images.get(image_name) if image_name else None
    if image_name and photo is None:
        raise ValueError(f"no image named {image_name!r}")
    if photo is None and depth is not None:
        photo = images.photo_of(depth)
    if photo is None and depth is None:
        photo = context_photo(context)
    if images.is_depth_image(photo):
        depth, photo = depth or photo, images.photo_of(photo)
    if photo is None:
        raise ValueError("no photo: open one in the Image Editor or choose it in the Depth tab")
    depth = depth or images.find_depth_image(photo)
    if depth is None:
        raise ValueError(f"{photo.name!r} has no depth image yet; {NEEDS_DEPTH.lower()}")
    return photo, depth


def depth_blocker(context) -> str | None:
    """Why the mesh / plane / camera operators cannot run in this context, or None."""
    try:
        resolve_targets(context)
    except ValueError as error:
        return str(error)[0].upper() + str(error)[1:]
    return None


def _any_depth_image() -> bool:
    return any(images.is_depth_image(image) for image in bpy.data.images)


if typing.TYPE_CHECKING:  # the mixin is checked as the Operator it is mixed into

    class _OperatorMixin(bpy.types.Operator): ...
else:
    _OperatorMixin = object


class DepthOperator(_OperatorMixin):
    image: StringProperty(
        name="Image", description="Photo datablock (default: from the context)", options={"SKIP_SAVE"}
    )
    depth_image: StringProperty(
        name="Depth Image", description="Depth image (default: '<photo> depth')", options={"SKIP_SAVE"}
    )

    @classmethod
    def poll(cls, context):
        if not _any_depth_image():
            cls.poll_message_set(NEEDS_DEPTH)
            return False
        return True

    _settings_names: tuple = ()

    def targets(self, context):
        """(photo, depth) after filling unset properties from the Depth tab; None when reported missing."""
        fill_from_settings(self, context.scene.boost_depth, self._settings_names)
        try:
            return resolve_targets(context, self.image, self.depth_image)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return None


class BOOST_DEPTH_OT_mesh_from_depth(DepthOperator, OpDepthRangeProps, OpMeshProps, OpSceneChangeProps,
                                     bpy.types.Operator):
    """Build a mesh that reproduces the photo from the camera it also creates"""

    bl_idname = "boost_depth.mesh_from_depth"
    bl_label = "Mesh from Depth"
    bl_options = {"REGISTER", "UNDO"}
    _settings_names = RANGE_SETTINGS + (
        "resolution",
        "discontinuity",
        "shading",
        "sensor",
    )

    sensor: FloatProperty(
        name="Sensor",
        default=36.0,
        min=1.0,
        max=200.0,
        subtype="DISTANCE_CAMERA",
        description="Sensor size along the longer side of the new camera",
        options={"SKIP_SAVE"},
    )
    camera: BoolProperty(name="Camera", default=True, description="Create or update the matching camera")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        for name in ("fov", "range_method"):
            layout.prop(self, name)
        if self.range_method == "NEAR_FAR":
            layout.prop(self, "near")
        else:
            layout.prop(self, "scale")
        for name in ("far", "resolution", "discontinuity", "shading", "camera", "sensor"):
            layout.prop(self, name)
        col = layout.column()
        col.enabled = self.camera
        col.prop(self, "set_render_resolution")
        col.prop(self, "make_active_camera")

    def execute(self, context):
        t = self.targets(context)
        if t is None:
            return {"CANCELLED"}
        photo, depth = t
        changes: list[str] = []
        try:
            values = footage.depth_values(depth)  # read (and for footage, checked) before the scene changes
            camera = None
            existing = bpy.data.objects.get(f"{photo.name}{build.CAMERA_SUFFIX}")
            if self.camera:
                h, w = values.shape if photo.size[0] == 0 else (photo.size[1], photo.size[0])
                camera = build.ensure_camera(context, photo.name, w, h, fov=self.fov, sensor=self.sensor,
                                             set_render_resolution=self.set_render_resolution,
                                             make_active_camera=self.make_active_camera, changes=changes)
            elif existing is not None and existing.type == "CAMERA":
                camera = existing
            obj = build.build_mesh(
                context,
                photo,
                depth,
                fov=self.fov,
                resolution=self.resolution,
                range_method=self.range_method,
                near=self.near,
                far=self.far,
                scale=self.scale,
                discontinuity=self.discontinuity,
                shading=self.shading,
                camera=camera,
            )
            if self.camera:
                build.fit_clipping(camera, self.near if self.range_method == "NEAR_FAR" else 1e-3, self.far)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _select_only(context, obj)
        data = obj[build.PROP]
        self.report(
            {"INFO"},
            f"{obj.name}: {data['rows']}x{data['cols']} vertices, "
            f"{len(obj.data.polygons)} faces ({data['dropped_faces']} dropped at discontinuities)"
            + (f"; changed {', '.join(changes)}" if changes else ""),
        )
        return {"FINISHED"}


class BOOST_DEPTH_OT_displaced_plane(DepthOperator, bpy.types.Operator):
    """Add a plane whose Displace modifier is driven by the float depth image (a light, editable variant)"""

    bl_idname = "boost_depth.displaced_plane"
    bl_label = "Displaced Plane from Depth"
    bl_options = {"REGISTER", "UNDO"}
    _settings_names = ("fov", "resolution", "shading", "relief")

    fov: FloatProperty(
        name="Field of View",
        description="Field of view of the photo across its longer side",
        subtype="ANGLE",
        default=math.radians(55.0),
        min=math.radians(1.0),
        max=math.radians(170.0),
        options={"SKIP_SAVE"},
    )
    resolution: IntProperty(
        name="Resolution",
        description="Vertices along the photo's longer side",
        default=256,
        min=2,
        max=4096,
        options={"SKIP_SAVE"},
    )
    shading: EnumProperty(name="Shading", items=SHADING_ITEMS, default="EMISSION", options={"SKIP_SAVE"})
    distance: FloatProperty(
        name="Distance",
        default=5.0,
        min=1e-3,
        subtype="DISTANCE",
        unit="LENGTH",
        description="Distance of the plane to the camera",
        options={"SKIP_SAVE"},
    )
    relief: FloatProperty(
        name="Relief",
        default=1.0,
        min=0.0,
        subtype="DISTANCE",
        unit="LENGTH",
        description="How far the nearest point moves towards the camera",
        options={"SKIP_SAVE"},
    )

    def targets(self, context):
        if not self.properties.is_property_set("distance"):
            self.distance = context.scene.boost_depth.plane_distance
        return super().targets(context)

    def execute(self, context):
        t = self.targets(context)
        if t is None:
            return {"CANCELLED"}
        photo, depth = t
        camera = bpy.data.objects.get(f"{photo.name}{build.CAMERA_SUFFIX}")
        try:
            obj = build.build_displaced_plane(
                context,
                photo,
                depth,
                fov=self.fov,
                resolution=self.resolution,
                distance=self.distance,
                relief=self.relief,
                shading=self.shading,
                camera=camera if camera and camera.type == "CAMERA" else None,
            )
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _select_only(context, obj)
        return {"FINISHED"}


def _select_only(context, obj) -> None:
    view_layer = context.view_layer
    if view_layer is None or obj.name not in view_layer.objects:
        return
    for other in view_layer.objects:
        if other.select_get():
            other.select_set(False)
    obj.select_set(True)
    view_layer.objects.active = obj


classes = (BOOST_DEPTH_OT_mesh_from_depth, BOOST_DEPTH_OT_displaced_plane)
