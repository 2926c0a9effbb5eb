"""Boost Depth's engine: the paper's pipeline (resolution search, double estimation, local boosting).

Plain Python, numpy, torch, OpenCV and scikit-image; it never imports bpy. Importing this package
is cheap (torch is imported by the modules that need it), so Blender-side code may read the
registries without paying for torch.
"""

__version__ = "0.1.0"
