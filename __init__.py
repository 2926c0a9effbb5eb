"""Boost Depth: high-resolution monocular depth (Miangoleh, Dille et al., CVPR 2021) in Blender.

The "Depth" tab of the 3D Viewport's and the Image Editor's sidebar estimates depth for a photo (in a
child process running ``python -m boost_core``), loads existing depth maps, builds a mesh (or a displaced
plane) that reproduces the photo from its camera, and sets up a depth-of-field camera.
Operators: ``bpy.ops.boost_depth.*``. Batch use: ``blender -c boost_depth ARGS`` (the extension's command, with its
preferences) or ``blender -b --python scripts/batch_depth.py -- ARGS``.

The Blender modules are imported in ``register()``, not here: this folder is also the repository root, and
tools that import it as a package (pytest does, for the engine's tests) must not need bpy.
"""


def _modules():
    from . import operators, panels, preferences
    from .engine_link import command_line

    return (preferences, operators, panels, command_line)


def register():
    for module in _modules():
        module.register()


def unregister():
    for module in reversed(_modules()):
        module.unregister()
