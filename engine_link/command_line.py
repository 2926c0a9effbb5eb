"""``blender -c boost_depth ARGS``: the batch script (``scripts/batch_depth.py``, same arguments) run by the
enabled extension, so it uses the extension's preferences: Blender's own Python with the wheels Blender installed
for the extension and the PyTorch installed from the preferences, and the preferences' models folder.

    blender -c boost_depth shots/ --net midas_v2 --mode r20 --output depth/ --format exr
    blender -c boost_depth shot_####.png --frames 1-240 --output depth/ --blend shots.blend

Registered with ``bpy.utils.register_cli_command`` (Blender 4.2+); the exit code is the batch script's.
"""

import importlib.util
import sys

import bpy

from . import settings

COMMAND = "boost_depth"
_handle = None


def batch_script():
    """The extension's copy of scripts/batch_depth.py, loaded as a module (once)."""
    name = f"{settings.ADDON}.scripts_batch_depth"
    if name not in sys.modules:
        path = settings.EXTENSION_DIR / "scripts" / "batch_depth.py"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is missing: reinstall Boost Depth")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run(argv: list) -> int:
    """The command: ``argv`` are the arguments after ``-c boost_depth``."""
    return batch_script().main(["--", *argv])


def register():
    global _handle
    if hasattr(bpy.utils, "register_cli_command"):
        _handle = bpy.utils.register_cli_command(COMMAND, run)


def unregister():
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
