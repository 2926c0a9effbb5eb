"""The "Depth" tab in the 3D Viewport's and the Image Editor's sidebar, and the job's progress in the status bar.

Every action is greyed out with the reason shown under it when it cannot run (no photo, no depth, missing
weights, a job running)."""

import typing

import bpy

from ..operators import estimate
from ..scene import footage, images
from ..operators import mesh


DEFAULT_SIDEBAR_WIDTH = 220  # px at UI scale 1: the width Blender gives a new sidebar
CHAR_WIDTH = 6.5  # px at UI scale 1: a label showed about 33 characters in 205 px, with room for an ellipsis
LABEL_MARGIN = 70  # px at UI scale 1: the region's and a sub-panel's margins and a label's icon


def line_chars(context) -> int:
    """How many characters of a label fit in the region the panel is drawn in (its width over the UI scale)."""
    region = getattr(context, "region", None)
    width = getattr(region, "width", 0) or 0
    prefs = getattr(context, "preferences", None) or bpy.context.preferences
    scale = getattr(prefs.system, "ui_scale", 0) or prefs.view.ui_scale or 1.0
    width = width / scale if width > 1 else DEFAULT_SIDEBAR_WIDTH
    return max(16, int((width - LABEL_MARGIN) / CHAR_WIDTH))


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
        _lines(col, state.last_error, line_chars(context), "ERROR", 6)
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

    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [text]


def _lines(layout, text, width, icon, most):
    lines = _wrap(text, width)
    if len(lines) > most:
        lines = lines[:most]
        lines[-1] = lines[-1][: max(1, width - 1)] + "…"
    for i, line in enumerate(lines):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


def _reason(layout, reason, context=None):
    if reason:
        _lines(layout, reason, line_chars(context or bpy.context), "INFO", 7)


def request_default_net(context) -> str:
    from ..engine_link import request, settings

    return request.resolve_net("", settings.preferences(context))


def draw_engine_help(layout, context, reason=None):
    """Under a greyed-out Estimate: the missing weights' Download buttons (the download operator shows the
    licence and respects Allow Online Access), and what the engine's interpreter lacks, with the way to fix it."""
    from ..engine_link import request, settings
    from ..operators import setup

    prefs = settings.preferences(context)
    net = request.resolve_net(context.scene.boost_depth.net, prefs)
    missing = settings.missing_weights(net, prefs) if net in settings.network_names() else []
    if missing:
        col = layout.column(align=True)
        col.enabled = setup.online() and not estimate.running.running()
        for name in missing:
            op = col.operator("boost_depth.download_weights", text=f"Download {name}", icon="IMPORT")
            op.name = name
        if not setup.online():
            _lines(layout, "Online access is off (Preferences > System > Network)", line_chars(context),
                   "INTERNET_OFFLINE", 2)
    problem = request.engine_modules_problem(prefs)
    if problem:
        if problem != reason:
            _lines(layout, problem, line_chars(context), "ERROR", 7)
        row = layout.row()
        if problem.startswith("PyTorch is not installed"):
            row.enabled = setup.online() and not estimate.running.running()
            row.operator_menu_enum("boost_depth.install_torch", "build", text="Install PyTorch", icon="IMPORT")
        else:
            op = row.operator("preferences.addon_show", text="Open Preferences", icon="PREFERENCES")
            op.module = settings.ADDON


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


def footage_text(photo, context) -> str:
    """'Image sequence · frames 1-250' / 'Movie · frames 1-120 (offset 1000)' for the panel."""
    s = context.scene.boost_depth
    start, end = footage.frame_range(s, context.scene)
    what = "Movie" if photo.source == "MOVIE" else "Image sequence"
    offset = f" (offset {s.footage_offset:+d})" if s.footage_offset else ""
    return f"{what} · frames {start}-{end}{offset}"


def draw_footage(layout, context, photo):
    """An image sequence or a movie as the source: the whole range or this frame, the range and the folder."""
    s = context.scene.boost_depth
    box = layout.box()
    col = box.column(align=True)
    _lines(col, footage_text(photo, context), line_chars(context), "SEQUENCE", 2)
    box.row().prop(s, "footage_scope", expand=True)
    if s.footage_scope != "RANGE":
        return
    col = box.column(align=True)
    col.use_property_split = True
    col.use_property_decorate = False
    col.prop(s, "footage_scene_range")
    sub = col.column(align=True)
    sub.enabled = not s.footage_scene_range
    sub.prop(s, "footage_start", text="Start")
    sub.prop(s, "footage_end", text="End")
    col.prop(s, "footage_offset")
    col.prop(s, "footage_temporal")
    box.prop(s, "footage_folder", text="")
    try:
        folder = footage.output_folder(s, footage.source_of(photo))
    except footage.FootageError as error:
        _lines(box.column(align=True), str(error), line_chars(context), "ERROR", 4)
        return
    if not s.footage_folder.strip():
        _lines(box.column(align=True), f"Depth into {folder.name}/ beside the footage", line_chars(context),
               "FILE_FOLDER", 2)
    if footage.has_job(folder):  # an earlier run's record: Estimate resumes it; this forgets it
        row = box.row()
        row.enabled = not estimate.running.running()
        op = row.operator("boost_depth.estimate", text="Start Over", icon="FILE_REFRESH")
        op.start_over = True


def draw_depth_info(layout, context):
    photo = estimate.context_photo(context)
    depth = images.find_depth_image(photo) if photo is not None else None
    if depth is None:
        return
    kind = str(depth.get(images.KIND_KEY, "?")).replace("_", " ")
    extra = [str(depth[f"depth_{k}"]) if k != "R" else f"R {depth['depth_R']}"
             for k in ("net", "mode", "R") if f"depth_{k}" in depth]
    sequence = footage.DepthSequence.of(depth)
    if sequence is not None:
        extra.append(f"frames {sequence.start}-{sequence.end}")
    partial = depth.get("depth_partial")
    if partial and partial != "kept":
        extra.append(f"partial {partial}")
    width = line_chars(context)
    col = layout.column(align=True)
    # the name on its own line(s), then what it holds
    _lines(col, depth.name, width, "CHECKMARK" if not partial else "SORTTIME", 2)
    _lines(col, " · ".join([kind, *extra]), width, "BLANK1", 3)


if typing.TYPE_CHECKING:  # the mixin is checked as the Panel it is mixed into

    class _PanelMixin(bpy.types.Panel): ...
else:
    _PanelMixin = object


class DepthPanel(_PanelMixin):
    bl_region_type = "UI"
    bl_category = "Depth"


class MainPanel(DepthPanel):
    bl_label = "Boost Depth"

    def draw(self, context):
        layout = self.layout
        s = context.scene.boost_depth
        running = draw_job(layout, context)
        draw_source(layout, context)
        photo = estimate.context_photo(context)
        if footage.is_footage(photo):
            draw_footage(layout, context, photo)
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False
        col.prop(s, "net")
        if not s.net.strip():
            col.label(text=f"Default: {request_default_net(context)}"[: line_chars(context)], icon="BLANK1")
        col.prop(s, "mode")
        row = col.row(heading="Max Size")
        row.prop(s, "use_max_res", text="")
        if s.use_max_res:
            row.prop(s, "max_res", text="")
        else:
            row.label(text="No Cap")
        col.prop(s, "save_files")
        if s.save_files:
            col.row().prop(s, "formats")
        col.prop(s, "keep_partial", text="Keep Partial")  # the tooltip says: on cancel or failure
        reason = estimate.estimate_blocker(context)
        row = layout.row()
        row.scale_y = 1.4
        row.enabled = reason is None and not running
        row.operator("boost_depth.estimate", icon="RENDERLAYERS")
        if not running:
            _reason(layout, reason, context)
            draw_engine_help(layout, context, reason)
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
        col.prop(s, "fov", text="FOV")
        col.prop(s, "range_method", text="Range")
        if s.range_method == "NEAR_FAR":
            col.prop(s, "near")
        else:
            col.prop(s, "scale")
        col.prop(s, "far")
        col.prop(s, "resolution")
        col.prop(s, "discontinuity", text="Tear Limit")
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
        _reason(layout, reason, context)


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
        photo = estimate.context_photo(context)
        if footage.DepthSequence.of(images.find_depth_image(photo) if photo is not None else None) is not None:
            col.prop(s, "animate_focus")
        reason = mesh.depth_blocker(context)
        row = layout.row(align=True)
        row.enabled = reason is None
        row.operator("boost_depth.dof_camera", icon="CAMERA_DATA")
        if context.space_data.type == "IMAGE_EDITOR":
            row.operator("boost_depth.pick_focus", text="", icon="EYEDROPPER")
        _reason(layout, reason, context)


def _make(space: str, prefix: str):
    main_id = f"BOOST_DEPTH_PT_{prefix}_main"
    main = type(main_id, (MainPanel, bpy.types.Panel), {"bl_space_type": space, "bl_idname": main_id})
    subs = [
        type(
            f"BOOST_DEPTH_PT_{prefix}_{cls.bl_label.lower()}",
            (cls, bpy.types.Panel),
            {
                "bl_space_type": space,
                "bl_parent_id": main_id,
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
    row.ui_units_x = 16  # room for the job's title and message (the status bar gives a progress bar ~4 units)
    left = f", {format_seconds(state.eta)} left" if state.eta >= 0 else ""
    subject = state.title.rsplit(" ", 1)[-1]  # "Depth of photo.png": the message already names the photo
    what = state.message if subject and subject in state.message else f"{state.title}: {state.message}"
    row.progress(factor=state.fraction, text=f"{what} ({format_seconds(state.elapsed)}{left})"[:96])
    row.operator("boost_depth.cancel", text="", icon="X")


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister():
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
