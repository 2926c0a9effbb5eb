"""Menu entries (F3 reaches the operators through them): Image Editor > Image > Depth and 3D Viewport > Add >
Depth."""

import bpy


class BOOST_DEPTH_MT_add(bpy.types.Menu):
    """Add geometry and cameras from estimated depth"""

    bl_idname = "BOOST_DEPTH_MT_add"
    bl_label = "Depth"

    def draw(self, context):
        layout = self.layout
        layout.operator("boost_depth.mesh_from_depth", icon="MESH_GRID")
        layout.operator("boost_depth.displaced_plane", icon="MOD_DISPLACE")
        layout.operator("boost_depth.dof_camera", icon="CAMERA_DATA")


class BOOST_DEPTH_MT_image(bpy.types.Menu):
    """Estimate, load and use depth for this image"""

    bl_idname = "BOOST_DEPTH_MT_image"
    bl_label = "Depth"

    def draw(self, context):
        layout = self.layout
        layout.operator("boost_depth.estimate", icon="RENDERLAYERS")
        layout.operator("boost_depth.cancel", icon="X")
        layout.operator("boost_depth.load_depth", icon="FILEBROWSER")
        layout.separator()
        layout.operator("boost_depth.mesh_from_depth", icon="MESH_GRID")
        layout.operator("boost_depth.displaced_plane", icon="MOD_DISPLACE")
        layout.operator("boost_depth.dof_camera", icon="CAMERA_DATA")
        layout.operator("boost_depth.pick_focus", icon="EYEDROPPER")


def add_menu(self, context):
    self.layout.menu(BOOST_DEPTH_MT_add.bl_idname, icon="RENDERLAYERS")


def image_menu(self, context):
    self.layout.separator()
    self.layout.menu(BOOST_DEPTH_MT_image.bl_idname, icon="RENDERLAYERS")


menus = (BOOST_DEPTH_MT_add, BOOST_DEPTH_MT_image)


def register():
    for cls in menus:
        bpy.utils.register_class(cls)
    bpy.types.VIEW3D_MT_add.append(add_menu)
    bpy.types.IMAGE_MT_image.append(image_menu)


def unregister():
    bpy.types.IMAGE_MT_image.remove(image_menu)
    bpy.types.VIEW3D_MT_add.remove(add_menu)
    for cls in reversed(menus):
        bpy.utils.unregister_class(cls)
