"""What an engine child needs, decided once from the preferences and the photo: the interpreter, its environment,
the arguments, the working folder and where the result goes.

    request = EstimateRequest.build(context, image="photo.jpg", net="midas_v2", mode="final", ...)
    running.start(context, request.job(), request.title, on_success=..., cleanup=[request.workdir])

``build`` raises :class:`RequestError` (a message naming the problem and the fix) before anything is started;
``request.warnings`` lists what the user should know (e.g. files cannot be saved next to a packed photo).
"""

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..boost_core.host import engine_process
from ..scene import images
from . import running, settings

SOURCE_HELP = "open a photo in the Image Editor, or choose one in the Depth tab of the sidebar"


class RequestError(ValueError):
    """The job cannot start; the message names the problem and the fix."""


# --------------------------------------------------------------------------------------------- interpreter
def dependencies_dir(create: bool = False) -> str | None:
    """Folder (inside the extension's user folder) that the Dependencies button installs torch & co. into."""
    try:
        return bpy.utils.extension_path_user(settings.ADDON, path="site-packages", create=create)
    except (ValueError, AttributeError, RuntimeError):
        return None


def engine_python(prefs=None) -> tuple[str, str | None]:
    """(interpreter, dependencies folder or None) that runs ``python -m boost_core``.

    'BLENDER': Blender's own Python with our dependencies folder on PYTHONPATH; 'CUSTOM': the interpreter the
    user pointed at, which brings its own packages. Without preferences (batch use), ``BOOST_DEPTH_PYTHON`` or
    Blender's Python."""
    prefs = prefs if prefs is not None else settings.preferences()
    if prefs is not None and prefs.python_source == "CUSTOM" and prefs.python_path.strip():
        return bpy.path.abspath(prefs.python_path.strip()), None
    if prefs is None and os.environ.get("BOOST_DEPTH_PYTHON"):
        return os.environ["BOOST_DEPTH_PYTHON"], None
    return sys.executable, dependencies_dir()


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
        python, deps = (sys.executable, None) if blender_python else engine_python(prefs)
        env = engine_process.engine_environment(deps, extension_dir=settings.EXTENSION_DIR)
        return cls(python, env, list(arguments), workdir, title)

    def job(self) -> engine_process.EngineJob:
        """The (not yet started) child process."""
        cwd = str(self.workdir) if self.workdir is not None else None
        return engine_process.EngineJob(engine_process.engine_command(self.python, self.arguments),
                                        env=self.env, cwd=cwd)


# --------------------------------------------------------------------------------------------- estimate
def resolve_net(name: str, prefs) -> str:
    if name and name != "DEFAULT":
        return name
    return prefs.default_net if prefs is not None else "midas_v2"


def resolve_mode(name: str, prefs) -> str:
    if name and name != "DEFAULT":
        return name
    return prefs.default_mode if prefs is not None else "final"


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
            path = Path(bpy.path.abspath(filepath))
            if not path.is_file():
                raise RequestError(f"Photo file not found: {path}")
            photo_name = path.name
        else:
            photo = bpy.data.images.get(image) if image else photo
            if photo is None:
                what = f"no image named {image!r}" if image else "no photo"
                raise RequestError(f"Estimate Depth: {what}; {SOURCE_HELP}")
            if images.is_depth_image(photo):
                raise RequestError(f"{photo.name!r} is a depth image; choose its photo instead")
            photo_name = photo.name
        net = resolve_net(net, prefs)
        mode = resolve_mode(mode, prefs)
        if not (base_weights and merge_weights):
            missing = settings.missing_weights(net, prefs, max_age=0.0)
            if missing:
                raise RequestError(f"Missing weights: {', '.join(missing)}; download them in "
                                   "Preferences > Add-ons > Boost Depth")

        workdir = Path(tempfile.mkdtemp(prefix="boost_depth_"))
        try:
            photo_path = path if photo is None else images.photo_file(photo, workdir)
        except (OSError, ValueError, RuntimeError) as error:
            running.remove_folders([workdir])
            raise RequestError(f"Estimate Depth: {error}") from None
        warnings = []
        side_path = None  # where files go next to the photo (only for photos that live in a file)
        if save_files:
            if path is not None:
                side_path = path
            elif (photo.packed_file is None and photo.source == "FILE" and Path(photo_path).is_file()
                  and not str(photo_path).startswith(str(workdir))):
                side_path = Path(photo_path)
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
        env = engine_process.engine_environment(deps, extension_dir=settings.EXTENSION_DIR)
        return cls(python, env, arguments, workdir, f"Depth of {photo_name}", warnings, photo_name=photo_name,
                   file_path=path, side_path=side_path, formats=sorted(formats), net=net, mode=mode)
