"""The add-on's identity and preferences, and what the UI reads from the engine's registries: network names and
titles, the weight files a network needs and which of them are missing, the reasons an action cannot run.

The extension's ``boost_core`` is a sub-package here (``bl_ext.<repo>.boost_depth.boost_core``), imported
relatively, never by putting the extension folder on Blender's ``sys.path``; only its torch-free modules
(``networks.registry``, ``weights``, ``host``) are imported in Blender. Inference runs in ``python -m boost_core``
child processes (``engine_link.request`` builds one, ``engine_link.running`` drives it).
"""

import time
from pathlib import Path

import bpy

from ..boost_core.networks import registry
from ..boost_core.weights import store as weights

#: The add-on's package ("bl_ext.<repo>.boost_depth" when installed as an extension).
ADDON = __package__.rpartition(".")[0]
#: The extension's root folder (holds boost_core/, the engine the child processes run).
EXTENSION_DIR = Path(__file__).resolve().parent.parent

SUGGESTED_NET = "depth_anything_v2_small"  # Apache-2.0, sharp: the default for new users (issue 7)
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


def preferences(context=None):
    """The add-on's preferences, or None when the add-on is not registered as such (e.g. batch script)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON)
    return addon.preferences if addon else None


# --------------------------------------------------------------------------------------------- networks
def network_names() -> tuple[str, ...]:
    """Registry names, the suggested network first (the enum's default)."""
    return tuple(sorted(registry.names(), key=lambda name: name != SUGGESTED_NET))


def network_title(name: str) -> str:
    try:
        return registry.get(name).title
    except KeyError:
        return name


def required_weights(net: str) -> list[str]:
    """Weights-registry names a run with ``net`` needs: the base network's default file and the merge net."""
    try:
        return [registry.get(net).weights[0], registry.MERGE_NET_WEIGHTS]
    except KeyError:
        return []


# --------------------------------------------------------------------------------------------- weights
def user_folder(sub: str, create: bool = False, addon: str | None = None) -> Path | None:
    """A folder of the extension's user folder (``bpy.utils.extension_path_user``): ``torch``, ``models``,
    ``cache``, ``logs``; None when the add-on is not installed as an extension (e.g. loaded from a script)."""
    try:
        return Path(bpy.utils.extension_path_user(addon or ADDON, path=sub, create=create))
    except (ValueError, AttributeError, RuntimeError):
        return None


def models_dir(prefs=None) -> str | None:
    """The models folder the user chose, else the extension's user folder ``models`` (None outside an installed
    extension: the engine's default, BOOST_DEPTH_MODELS or per-user)."""
    prefs = prefs if prefs is not None else preferences()
    if prefs is not None and prefs.models_dir.strip():
        return bpy.path.abspath(prefs.models_dir.strip())
    folder = user_folder("models")
    return str(folder) if folder is not None else None


def resolved_models_dir(prefs=None) -> Path:
    """The models folder the engine will use."""
    return Path(weights.models_dir(models_dir(prefs)))


_weights_cache: dict = {}


def missing_weights(net: str, prefs=None, max_age: float = 2.0) -> list[str]:
    """Names of the files ``net`` needs that are not in the models folder (a cheap existence check, cached for
    ``max_age`` seconds so panels can call it on every redraw)."""
    folder = resolved_models_dir(prefs)
    key = (net, str(folder))
    hit = _weights_cache.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < max_age:
        return hit[1]
    missing = []
    for name in required_weights(net):
        if not weights.path_of(name, folder).is_file():
            missing.append(name)
    _weights_cache[key] = (now, missing)
    return missing


def forget_weights_cache() -> None:
    _weights_cache.clear()


# --------------------------------------------------------------------------------------------- UI helpers
_enum_items: dict[str, list] = {}


def keep_items(key: str, items: list) -> list:
    """Return ``items`` after keeping a reference to them: Blender reads a dynamic enum's strings after the items
    callback returns, so Python must hold them (Blender's documented caveat)."""
    _enum_items[key] = items
    return items


def redraw_all(context=None) -> None:
    """Tag every area of every window for redraw, the global status bar included.

    ``window.screen.areas`` leaves out the global areas (top bar, status bar) in Blender 4.2 to 5.0; they are
    reached through a window-level notifier instead: setting ``WindowManager.boost_depth_job.redraws`` (a
    property with an update callback) makes Blender's RNA update send NC_WINDOW, which every region listens to,
    the status bar's included. A STATUSBAR area that a screen does list is tagged as well."""
    wm = (context or bpy.context).window_manager
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            area.tag_redraw()
    tag_status_bar(wm)


def tag_status_bar(wm=None) -> None:
    """Redraw the status bar of every window (see redraw_all)."""
    wm = wm or bpy.context.window_manager
    state = getattr(wm, "boost_depth_job", None)
    if state is not None and not bpy.app.background:
        state.redraws = (state.redraws + 1) % 1_000_000


def settings(context):
    """The scene's Boost Depth settings (scene.boost_depth)."""
    return context.scene.boost_depth
