"""Operators (``bpy.ops.boost_depth.*``, classes only) and their property groups. The menus that reach them are in
``panels.menus``; what they build is in ``scene``; how they run the engine is in ``engine_link``."""

import bpy

from . import camera, estimate, load_depth, mesh, properties, setup
from ..engine_link import running
from ..scene import footage

classes = (*estimate.classes, *mesh.classes, *camera.classes, *load_depth.classes, *setup.classes)


@bpy.app.handlers.persistent
def _stop_jobs_on_load(*_args):
    running.stop_all()


def register():
    properties.register()
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_pre.append(_stop_jobs_on_load)
    footage.register_handlers()  # depth meshes of footage follow the timeline


def unregister():
    try:
        running.stop_all()
    finally:
        running.unregister_timer()
    footage.unregister_handlers()
    if _stop_jobs_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_stop_jobs_on_load)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
    properties.unregister()
