"""Shared helpers of the Blender side: the add-on's package name, its preferences, the engine's interpreter
   and
environment, lazy access to the bpy-free ``boost_core`` registries, and the reasons an action cannot run.

The extension's ``boost_core`` is a sub-package here (``bl_ext.<repo>.boost_depth.boost_core``); it is
imported
relatively, never by putting the extension folder on Blender's ``sys.path``. The inference itself never
runs in
Blender: it runs in ``python -m boost_core`` child processes (see ``boost_core.jobs``).
"""

import importlib
import os
import sys
import time
from pathlib import Path

import bpy

#: The add-on's package ("bl_ext.<repo>.boost_depth" when installed as an extension).
ADDON = __package__.rpartition(".")[0]
#: The extension's root folder (holds boost_core/, the engine the child processes run).
EXTENSION_DIR = Path(__file__).resolve().parent.parent

SUGGESTED_NET = "depth_anything_v2_small"  # Apache-2.0, sharp: the default for new users (issue 7)
FALLBACK_NETS = (SUGGESTED_NET, "midas_v2", "leres", "sgr")
MODES = (
    ("r0", "R0", "Whole image at the resolution where the network still sees structure everywhere (fastest)"),
    (
        "r20",
        "R20",
        "Whole image at the resolution where 20% of pixels lack context: more detail, more seconds",
    ),
    ("final", "Final", "R20 plus local boosting of high-detail patches: the paper's full method (slowest)"),
)
DEVICES = (
    ("auto", "Auto", "CUDA if available, else Apple MPS, else CPU"),
    ("cpu", "CPU", "Run on the processor"),
    ("cuda", "CUDA", "Run on an NVIDIA GPU (needs a CUDA build of torch)"),
    ("mps", "MPS", "Run on Apple Silicon's GPU"),
)
FORMATS = ("png16", "exr", "npy", "color")


def engine(module: str):
    """Import ``boost_core.<module>`` of this extension (e.g. "weights", "networks.registry", "geometry")."""
    return importlib.import_module(f"{ADDON}.boost_core.{module}")


def try_engine(module: str):
    """Like ``engine`` but None when the module is missing or fails to import (the UI then degrades)."""
    try:
        return engine(module)
    except Exception:  # noqa: BLE001 - a broken optional registry must not break drawing
        return None


def preferences(context=None):
    """The add-on's preferences, or None when the add-on is not registered as such (e.g. batch script)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON)
    return addon.preferences if addon else None


# --------------------------------------------------------------------------------------------- networks
def network_names() -> tuple[str, ...]:
    registry = try_engine("networks.registry")
    if registry is None:
        return FALLBACK_NETS
    try:
        names = tuple(registry.names())
    except Exception:  # noqa: BLE001
        return FALLBACK_NETS
    return tuple(sorted(names, key=lambda name: name != SUGGESTED_NET))  # suggested first = enum default


def network_title(name: str) -> str:
    registry = try_engine("networks.registry")
    try:
        return registry.get(name).title
    except Exception:  # noqa: BLE001
        return name


def network_output_kind(name: str) -> str | None:
    registry = try_engine("networks.registry")
    try:
        return registry.get(name).output_kind
    except Exception:  # noqa: BLE001
        return None


def required_weights(net: str) -> list[str]:
    """Weights-registry names a run with ``net`` needs: the base network's default file and the merge net."""
    registry = try_engine("networks.registry")
    try:
        base = registry.get(net).weights[0]
        merge = getattr(registry, "MERGE_NET_WEIGHTS", "merge_net")
        return [base, merge]
    except Exception:  # noqa: BLE001
        return []


# --------------------------------------------------------------------------------------------- settings
def models_dir(prefs=None) -> str | None:
    """The models folder the user chose, or None for the engine's default (BOOST_DEPTH_MODELS or per-user)."""
    prefs = prefs if prefs is not None else preferences()
    if prefs is not None and prefs.models_dir.strip():
        return bpy.path.abspath(prefs.models_dir.strip())
    return None


def resolved_models_dir(prefs=None) -> Path | None:
    weights = try_engine("weights")
    if weights is None:
        return None
    try:
        return Path(weights.models_dir(models_dir(prefs)))
    except Exception:  # noqa: BLE001
        return None


_weights_cache: dict = {}


def missing_weights(net: str, prefs=None, max_age: float = 2.0) -> list[str]:
    """Names of the files ``net`` needs that are not in the models folder (a cheap existence check, cached for
    ``max_age`` seconds so panels can call it on every redraw)."""
    folder = resolved_models_dir(prefs)
    weights = try_engine("weights")
    if folder is None or weights is None:
        return []
    key = (net, str(folder))
    hit = _weights_cache.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < max_age:
        return hit[1]
    missing = []
    for name in required_weights(net):
        try:
            if not weights.path_of(name, folder).is_file():
                missing.append(name)
        except Exception:  # noqa: BLE001
            pass
    _weights_cache[key] = (now, missing)
    return missing


def forget_weights_cache() -> None:
    _weights_cache.clear()


def dependencies_dir(create: bool = False) -> str | None:
    """Folder (inside the extension's user folder) that the Dependencies button installs torch & co. into."""
    try:
        return bpy.utils.extension_path_user(ADDON, path="site-packages", create=create)
    except (ValueError, AttributeError, RuntimeError):
        return None


def engine_python(prefs=None) -> tuple[str, str | None]:
    """(interpreter, dependencies folder or None) that runs ``python -m boost_core``.

    'BLENDER': Blender's own Python with our dependencies folder on PYTHONPATH; 'CUSTOM': the interpreter the
    user pointed at, which brings its own packages. Without preferences (batch use), ``BOOST_DEPTH_PYTHON`` or
    Blender's Python."""
    prefs = prefs if prefs is not None else preferences()
    if prefs is not None and prefs.python_source == "CUSTOM" and prefs.python_path.strip():
        return bpy.path.abspath(prefs.python_path.strip()), None
    if prefs is None and os.environ.get("BOOST_DEPTH_PYTHON"):
        return os.environ["BOOST_DEPTH_PYTHON"], None
    return sys.executable, dependencies_dir()


def engine_env(prefs=None) -> dict:
    jobs = engine("jobs")
    _python, deps = engine_python(prefs)
    return jobs.engine_environment(deps, extension_dir=EXTENSION_DIR)


def device(prefs=None) -> str:
    prefs = prefs if prefs is not None else preferences()
    return prefs.device if prefs is not None else "auto"


# --------------------------------------------------------------------------------------------- UI helpers
def redraw_all(context=None) -> None:
    """Tag every area (and so the status bar) of every window for redraw."""
    wm = (context or bpy.context).window_manager
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            area.tag_redraw()


def settings(context):
    """The scene's Boost Depth settings (scene.boost_depth)."""
    return context.scene.boost_depth
