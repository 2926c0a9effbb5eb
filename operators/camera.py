"""Depth-of-field camera: create or update the camera matching the photo, with DOF on and the focus distance
taken from the depth under a picked pixel, the image centre, or the nearest large region."""

import math

import bpy
from bpy.props import FloatProperty

from ..scene import build
from ..scene import footage, images
from .mesh import DepthOperator
from .properties import RANGE_SETTINGS, OpCameraProps, OpDepthRangeProps, OpSceneChangeProps


class BOOST_DEPTH_OT_dof_camera(DepthOperator, OpDepthRangeProps, OpCameraProps, OpSceneChangeProps,
                                bpy.types.Operator):
    """Create or update the photo's camera with depth of field focused from the depth map"""

    bl_idname = "boost_depth.dof_camera"
    bl_label = "Depth-of-Field Camera"
    bl_options = {"REGISTER", "UNDO"}
    _settings_names = RANGE_SETTINGS + (
        "focus",
        "pixel_x",
        "pixel_y",
        "fstop",
        "sensor",
        "animate_focus",
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "set_render_resolution")
        layout.prop(self, "make_active_camera")
        layout.prop(self, "focus")
        if self.focus == "PIXEL":
            col = layout.column(align=True)
            col.prop(self, "pixel_x")
            col.prop(self, "pixel_y")
        layout.prop(self, "fstop")
        layout.prop(self, "sensor")
        if getattr(self, "_footage", False):
            layout.prop(self, "animate_focus")
        built = getattr(self, "_mapping_from", None)
        if built:
            layout.label(text=f"Depth range and FOV from {built}", icon="INFO")
        else:
            for name in (
                "fov",
                "range_method",
                "near" if self.range_method == "NEAR_FAR" else "scale",
                "far",
            ):
                layout.prop(self, name)

    def execute(self, context):
        t = self.targets(context)
        if t is None:
            return {"CANCELLED"}
        photo, depth = t
        built = build.built_object(depth)
        if built is not None:  # focus on what the mesh shows: its depth range and FOV
            data = built[build.PROP]
            mapping = {
                k: data[k] for k in ("depth_image", "kind", "fov", "range_method", "near", "far", "scale")
            }
            self._mapping_from = built.name
        else:
            try:
                mapping = build.mapping(
                    depth,
                    fov=self.fov,
                    range_method=self.range_method,
                    near=self.near,
                    far=self.far,
                    scale=self.scale,
                )
            except ValueError as error:
                self.report({"ERROR"}, str(error))
                return {"CANCELLED"}
            self._mapping_from = None
        changes: list[str] = []
        try:
            z_map = build.metric_depth(depth, mapping)
            h, w = z_map.shape
            pw, ph = (photo.size[0], photo.size[1]) if photo.size[0] else (w, h)
            distance = build.focus_distance(
                z_map, self.focus, pixel=(self.pixel_x, self.pixel_y), photo_size=(pw, ph)
            )
            sequence = footage.DepthSequence.of(depth)
            self._footage = sequence is not None
            distances = None  # footage: every frame's focus, read before the scene changes
            if sequence is not None and self.animate_focus:
                distances = build.focus_over_frames(depth, sequence, mapping, self.focus,
                                                    pixel=(self.pixel_x, self.pixel_y), photo_size=(pw, ph))
            camera = build.ensure_camera(
                context,
                photo.name,
                pw,
                ph,
                fov=mapping["fov"],
                sensor=self.sensor,
                matrix=built.matrix_world if built is not None else None,
                set_render_resolution=self.set_render_resolution,
                make_active_camera=self.make_active_camera,
                changes=changes,
            )
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        keyed = ""
        if distances is not None and sequence is not None:
            build.set_dof(camera, distance, self.fstop)
            footage.key_focus(camera, distances)
            camera.data.dof.focus_distance = distances[min(max(context.scene.frame_current, sequence.start),
                                                               sequence.end)]
            keyed = f", keyed on frames {sequence.start}-{sequence.end}"
        else:
            footage.clear_focus_keys(camera.data)  # a still focus replaces an animated one
            build.set_dof(camera, distance, self.fstop)
        build.fit_clipping(camera, float(z_map.min()), float(z_map.max()))
        self.report(
            {"INFO"},
            f"{camera.name}: focus {distance:.3f}{keyed}, f/{self.fstop:g}, "
            f"{camera.data.lens:.1f} mm on {camera.data.sensor_width:g} mm"
            + (f"; changed {', '.join(changes)}" if changes else ""),
        )
        return {"FINISHED"}


def image_editors_with_depth(screen):
    """The Image Editor areas of ``screen`` that show a photo with a depth image (or a depth image)."""
    if screen is None:
        return []
    return [area for area in screen.areas if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None
            and (images.find_depth_image(area.spaces.active.image) is not None
                 or images.photo_of(area.spaces.active.image) is not None)]


def image_pixel_at(screen, mouse_x: int, mouse_y: int):
    """What the mouse at window coordinates (``event.mouse_x``, ``event.mouse_y``, from the bottom-left) points
    at: (image, x, y), the pixel of the image shown by the Image Editor under the mouse (x from the left, y from
    the bottom, as the Image Editor counts), mapped through that editor's own view; None when the mouse is not
    over an Image Editor's image area. ``x``/``y`` may lie outside the image (the caller checks)."""
    if screen is None:
        return None
    for area in screen.areas:
        if area.type != "IMAGE_EDITOR" or area.spaces.active.image is None:
            continue
        for region in area.regions:
            if region.type != "WINDOW":
                continue
            if region.x <= mouse_x < region.x + region.width and region.y <= mouse_y < region.y + region.height:
                image = area.spaces.active.image
                u, v = region.view2d.region_to_view(mouse_x - region.x, mouse_y - region.y)  # 0..1, bottom-left
                width, height = image.size
                if not (math.isfinite(u) and math.isfinite(v)):
                    return None
                return image, int(math.floor(u * width)), int(math.floor(v * height))
    return None


class BOOST_DEPTH_OT_pick_focus(bpy.types.Operator):
    """Click on the photo in the Image Editor to focus the depth-of-field camera there (Esc cancels)"""

    bl_idname = "boost_depth.pick_focus"
    bl_label = "Pick Focus"
    bl_options = {"REGISTER", "UNDO"}

    fstop: FloatProperty(name="F-Stop", default=2.8, min=0.1, max=128.0, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if context.window is None or not image_editors_with_depth(context.screen):
            cls.poll_message_set("Show the photo (or its depth) in an Image Editor; estimate depth or load a "
                                 "depth map first")
            return False
        return True

    def invoke(self, context, event):
        if not self.properties.is_property_set("fstop"):
            self.fstop = context.scene.boost_depth.fstop
        context.window.cursor_modal_set("EYEDROPPER")
        context.workspace.status_text_set("Click the point to focus on · Esc/Right-click: cancel")
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _end(self, context):
        context.window.cursor_modal_restore()
        context.workspace.status_text_set(None)

    def modal(self, context, event):
        if event.type in {"ESC", "RIGHTMOUSE"} and event.value == "PRESS":
            self._end(context)
            return {"CANCELLED"}
        if event.type != "LEFTMOUSE" or event.value != "PRESS":
            return {"RUNNING_MODAL"}
        self._end(context)
        # the Image Editor under the mouse, whichever region the operator was started from (sidebar, menu)
        hit = image_pixel_at(context.window.screen, event.mouse_x, event.mouse_y)
        if hit is None:
            self.report({"WARNING"}, "Click on the photo in an Image Editor")
            return {"CANCELLED"}
        image, x, y = hit
        photo = images.photo_of(image) if images.is_depth_image(image) else image
        if photo is not None and tuple(photo.size) != tuple(image.size) and image.size[0] and image.size[1]:
            x, y = x * photo.size[0] // image.size[0], y * photo.size[1] // image.size[1]  # a depth map's pixel
        width, height = (photo or image).size
        if not (0 <= x < width and 0 <= y < height):
            self.report({"WARNING"}, "Click inside the image")
            return {"CANCELLED"}
        if images.find_depth_image(photo or image) is None:
            self.report({"WARNING"}, f"{(photo or image).name} has no depth image: estimate or load one first")
            return {"CANCELLED"}
        s = context.scene.boost_depth
        s.focus, s.pixel_x, s.pixel_y = "PIXEL", x, y
        result = bpy.ops.boost_depth.dof_camera(  # type: ignore[attr-defined]  # registered at run time
            "INVOKE_DEFAULT",
            image=photo.name if photo else "",
            focus="PIXEL",
            pixel_x=x,
            pixel_y=y,
            fstop=self.fstop,
        )
        return {"FINISHED"} if "FINISHED" in result else {"CANCELLED"}


classes = (BOOST_DEPTH_OT_dof_camera, BOOST_DEPTH_OT_pick_focus)
