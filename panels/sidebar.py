"""The "Depth" tab in the 3D Viewport's and the Image Editor's sidebar, and the job's progress in the status bar.

Every action is greyed out with the reason shown under it when it cannot run (no photo, no depth, missing
weights, a job running)."""

import bpy

from ..operators import estimate
from ..scene import images
from ..operators import mesh


def draw_job(layout, context) -> bool:
    """Progress + Cancel while a job runs; the last error otherwise. True while running."""
    state = context.window_manager.boost_depth_job
    if state.running:
        row = layout.row(align=True)
        row.progress(factor=state.fraction, text=f"{state.message or state.title}")
        row.operator("boost_depth.cancel", text="", icon="X")
        layout.label(text=time_text(state.elapsed, state.eta), icon="TIME")
        return True
    if state.last_error:
        box = layout.box()
        col = box.column(align=True)
        for i, line in enumerate(_wrap(state.last_error, 48)[:6]):
            col.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
    return False


def format_seconds(value: float) -> str:
    value = int(round(max(0.0, value)))
    return f"{value // 60} min {value % 60:02d} s" if value >= 60 else f"{value} s"


def time_text(elapsed: float, eta: float) -> str:
    """'1 min 05 s elapsed, about 40 s left' (the left part once the engine can estimate it, eta >= 0)."""
    text = f"{format_seconds(elapsed)} elapsed"
    return text + (f", about {format_seconds(eta)} left" if eta >= 0 else "")


def _wrap(text, width):
    import textwrap

    return textwrap.wrap(text, width) or [text]


def _reason(layout, reason):
    if reason:
        for i, line in enumerate(_wrap(reason, 44)[:4]):
            layout.label(text=line, icon="INFO" if i == 0 else "BLANK1")


def draw_source(layout, context):
    s = context.scene.boost_depth
    editor_image = estimate.editor_image(context)
    if editor_image is not None:
        photo = images.photo_of(editor_image) if images.is_depth_image(editor_image) else editor_image
        layout.label(text=f"Photo: {photo.name if photo else '?'}", icon="IMAGE_DATA")
        return
    layout.row().prop(s, "source", expand=True)
    if s.source == "IMAGE":
        layout.template_ID(s, "image", new="image.new", open="image.open")
    else:
        layout.prop(s, "filepath", text="")


def draw_depth_info(layout, context):
    photo = estimate.context_photo(context)
    depth = images.find_depth_image(photo) if photo is not None else None
    if depth is None:
        return
    kind = str(depth.get(images.KIND_KEY, "?")).replace("_", " ")
    extra = ", ".join(f"{k} {depth[f'depth_{k}']}" for k in ("net", "mode", "R") if f"depth_{k}" in depth)
    partial = depth.get("depth_partial")
    if partial and partial != "kept":
        extra = f"{extra}, partial {partial}".lstrip(", ")
    layout.label(text=f"{depth.name}: {kind}" + (f" ({extra})" if extra else ""),
                 icon="CHECKMARK" if not partial else "SORTTIME")


class DepthPanel:
    bl_region_type = "UI"
    bl_category = "Depth"


class MainPanel(DepthPanel):
    bl_label = "Boost Depth"

    def draw(self, context):
        layout = self.layout
        s = context.scene.boost_depth
        running = draw_job(layout, context)
        draw_source(layout, context)
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "net")
        col.prop(s, "mode")
        col.prop(s, "max_res")
        col.prop(s, "save_files")
        if s.save_files:
            col.row().prop(s, "formats")
        col.prop(s, "keep_partial")
        reason = estimate.estimate_blocker(context)
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = reason is None and not running
        row.operator("boost_depth.estimate", icon="RENDERLAYERS")
        if not running:
            _reason(layout, reason)
        layout.operator("boost_depth.load_depth", icon="FILEBROWSER")
        draw_depth_info(layout, context)


class MeshPanel(DepthPanel):
    bl_label = "Mesh"

    def draw(self, context):
        layout = self.layout
        s = context.scene.boost_depth
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "fov")
        col.prop(s, "range_method")
        if s.range_method == "NEAR_FAR":
            col.prop(s, "near")
        else:
            col.prop(s, "scale")
        col.prop(s, "far")
        col.prop(s, "resolution")
        col.prop(s, "discontinuity")
        col.prop(s, "shading")
        reason = mesh.depth_blocker(context)
        row = layout.row(align=True)
        row.enabled = reason is None
        row.operator("boost_depth.mesh_from_depth", icon="MESH_GRID")
        col = layout.column(align=True)
        col.use_property_split = True
        col.prop(s, "plane_distance")
        col.prop(s, "relief")
        row = layout.row()
        row.enabled = reason is None
        row.operator("boost_depth.displaced_plane", icon="MOD_DISPLACE")
        _reason(layout, reason)


class CameraPanel(DepthPanel):
    bl_label = "Camera"

    def draw(self, context):
        layout = self.layout
        s = context.scene.boost_depth
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "focus")
        if s.focus == "PIXEL":
            sub = col.column(align=True)
            sub.prop(s, "pixel_x")
            sub.prop(s, "pixel_y")
        col.prop(s, "fstop")
        col.prop(s, "sensor")
        reason = mesh.depth_blocker(context)
        row = layout.row(align=True)
        row.enabled = reason is None
        row.operator("boost_depth.dof_camera", icon="CAMERA_DATA")
        if context.space_data.type == "IMAGE_EDITOR":
            row.operator("boost_depth.pick_focus", text="", icon="EYEDROPPER")
        _reason(layout, reason)


def _make(space: str, prefix: str):
    main = type(
        f"BOOST_DEPTH_PT_{prefix}_main",
        (MainPanel, bpy.types.Panel),
        {"bl_space_type": space, "bl_idname": f"BOOST_DEPTH_PT_{prefix}_main"},
    )
    subs = [
        type(
            f"BOOST_DEPTH_PT_{prefix}_{cls.bl_label.lower()}",
            (cls, bpy.types.Panel),
            {
                "bl_space_type": space,
                "bl_parent_id": main.bl_idname,
                "bl_idname": f"BOOST_DEPTH_PT_{prefix}_{cls.bl_label.lower()}",
            },
        )
        for cls in (MeshPanel, CameraPanel)
    ]
    return [main, *subs]


classes = (*_make("VIEW_3D", "view3d"), *_make("IMAGE_EDITOR", "image"))


def draw_status(self, context):
    state = context.window_manager.boost_depth_job
    if not state.running:
        return
    row = self.layout.row(align=True)
    left = f", {format_seconds(state.eta)} left" if state.eta >= 0 else ""
    row.progress(factor=state.fraction, text=f"{state.title}: {state.message} ({format_seconds(state.elapsed)}"
                                             f"{left})"[:96])
    row.operator("boost_depth.cancel", text="", icon="X")


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister():
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
