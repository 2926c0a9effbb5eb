"""Load an existing depth map (16-bit PNG, EXR, ... from any tool) as the depth image of a photo, so the mesh and
camera work without running a network."""

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..scene import images
from .estimate import context_photo
from .properties import KIND_ITEMS


class BOOST_DEPTH_OT_load_depth(bpy.types.Operator, ImportHelper):  # type: ignore[misc]  # stubs: ImportHelper.invoke/check differ from Operator's
    """Load a depth map file as the depth of the photo ('<photo> depth', float, Non-Color)"""

    bl_idname = "boost_depth.load_depth"
    bl_label = "Load Depth Map"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.exr;*.png;*.tif;*.tiff;*.hdr;*.pfm", options={"HIDDEN"})
    filepath: StringProperty(name="File Path", subtype="FILE_PATH")
    image: StringProperty(
        name="Photo",
        description="Photo datablock the depth belongs to (default: the "
        "context's photo; without one, the depth file's name)",
        options={"SKIP_SAVE"},
    )
    kind: EnumProperty(
        name="Kind",
        items=KIND_ITEMS,
        default="inverse_depth",
        description="What the values mean: most tools write inverse depth (near = bright)",
    )

    def draw(self, context):
        self.layout.prop(self, "kind")

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        photo = bpy.data.images.get(self.image) if self.image else context_photo(context)
        if self.image and photo is None:
            self.report({"ERROR"}, f"no image named {self.image!r}")
            return {"CANCELLED"}
        photo_name = photo.name if photo is not None else bpy.path.basename(path)
        try:
            depth = images.load_depth_image(path, photo_name, self.kind, {"file": path})
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not depth.is_float:
            self.report(
                {"WARNING"},
                f"{bpy.path.basename(path)} holds 8-bit values: expect visible depth steps; "
                "prefer 16-bit PNG or EXR",
            )
        if photo is not None and tuple(photo.size) != tuple(depth.size) and photo.size[0]:
            pa, da = photo.size[0] / photo.size[1], depth.size[0] / depth.size[1]
            if abs(pa - da) > 0.01 * pa:
                self.report(
                    {"WARNING"},
                    f"depth map {tuple(depth.size)} and photo {tuple(photo.size)} differ in "
                    "aspect ratio: they will not line up",
                )
        self.report({"INFO"}, f"Loaded {depth.name} ({self.kind.replace('_', ' ')})")
        return {"FINISHED"}


classes = (BOOST_DEPTH_OT_load_depth,)
