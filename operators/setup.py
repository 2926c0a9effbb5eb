"""Preferences actions: download model weights (a ``python -m boost_core weights download`` child), install or
uninstall PyTorch in the extension's user folder (the CPU build: one pinned, verified file, no pip; GPU builds:
pip, on request), and check another Python interpreter.

All respect Blender's "Allow Online Access" setting (Preferences > System > Network).
"""

import urllib.parse

import bpy
from bpy.props import EnumProperty, StringProperty

from ..boost_core.host import dependencies, engine_process, torch_install
from ..boost_core.weights import catalogue, download
from ..boost_core.weights import store as weights
from ..engine_link import request, settings
from ..engine_link import running

OFFLINE = (
    "Online access is off (Preferences > System > Network > Allow Online Access). Turn it on, or copy "
    "the files by hand (see 'python -m boost_core weights list'), or use a mirror on your network."
)


def online() -> bool:
    return bool(getattr(bpy.app, "online_access", True))


def can_start(cls, *, needs_online: bool = False) -> bool:
    """An operator's poll: no job running (and, for downloads, Allow Online Access on); else the reason is set
    as the poll message (shown in the button's tooltip)."""
    if running.running():
        cls.poll_message_set("A job is running (cancel it or wait)")
        return False
    if needs_online and not online():
        cls.poll_message_set(OFFLINE)
        return False
    return True


def weight_rows(prefs) -> list[dict]:
    """One dict per registered weight file: name, title, filename, size, licence, note, status, manual."""
    folder = settings.models_dir(prefs)
    rows = []
    for name in catalogue.names():
        wf = catalogue.get(name)
        status: str
        try:
            status = weights.status(name, folder)
        except Exception as error:  # noqa: BLE001
            status = f"error: {error}"
        rows.append(
            {
                "name": name,
                "title": getattr(wf, "title", "") or wf.filename,
                "filename": wf.filename,
                "size": weights.format_size(wf.size),
                "licence": wf.licence,
                "note": wf.licence_note,
                "status": status,
                "manual": wf.manual,
                "accept": getattr(wf, "requires_acceptance", False),
            }
        )
    return rows


class BOOST_DEPTH_OT_download_weights(bpy.types.Operator):
    """Download this model file into the models folder (verified, resumable)"""

    bl_idname = "boost_depth.download_weights"
    bl_label = "Download Weights"
    bl_options = {"REGISTER", "INTERNAL"}

    name: StringProperty(name="Weights", description="Weights registry name, e.g. merge_net")

    @classmethod
    def poll(cls, context):
        return can_start(cls, needs_online=True)

    def invoke(self, context, event):
        wf = catalogue.get(self.name)
        if wf is not None and (getattr(wf, "requires_acceptance", False) or wf.licence_note):
            return context.window_manager.invoke_props_dialog(
                self, width=520, title="Licence", confirm_text="Accept and Download"
            )
        return self.execute(context)

    def draw(self, context):
        wf = catalogue.get(self.name)
        col = self.layout.column(align=True)
        col.label(text=f"{wf.filename}: {wf.licence}")
        for line in _wrap(wf.licence_note, 90):
            col.label(text=line)
        if getattr(wf, "requires_acceptance", False):
            col.label(text="This licence restricts use. Download only if your use complies.", icon="ERROR")

    def execute(self, context):
        if not online():
            self.report({"ERROR"}, OFFLINE)
            return {"CANCELLED"}
        prefs = settings.preferences(context)
        args = ["weights", "download", self.name, "--progress", "json", "--yes"]
        folder = settings.models_dir(prefs)
        if folder:
            args += ["--models-dir", folder]
        if prefs is not None and prefs.mirror.strip():
            args += ["--mirror", prefs.mirror.strip()]
        # Downloads need only the standard library: Blender's own Python always does it.
        job = request.EngineRequest.for_engine(args, prefs, title=f"Downloading {self.name}",
                                               blender_python=True).job()

        def on_success(_job):
            settings.forget_weights_cache()

        try:
            running.start(context, job, f"Downloading {self.name}", on_success=on_success)
        except (OSError, RuntimeError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return _finish_in_background(self)


def torch_items(_self, _context):
    """The CPU build (from the lock, no pip) first, then the GPU builds of this platform (pip, advanced)."""
    items = [("cpu", "CPU", "The pinned CPU build (Apple GPUs through MPS on macOS): one verified file, no pip")]
    try:
        items += [(v.kind, v.label.split(" (")[0], f"{v.label}, installed with pip from download.pytorch.org"
                   + (f" ({v.note})" if v.note else "")) for v in dependencies.torch_variants() if v.kind != "cpu"]
    except Exception:  # noqa: BLE001
        pass
    return settings.keep_items("setup.torch", items)


def torch_download(build: str):
    """(LockedFile or None, sentence) for the confirmation: what is downloaded, how large, from where."""
    if build != "cpu":
        req = dependencies.torch_requirement(build)
        return None, (f"torch {dependencies.TORCH_VERSION} ({build}) with its GPU libraries, several GB, installed "
                      f"by pip from {req.index_url or 'PyPI'}")
    wheel = torch_install.plan("cpu")
    size = download.human_size(wheel.size) if wheel.size else "size from the index page"
    host = urllib.parse.urlsplit(wheel.url).netloc
    return wheel, f"torch {wheel.version} (CPU), {size} from {host}: {wheel.filename}"


class BOOST_DEPTH_OT_install_torch(bpy.types.Operator):
    """Download PyTorch into the extension's user folder: one verified file for the CPU build, no pip"""

    bl_idname = "boost_depth.install_torch"
    bl_label = "Install PyTorch"
    bl_options = {"REGISTER", "INTERNAL"}

    build: EnumProperty(name="Build", items=torch_items)

    @classmethod
    def poll(cls, context):
        return can_start(cls, needs_online=True)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, width=560, title="Install PyTorch",
                                                          confirm_text="Download and Install")

    def draw(self, context):
        col = self.layout.column(align=True)
        col.prop(self, "build")
        try:
            _wheel, sentence = torch_download(self.build)
        except Exception as error:  # noqa: BLE001 - shown, not raised, in a dialog
            sentence = str(error)
        for line in _wrap(sentence, 90):
            col.label(text=line)
        root = request.torch_root()
        col.label(text=f"Into: {root}", icon="FILE_FOLDER")
        col.label(text="Unpacked it takes about 3.5 times the download on disk. Uninstall removes it.")

    def execute(self, context):
        if not online():
            self.report({"ERROR"}, OFFLINE)
            return {"CANCELLED"}
        root = request.torch_root(create=True)
        if root is None:
            self.report({"ERROR"}, "No user folder for the extension (is it installed as an extension?)")
            return {"CANCELLED"}
        prefs = settings.preferences(context)
        index = prefs.torch_index.strip() if prefs is not None else ""
        build = self.build
        try:
            wheel, _sentence = torch_download(build)
        except (ValueError, OSError, torch_install.TorchInstallError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}

        def work(progress, cancel):
            if wheel is None:  # a GPU build: pip, into a folder of its own, switched into place
                return torch_install.install_with_pip(dependencies.torch_requirement(build), root, index=index or None,
                                                      progress=lambda line: progress(line.fraction, line.message[:120]),
                                                      cancel=cancel)

            def on_bytes(p):  # a download.Progress
                text = f"PyTorch: {download.human_size(p.done)} of {download.human_size(p.total)}"
                progress(p.fraction, text if p.state == "downloading" else f"PyTorch: {p.state}")

            return torch_install.install(wheel, root, index=index or None, progress=on_bytes, cancel=cancel)

        job = engine_process.FunctionJob(work, "install torch")

        def on_success(done):
            request.forget_engine_modules()
            bpy.context.window_manager.boost_depth_job.message = (
                f"PyTorch {done.value.version} ({done.value.build}) installed in {done.value.folder}")

        try:
            running.start(context, job, "Installing PyTorch", on_success=on_success)
        except RuntimeError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return _finish_in_background(self)


class BOOST_DEPTH_OT_uninstall_torch(bpy.types.Operator):
    """Remove the PyTorch that Install PyTorch put into the extension's user folder"""

    bl_idname = "boost_depth.uninstall_torch"
    bl_label = "Uninstall PyTorch"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return can_start(cls) and torch_install.installed(request.torch_root()) is not None

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event, title="Uninstall PyTorch",
                                                     message=f"Remove {request.torch_root()}?",
                                                     confirm_text="Uninstall")

    def execute(self, context):
        root = request.torch_root()
        try:
            removed = root is not None and torch_install.uninstall(root)
        except OSError as error:
            self.report({"ERROR"}, f"Cannot remove {root}: {error.strerror}; close programs using it and retry")
            return {"CANCELLED"}
        request.forget_engine_modules()
        self.report({"INFO"}, f"PyTorch removed from {root}" if removed else "PyTorch was not installed")
        return {"FINISHED"}


class BOOST_DEPTH_OT_check_interpreter(bpy.types.Operator):
    """Check that the chosen Python can run the depth engine (version, torch, numpy, OpenCV, OpenEXR)"""

    bl_idname = "boost_depth.check_interpreter"
    bl_label = "Check Interpreter"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return can_start(cls)

    def execute(self, context):
        """The probe (up to minutes for a slow or broken interpreter) runs in a worker thread, as a job the
        panel shows with a Cancel button; its report lands in the preferences when it is done."""
        prefs = settings.preferences(context)
        python, deps = request.engine_python(prefs)

        def work(progress, cancel):
            progress(None, f"Checking {python}…")
            return dependencies.check_interpreter(python, deps)

        job = engine_process.FunctionJob(work, "check interpreter")

        def on_success(done):
            report = done.value
            ok = getattr(report, "ok", None)
            text = str(getattr(report, "message", "") or report)
            current = settings.preferences()
            if current is not None:
                current.interpreter_report = text[:1000]
            request.forget_engine_modules()  # the sidebar's cached check follows the fresh report
            first = text.splitlines()[0] if text else str(python)
            bpy.context.window_manager.boost_depth_job.message = first
            if ok is False:
                raise RuntimeError(first)

        try:
            running.start(context, job, "Checking interpreter", on_success=on_success)
        except RuntimeError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not bpy.app.background:
            self.report({"INFO"}, f"Checking {python} in the background…")
        return _finish_in_background(self)


def _finish_in_background(op):
    """In background mode (scripts, tests) wait for the job and report how it ended; in the UI return at once
    (the panel shows the progress bar)."""
    if not bpy.app.background:
        return {"FINISHED"}
    active = running.active()
    outcome = running.wait()
    if outcome == "succeeded":
        return {"FINISHED"}
    if outcome == "failed":
        op.report({"ERROR"}, active.error)
    return {"CANCELLED"}


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text or "", width) or [""]


classes = (
    BOOST_DEPTH_OT_download_weights,
    BOOST_DEPTH_OT_install_torch,
    BOOST_DEPTH_OT_uninstall_torch,
    BOOST_DEPTH_OT_check_interpreter,
)
