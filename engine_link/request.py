"""What an engine child needs, decided once from the preferences and the photo: the interpreter, its environment,
the arguments, the working folder and where the result goes.

    request = EstimateRequest.build(context, image="photo.jpg", net="midas_v2", mode="final", ...)
    running.start(context, request.job(), request.title, on_success=..., cleanup=[request.workdir])

``build`` raises :class:`RequestError` (a message naming the problem and the fix) before anything is started;
``request.warnings`` lists what the user should know (e.g. files cannot be saved next to a packed photo).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..boost_core.host import engine_process, torch_install
from ..scene import images
from . import running, settings

SOURCE_HELP = "open a photo in the Image Editor, or choose one in the Depth tab of the sidebar"


class RequestError(ValueError):
    """The job cannot start; the message names the problem and the fix."""


# --------------------------------------------------------------------------------------------- interpreter
def wheels_site_packages() -> Path | None:
    """Where Blender installed the extension's bundled wheels (OpenCV, OpenEXR, typing_extensions):
    ``<extensions>/.local/lib/pythonX.Y/site-packages``, the folder Blender puts on its own ``sys.path``."""
    folder = Path(bpy.utils.user_resource("EXTENSIONS"), ".local", "lib",
                  f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
    return folder if folder.is_dir() else None


def torch_root(create: bool = False, addon: str | None = None) -> Path | None:
    """The folder 'Install PyTorch' fills (``<user folder>/torch``; the engine sees its ``current``)."""
    return settings.user_folder("torch", create, addon)


def engine_python(prefs=None, addon: str | None = None) -> tuple[str, list[str]]:
    """(interpreter, folders for its PYTHONPATH) that runs ``python -m boost_core``.

    'BLENDER' (the default): Blender's own Python, seeing the wheels Blender installed for the extension and
    the torch the user installed (Install PyTorch); nothing is pip-installed. 'CUSTOM': the interpreter the
    user pointed at, which brings its own packages. Without preferences (batch use), ``BOOST_DEPTH_PYTHON`` or
    Blender's Python."""
    prefs = prefs if prefs is not None else settings.preferences()
    if prefs is not None and prefs.python_source == "CUSTOM" and prefs.python_path.strip():
        return bpy.path.abspath(prefs.python_path.strip()), []
    if prefs is None and os.environ.get("BOOST_DEPTH_PYTHON"):
        return os.environ["BOOST_DEPTH_PYTHON"], []
    folders = [wheels_site_packages()]
    root = torch_root(addon=addon)
    if root is not None:
        folders.append(torch_install.site_dir(root))
    return sys.executable, [str(f) for f in folders if f is not None and f.is_dir()]


def engine_environment(python_paths) -> dict:
    """The child's environment: PYTHONPATH with the extension and ``python_paths``, compiled kernels cached in
    the extension's user folder."""
    return engine_process.engine_environment(python_paths, extension_dir=settings.EXTENSION_DIR,
                                             cache_dir=settings.user_folder("cache", create=True))


def log_path(title: str) -> Path | None:
    """Where a job's whole stderr is kept (``<user folder>/logs``, the newest 20 kept)."""
    folder = settings.user_folder("logs", create=True)
    if folder is None:
        return None
    for old in sorted(folder.glob("*.log"))[:-19]:
        try:
            old.unlink()
        except OSError:
            pass
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in title)[:40]
    return folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}.log"


ENGINE_MODULES = ("torch", "cv2")  # what the engine imports beyond the standard library and numpy
_modules: dict = {}  # (python, dependencies folder) -> {"missing": [...], "error": str} once known
_modules_threads: dict = {}
_modules_lock = threading.Lock()

_FIND_SPEC = ("import importlib.util, json, sys\n"
              "print('BOOST_DEPTH_MODULES', json.dumps([m for m in sys.argv[1:] "
              "if importlib.util.find_spec(m) is None]))")


def _probe_modules(key, python, env) -> None:
    """Worker thread: which of ENGINE_MODULES the interpreter cannot find (find_spec: nothing is imported)."""
    result = {"missing": [], "error": ""}
    try:
        out = subprocess.run([python, "-c", _FIND_SPEC, *ENGINE_MODULES], capture_output=True, text=True,
                             env=env, timeout=60, stdin=subprocess.DEVNULL)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BOOST_DEPTH_MODULES ")), None)
        if line is None:
            result["error"] = f"{python} does not run (exit code {out.returncode})"
        else:
            result["missing"] = json.loads(line.split(" ", 1)[1])
    except (OSError, subprocess.SubprocessError) as error:
        result["error"] = f"cannot run {python}: {error}"
    with _modules_lock:
        _modules[key] = result


def missing_engine_modules(prefs=None, *, wait: float = 0.0) -> dict | None:
    """What the configured interpreter lacks, checked once per interpreter in a background thread (cheap:
    ``importlib.util.find_spec`` in the child's environment) and cached: {"missing": [module names],
    "error": "" or why it does not run}, or None while the check runs (``wait``: seconds to wait for it)."""
    python, deps = engine_python(prefs)
    key = (python, os.pathsep.join(deps))
    with _modules_lock:
        if key in _modules:
            return _modules[key]
        thread = _modules_threads.get(key)
        if thread is None:
            env = engine_process.engine_environment(deps, extension_dir=settings.EXTENSION_DIR)
            thread = threading.Thread(target=_probe_modules, args=(key, python, env), daemon=True,
                                      name="boost-depth-modules")
            _modules_threads[key] = thread
            thread.start()
    if wait:
        thread.join(wait)
    with _modules_lock:
        return _modules.get(key)


def forget_engine_modules() -> None:
    """Check again on next use (after installing dependencies or checking the interpreter)."""
    with _modules_lock:
        _modules.clear()
        _modules_threads.clear()


def engine_modules_problem(prefs=None) -> str | None:
    """A sentence for the sidebar when the engine's interpreter cannot run the engine, else None."""
    known = missing_engine_modules(prefs)
    if not known:
        return None
    source = prefs.python_source if prefs is not None else "BLENDER"
    if known["error"]:
        return f"The engine's Python does not run ({known['error']}): choose another in Preferences > Add-ons"
    missing = known["missing"]
    if not missing:
        return None
    if source != "BLENDER":
        names = {"cv2": "OpenCV (opencv-python-headless)"}
        return (f"The engine's Python lacks {', '.join(names.get(m, m) for m in missing)}: install them there, "
                "or pick another Python in Preferences > Add-ons")
    if "cv2" in missing:
        return ("OpenCV, which Blender installs with the extension, is missing: reinstall Boost Depth "
                "(Preferences > Get Extensions)")
    return "PyTorch is not installed: Install PyTorch (a one-time download into the extension's folder)"


def device(prefs=None) -> str:
    prefs = prefs if prefs is not None else settings.preferences()
    return prefs.device if prefs is not None else "auto"


@dataclass
class EngineRequest:
    """One ``python -m boost_core`` child: interpreter, environment, arguments, working folder (removed after)."""

    python: str
    env: dict
    arguments: list
    workdir: Path | None = None
    title: str = "Depth job"
    warnings: list = field(default_factory=list)

    @classmethod
    def for_engine(cls, arguments, prefs=None, *, title: str, blender_python: bool = False, workdir=None):
        """A request with the preferences' interpreter (``blender_python``: Blender's own, for stdlib-only
        commands such as downloads)."""
        python, deps = (sys.executable, []) if blender_python else engine_python(prefs)
        return cls(python, engine_environment(deps), list(arguments), workdir, title)

    def job(self) -> engine_process.EngineJob:
        """The (not yet started) child process."""
        cwd = str(self.workdir) if self.workdir is not None else None
        return engine_process.EngineJob(engine_process.engine_command(self.python, self.arguments),
                                        env=self.env, cwd=cwd, log_path=log_path(self.title))


# --------------------------------------------------------------------------------------------- estimate
def resolve_net(name: str, prefs) -> str:
    """The network a run uses: ``name``, or (empty / "DEFAULT") the preferences' default network."""
    name = (name or "").strip()
    if name and name != "DEFAULT":
        return name
    if prefs is None:
        return "midas_v2"
    return prefs.default_net.strip() or settings.SUGGESTED_NET


def resolve_mode(name: str, prefs) -> str:
    if name and name != "DEFAULT":
        return name
    return prefs.default_mode if prefs is not None else "final"


def resolve_run(net: str, mode: str, prefs, *, weights_given: bool) -> tuple[str, str]:
    """(network, mode) of a run: the preferences' defaults for empty ones; RequestError for an unknown network or,
    unless the weight files are given, weights missing from the models folder."""
    net = resolve_net(net, prefs)
    if net not in settings.network_names():
        raise RequestError(f"Unknown network {net!r}; choose one of {', '.join(settings.network_names())}")
    if not weights_given:
        missing = settings.missing_weights(net, prefs, max_age=0.0)
        if missing:
            raise RequestError(f"Missing weights: {', '.join(missing)}; download them in "
                               "Preferences > Add-ons > Boost Depth")
    return net, resolve_mode(mode, prefs)


@dataclass
class EstimateRequest(EngineRequest):
    """An estimate of one photo. photo_name: the image datablock the depth image belongs to (for a file, its
    name); file_path: the photo file when estimating a file (loaded as an image on success); side_path: the
    photo file next to which depth files are saved (None: not saved); formats: the user's formats for those.
    Final mode asks the engine for intermediate maps (``--partial``); net and mode are the resolved ones."""

    photo_name: str = ""
    file_path: Path | None = None
    side_path: Path | None = None
    formats: list = field(default_factory=list)
    net: str = ""
    mode: str = ""

    @classmethod
    def build(cls, context, *, image: str = "", filepath: str = "", net: str = "", mode: str = "",
              max_res: int = 0, formats=(), save_files: bool = False, base_weights: str = "",
              merge_weights: str = "", photo=None) -> "EstimateRequest":
        """Resolve the photo (datablock ``image``, file ``filepath`` or ``photo``), the network and the weights,
        write the photo where the engine can read it and compose the child. Raises RequestError."""
        prefs = settings.preferences(context)
        if running.running():
            raise RequestError("A depth job is running (cancel it or wait)")
        path = None
        if filepath:
            photo = None  # the file, not the context's image
            path = Path(bpy.path.abspath(filepath))
            if not path.is_file():
                raise RequestError(f"Photo file not found: {path}")
            photo_name = path.name
            if not images.engine_reads_as_shown(path, path.suffix):  # EXR, HDR, a rotated JPEG...: Blender's view
                try:
                    photo = images.load_photo(path)
                except ValueError as error:
                    raise RequestError(str(error)) from None
                photo_name = photo.name
        else:
            photo = bpy.data.images.get(image) if image else photo
            if photo is None:
                what = f"no image named {image!r}" if image else "no photo"
                raise RequestError(f"Estimate Depth: {what}; {SOURCE_HELP}")
            if images.is_depth_image(photo):
                raise RequestError(f"{photo.name!r} is a depth image; choose its photo instead")
            photo_name = photo.name
        net, mode = resolve_run(net, mode, prefs, weights_given=bool(base_weights and merge_weights))

        workdir = Path(tempfile.mkdtemp(prefix="boost_depth_"))
        try:
            photo_path = Path(images.photo_file(photo, workdir)) if photo is not None else path
        except (OSError, ValueError, RuntimeError) as error:
            running.remove_folders([workdir])
            raise RequestError(f"Estimate Depth: {error}") from None
        warnings = []
        side_path = None  # where files go next to the photo (only for photos that live in a file)
        if save_files:
            if path is not None:
                side_path = path
            elif (photo.packed_file is None and photo.source == "FILE" and photo_path.is_file()
                  and not str(photo_path).startswith(str(workdir))):
                side_path = photo_path
            else:
                warnings.append("The photo is not a file on disk: depth files are not saved next to it")

        arguments = engine_process.estimate_arguments(
            [photo_path],
            net=net,
            mode=mode,
            output=workdir / "out",
            formats=list(dict.fromkeys(["exr", *sorted(formats)])),
            max_res=max_res or None,
            device=device(prefs),
            base_weights=bpy.path.abspath(base_weights) if base_weights else None,
            merge_weights=bpy.path.abspath(merge_weights) if merge_weights else None,
            models_dir=settings.models_dir(prefs),
            partial=mode == "final",  # intermediate maps: the depth image appears and refreshes while it runs
        )
        python, deps = engine_python(prefs)
        return cls(python, engine_environment(deps), arguments, workdir, f"Depth of {photo_name}", warnings, photo_name=photo_name,
                   file_path=path, side_path=side_path, formats=sorted(formats), net=net, mode=mode)


# --------------------------------------------------------------------------------------------- footage
class FootageJob(engine_process.EngineJob):
    """The engine child of a footage estimate; its failure says the fix in Blender's words."""

    def error_summary(self) -> str:
        return super().error_summary().replace("pass --start-over", "press Start Over in the Depth tab")


@dataclass
class FootageRequest(EngineRequest):
    """An estimate of every frame of an image sequence or a movie in ``start..end`` (scene frames), written to
    ``sequence.folder`` (kept: the depth sequence lives there, with the engine's job file)."""

    photo_name: str = ""
    sequence: typing.Any = None  # scene.footage.DepthSequence
    net: str = ""
    mode: str = ""
    kind: str = "inverse_depth"

    def job(self) -> engine_process.EngineJob:
        return FootageJob(engine_process.engine_command(self.python, self.arguments), env=self.env,
                          log_path=log_path(self.title))

    @classmethod
    def build(cls, context, photo, *, net: str = "", mode: str = "", max_res: int = 0, formats=(),
              start: int | None = None, end: int | None = None, folder: str = "", start_over: bool = False,
              base_weights: str = "", merge_weights: str = "") -> "FootageRequest":
        """Resolve the footage behind ``photo`` (an Image with source 'SEQUENCE' or 'MOVIE'), the frames (the
        Depth tab's range unless ``start``/``end`` are given), the folder and the network. Raises RequestError
        naming the problem and the fix; nothing is written before the child starts."""
        from ..scene import footage

        prefs = settings.preferences(context)
        s = context.scene.boost_depth
        if running.running():
            raise RequestError("A depth job is running (cancel it or wait)")
        try:
            source = footage.source_of(photo)
        except footage.FootageError as error:
            raise RequestError(f"Estimate Depth: {error}") from None
        first, last = footage.frame_range(s, context.scene)
        first = first if start is None else int(start)
        last = last if end is None else int(end)
        if last < first:
            raise RequestError(f"The frame range {first}-{last} is empty: make End at least Start")
        offset = int(s.footage_offset)
        numbers = range(first + offset, last + offset + 1)
        if numbers.start < (1 if source.kind == "MOVIE" else 0):
            raise RequestError(f"Scene frame {first} is footage frame {numbers.start}, before the first one: "
                               "raise Start or the Offset")
        if source.kind == "MOVIE" and source.frames and numbers.stop - 1 > source.frames:
            raise RequestError(f"The movie has {source.frames} frames but scene frame {last} is its frame "
                               f"{numbers.stop - 1}: lower End or the Offset")
        missing = footage.missing_frames(source, numbers)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise RequestError(f"Footage frames not found: {', '.join(str(p) for p in missing[:3])}{more}; "
                               "change the frame range (or the Offset) to frames that exist")
        net, mode = resolve_run(net, mode, prefs, weights_given=bool(base_weights and merge_weights))
        out = Path(folder) if folder else footage.output_folder(s, source)
        sequence = footage.DepthSequence.for_source(source, out, first, last, offset)
        # exr: the Image sequence Blender shows and renders; npy: the same values for Python (mesh, focus)
        fmts = list(dict.fromkeys(["exr", "npy", *sorted(formats)]))
        # the engine walks the pattern / movie itself over --frames and keeps the job file beside the outputs
        arguments = engine_process.estimate_arguments(
            [source.pattern], net=net, mode=mode, output=out, formats=fmts, max_res=max_res or None, device=device(prefs),
            base_weights=bpy.path.abspath(base_weights) if base_weights else None,
            merge_weights=bpy.path.abspath(merge_weights) if merge_weights else None,
            models_dir=settings.models_dir(prefs))
        arguments += ["--frames", f"{numbers.start}-{numbers.stop - 1}"]
        if start_over:
            arguments += ["--start-over"]
        if s.footage_temporal:  # each frame's depth aligned to its predecessors where the picture did not change
            arguments += ["--temporal"]
        python, deps = engine_python(prefs)
        env = engine_environment(deps)
        try:
            kind = settings.registry.get(net).output_kind
        except (KeyError, AttributeError):
            kind = "inverse_depth"
        title = f"Depth of {photo.name} ({last - first + 1} frames)"
        return cls(python, env, arguments, None, title, [], photo_name=photo.name, sequence=sequence, net=net,
                   mode=mode, kind=kind)
