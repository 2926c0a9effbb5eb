"""Property groups: the scene's Boost Depth settings (saved with the .blend, shown in the Depth tab) and the
running job's state on the window manager (runtime only, never saved, never part of undo)."""

import math

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..engine_link import settings

_enum_cache: dict[str, list] = {}  # Blender needs dynamic enum item strings kept alive by Python


def net_search(_self, _context, edit_text=""):
    """Search list of a network StringProperty: the registry's names (stored as names, never as enum indices,
    so saved files and preferences survive networks being added or reordered)."""
    text = (edit_text or "").lower()
    return [(n, settings.network_title(n)) for n in settings.network_names()
            if not text or text in n.lower() or text in settings.network_title(n).lower()]


def net_property(name="Network", description="Base depth network (empty: the preferences' default)", **kw):
    return StringProperty(name=name, description=description, search=net_search, **kw)


def mode_items(_self, _context):
    prefs = settings.preferences()
    default = prefs.default_mode if prefs is not None else "final"
    items = [("DEFAULT", f"Default ({default})", "The mode chosen in the add-on's preferences")]
    items += list(settings.MODES)
    _enum_cache["modes"] = items
    return items


FORMAT_ITEMS = (
    ("png16", "PNG 16", "16-bit grey PNG (normalised depth)"),
    ("exr", "EXR", "32-bit float OpenEXR, one channel"),
    ("npy", "NPY", "NumPy float32 array"),
    ("color", "Colour", "Colour-mapped PNG preview"),
)
KIND_ITEMS = (
    ("inverse_depth", "Inverse Depth", "Larger values are nearer (disparity; MiDaS, SGR and most tools)"),
    ("depth", "Depth", "Larger values are farther (LeReS, Z passes)"),
)
RANGE_ITEMS = (
    ("NEAR_FAR", "Near / Far", "Stretch the map between a near and a far distance"),
    ("SCALE", "Scale", "Multiply depth (or divide by inverse depth) by a scale"),
)
SHADING_ITEMS = (
    ("EMISSION", "Emission", "Shows the photo exactly as it is, unaffected by lights"),
    ("PRINCIPLED", "Principled", "Photo as base colour of a Principled BSDF, lit by the scene"),
)
FOOTAGE_SCOPE_ITEMS = (
    ("RANGE", "Frame Range", "Every frame of the range: a depth sequence in a folder, resumable"),
    ("FRAME", "This Frame", "Only the frame shown now: one depth image"),
)
FOCUS_ITEMS = (
    ("NEAREST", "Nearest Region", "Focus on the nearest region covering at least 5% of the picture"),
    ("CENTER", "Image Centre", "Focus on the depth under the centre of the picture"),
    ("PIXEL", "Pixel", "Focus on the depth under a pixel you pick"),
)


RANGE_SETTINGS = ("fov", "range_method", "near", "far", "scale")  # the DepthRangeProps names, in panel order


class DepthRangeProps:
    """Depth-range and mesh options shared by the mesh, plane and camera operators and the scene settings."""

    fov: FloatProperty(
        name="Field of View",
        description="Field of view of the photo across its longer side",
        subtype="ANGLE",
        default=math.radians(55.0),
        min=math.radians(1.0),
        max=math.radians(170.0),
    )
    range_method: EnumProperty(name="Depth Range", items=RANGE_ITEMS, default="NEAR_FAR")
    near: FloatProperty(
        name="Near",
        description="Distance of the nearest point",
        default=1.0,
        min=1e-3,
        subtype="DISTANCE",
        unit="LENGTH",
    )
    far: FloatProperty(
        name="Far",
        description="Distance of the farthest point (also the limit with Scale)",
        default=10.0,
        min=1e-3,
        subtype="DISTANCE",
        unit="LENGTH",
    )
    scale: FloatProperty(
        name="Scale",
        description="Depth = scale x value (or scale / value for inverse depth)",
        default=1.0,
        min=1e-6,
    )


class MeshProps:
    resolution: IntProperty(
        name="Resolution", description="Vertices along the photo's longer side", default=256, min=2, max=4096
    )
    discontinuity: FloatProperty(
        name="Drop Stretched Faces",
        subtype="FACTOR",
        min=0.0,
        max=10.0,
        default=0.05,
        description="Drop faces whose far corner is more than this fraction farther than their near corner "
        "(0 keeps every face)",
    )
    shading: EnumProperty(name="Shading", items=SHADING_ITEMS, default="EMISSION")


class CameraProps:
    focus: EnumProperty(name="Focus", items=FOCUS_ITEMS, default="NEAREST")
    animate_focus: BoolProperty(
        name="Animate Focus",
        description="Footage: keyframe the focus distance on every frame of the depth sequence from that "
        "frame's depth (off: one focus distance from the current frame)",
        default=False,
    )
    pixel_x: IntProperty(name="X", description="Pixel column to focus on (0 = left)", default=0, min=0)
    pixel_y: IntProperty(
        name="Y", description="Pixel row to focus on (0 = bottom, as in the Image Editor)", default=0, min=0
    )
    fstop: FloatProperty(
        name="F-Stop", description="Aperture: lower values blur more", default=2.8, min=0.1, max=128.0
    )
    sensor: FloatProperty(
        name="Sensor",
        description="Sensor size along the longer side",
        default=36.0,
        min=1.0,
        max=200.0,
        subtype="DISTANCE_CAMERA",
    )


def operator_copy(mixin):
    """The mixin's properties for operators: SKIP_SAVE, so every call starts from the Depth tab's settings (or
    the values passed) instead of the last call's."""
    annotations = {}
    for name, deferred in mixin.__annotations__.items():
        keywords = dict(deferred.keywords)
        keywords["options"] = set(keywords.get("options", set())) | {"SKIP_SAVE"}
        annotations[name] = deferred.function(**keywords)
    return type(f"{mixin.__name__}Op", (), {"__annotations__": annotations})


OpDepthRangeProps = operator_copy(DepthRangeProps)
OpMeshProps = operator_copy(MeshProps)
OpCameraProps = operator_copy(CameraProps)


class OpSceneChangeProps:
    """What an operator that creates the photo's camera may change in the scene beyond it (the redo panel's
    checkboxes; its report names what changed)."""

    set_render_resolution: BoolProperty(
        name="Set Render Size",
        description="Make the scene's render resolution the photo's size (pixel aspect 1), so the camera frames "
        "the photo exactly",
        default=True,
        options={"SKIP_SAVE"},
    )
    make_active_camera: BoolProperty(
        name="Make Scene Camera",
        description="Make this camera the scene's active camera",
        default=True,
        options={"SKIP_SAVE"},
    )


def fill_from_settings(operator, settings, names) -> None:
    """Give every property in ``names`` that the caller did not set the scene setting's value."""
    for name in names:
        if not operator.properties.is_property_set(name):
            setattr(operator, name, getattr(settings, name))


def _set_use_max_res(self, value):
    if not value:
        self.max_res = 0
    elif self.max_res == 0:
        self.max_res = 2048


def _update_source(self, context):
    settings.redraw_all(context)


class BOOST_DEPTH_PG_settings(DepthRangeProps, MeshProps, CameraProps, bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Source",
        items=(("IMAGE", "Image", "An image datablock"), ("FILE", "File", "A photo on disk")),
        default="IMAGE",
        update=_update_source,
    )
    image: PointerProperty(name="Image", type=bpy.types.Image, description="Photo to estimate depth for")
    filepath: StringProperty(name="File", subtype="FILE_PATH", description="Photo on disk")
    net: net_property()
    mode: EnumProperty(name="Mode", items=mode_items, description="How much boosting")
    max_res: IntProperty(
        name="Max Resolution",
        description="Cap on the boosted size in pixels (0 = no cap)",
        default=0,
        min=0,
        soft_max=8192,
        subtype="PIXEL",
    )
    use_max_res: BoolProperty(  # a view of max_res (0 = no cap), nothing stored: old files keep their cap
        name="Cap Size",
        description="Cap the boosted size (off: no cap, the size the method chooses)",
        get=lambda self: self.max_res > 0,
        set=_set_use_max_res,
    )
    formats: EnumProperty(
        name="Formats",
        items=FORMAT_ITEMS,
        options={"ENUM_FLAG"},
        default={"exr"},
        description="Files written next to the photo",
    )
    save_files: BoolProperty(
        name="Save Next to Photo",
        default=False,
        description="Also write the depth files next to the photo (never over it)",
    )
    keep_partial: BoolProperty(
        name="Keep Partial Depth on Cancel",
        default=False,
        description="When a Final estimate is cancelled (or fails), keep the depth image as far as it got "
        "instead of putting the scene back as it was",
    )
    footage_scope: EnumProperty(
        name="Footage",
        items=FOOTAGE_SCOPE_ITEMS,
        default="RANGE",
        description="For an image sequence or a movie: estimate every frame of the range, or the current one",
    )
    footage_scene_range: BoolProperty(
        name="Scene Range",
        default=True,
        description="Estimate the scene's frame range (off: the Start and End below)",
    )
    footage_start: IntProperty(name="Start", description="First scene frame to estimate", default=1, min=0)
    footage_end: IntProperty(name="End", description="Last scene frame to estimate", default=250, min=0)
    footage_offset: IntProperty(
        name="Offset",
        description="Frame number of the footage shown at scene frame f: f + offset (e.g. 1000 for files "
        "numbered from 1001 on a timeline from 1)",
        default=0,
    )
    footage_temporal: BoolProperty(
        name="Steady Depth",
        description="Align each frame's depth to the frames before it where the picture did not change (a robust "
        "scale and shift fit after motion compensation), so the same wall keeps its depth through the shot; the "
        "job reports the flicker with and without it. Off for unrelated photos",
        default=False,
    )
    footage_folder: StringProperty(
        name="Depth Folder",
        subtype="DIR_PATH",
        description="Where the depth sequence and its job file go (empty: '<name>_depth' beside the footage)",
    )
    relief: FloatProperty(
        name="Relief",
        description="Displacement of the nearest point (displaced plane)",
        default=1.0,
        min=0.0,
        subtype="DISTANCE",
        unit="LENGTH",
    )
    plane_distance: FloatProperty(
        name="Distance",
        description="Distance of the displaced plane to the camera",
        default=5.0,
        min=1e-3,
        subtype="DISTANCE",
        unit="LENGTH",
    )


def _notify_windows(_self, _context):
    """An update callback: with one, Blender's RNA update of this property sends a window notifier (NC_WINDOW)
    that tags every region for redraw, the global status bar included (engine_link.settings.tag_status_bar)."""


class BOOST_DEPTH_PG_job(bpy.types.PropertyGroup):
    redraws: IntProperty(name="Redraws", default=0, options={"SKIP_SAVE"}, update=_notify_windows)
    running: BoolProperty(name="Running", default=False)
    fraction: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0, default=0.0)
    title: StringProperty(name="Job", default="")
    message: StringProperty(name="Status", default="")
    last_error: StringProperty(name="Last Error", default="")
    elapsed: FloatProperty(name="Elapsed", description="Seconds since the job started", default=0.0)
    eta: FloatProperty(name="Left", description="Seconds left, estimated by the engine (-1: not known yet)",
                       default=-1.0)


classes = (BOOST_DEPTH_PG_settings, BOOST_DEPTH_PG_job)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    # setattr: the stubs know no attribute of ours; Blender adds them at run time
    setattr(bpy.types.Scene, "boost_depth", PointerProperty(type=BOOST_DEPTH_PG_settings))
    setattr(bpy.types.WindowManager, "boost_depth_job", PointerProperty(type=BOOST_DEPTH_PG_job))


def unregister():
    delattr(bpy.types.WindowManager, "boost_depth_job")
    delattr(bpy.types.Scene, "boost_depth")
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
