"""Scene building on the Blender side: ``geometry`` (the pinhole math of meshes, cameras and focus; numpy only, no
bpy, unit-tested without Blender), ``images`` (photo and depth image datablocks) and ``build`` (mesh, displaced
plane, material and depth-of-field camera datablocks). This package itself imports nothing, so ``geometry`` can be
imported without bpy."""
