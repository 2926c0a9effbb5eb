"""Estimate depth: run ``python -m boost_core`` on a photo in a child process, then load the result as the float
Non-Color image ``<photo> depth`` (and, if asked, copy the files next to the photo, never over it)."""

import os
import tempfile
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ..engine_link import request, settings
from ..scene import footage, images
from ..engine_link import running
from .properties import FOOTAGE_SCOPE_ITEMS, FORMAT_ITEMS, mode_items, net_property


def editor_image(context):
    """The image shown by the Image Editor the context is in, or None."""
    space = getattr(context, "space_data", None)
    if space is not None and space.type == "IMAGE_EDITOR":
        return space.image
    return None


def context_photo(context):
    """The photo the context points at: the Image Editor's image (its photo, if it shows a depth image), else
    the Depth tab's image. None when there is none."""
    image = editor_image(context)
    if image is None and getattr(context, "scene", None) is not None:
        image = context.scene.boost_depth.image
    if images.is_depth_image(image):
        image = images.photo_of(image)
    return image


def estimate_blocker(context, net: str | None = None) -> str | None:
    """Why Estimate Depth cannot run in this context (for greyed-out buttons), or None."""
    if running.running():
        return "A depth job is running (cancel it or wait)"
    s = context.scene.boost_depth
    if s.source == "FILE" and editor_image(context) is None:
        if not s.filepath.strip():
            return "No photo file chosen"
        if not os.path.isfile(bpy.path.abspath(s.filepath)):
            return "Photo file not found"
    elif context_photo(context) is None:
        return "No photo: " + request.SOURCE_HELP
    elif footage.is_footage(context_photo(context)) and s.footage_scope == "RANGE":
        start, end = footage.frame_range(s, context.scene)
        if end < start:
            return f"The frame range {start}-{end} is empty: make End at least Start"
    prefs = settings.preferences(context)
    name = request.resolve_net(net or s.net, prefs)
    if name not in settings.network_names():
        return f"Unknown network {name!r}: choose one from the list"
    missing = settings.missing_weights(name, prefs)
    if missing:
        return f"Missing weights: {', '.join(missing)} (download them below)"
    return request.engine_modules_problem(prefs)  # None while the background check runs


def side_outputs(outputs: dict, photo_path: Path, formats) -> list[Path]:
    """Copy the engine's outputs of ``formats`` next to the photo as ``<stem>_depth<suffix>``, all-or-nothing:
    every copy goes to a temp name in the photo's folder first, then all are renamed into place; a failure undoes
    the renames (a replaced file comes back), removes every temp and raises. Never writes over the photo or an
    engine output. New files follow the umask; a replaced file keeps its mode. Returns the written paths."""
    from ..boost_core.host.atomic_files import replace_all, unlink_quietly

    stem = photo_path.stem
    plan = []
    for fmt in formats:
        src = outputs.get(fmt)
        if not src:
            continue
        src = Path(src)
        rest = src.name[len(stem) :] if src.name.startswith(stem) else src.suffix
        dest = photo_path.with_name(f"{stem}_depth{rest}")
        if dest.resolve() == photo_path.resolve() or any(
                dest.resolve() == Path(other).resolve() for other in outputs.values() if other):
            raise ValueError(f"refusing to write {dest} over the photo or an engine output")
        plan.append((src, dest))
    temps = []
    try:
        for src, dest in plan:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f, open(src, "rb") as s:
                while chunk := s.read(1 << 20):
                    f.write(chunk)
        replace_all([(tmp, dest) for tmp, (_, dest) in zip(temps, plan)])
    except BaseException:
        for tmp in temps:
            unlink_quietly(tmp)
        raise
    return [dest for _, dest in plan]


class BOOST_DEPTH_OT_estimate(bpy.types.Operator):
    """Estimate a high-resolution depth map of the photo (runs in the background; Esc cancels)"""

    bl_idname = "boost_depth.estimate"
    bl_label = "Estimate Depth"
    # Neither REGISTER nor UNDO: no Adjust Last Operation panel (redoing would start another multi-minute job)
    # and no undo step when the job merely starts; engine_link.running pushes exactly one "Estimate Depth"
    # step when the result lands.
    bl_options = set()

    image: StringProperty(
        name="Image",
        description="Photo datablock (default: the Image Editor's or the Depth tab's image)",
        options={"SKIP_SAVE"},
    )
    filepath: StringProperty(
        name="File",
        description="Photo file (instead of an image datablock)",
        subtype="FILE_PATH",
        options={"SKIP_SAVE"},
    )
    net: net_property(options={"SKIP_SAVE"})
    mode: EnumProperty(name="Mode", items=mode_items, options={"SKIP_SAVE"})
    max_res: IntProperty(
        name="Max Resolution",
        description="Cap on the boosted size in pixels (0 = no cap)",
        default=0,
        min=0,
        subtype="PIXEL",
        options={"SKIP_SAVE"},
    )
    formats: EnumProperty(
        name="Formats", items=FORMAT_ITEMS, options={"ENUM_FLAG", "SKIP_SAVE"}, default={"exr"}
    )
    save_files: BoolProperty(name="Save Next to Photo", default=False, options={"SKIP_SAVE"})
    keep_partial: BoolProperty(
        name="Keep Partial Depth on Cancel",
        description="Final mode shows the depth image while it is estimated; when cancelled, keep it as far as it "
        "got (default: remove it, the scene stays as it was)",
        default=False,
        options={"SKIP_SAVE"},
    )
    base_weights: StringProperty(
        name="Base Weights",
        subtype="FILE_PATH",
        options={"SKIP_SAVE"},
        description="Base network checkpoint (default: from the models folder)",
    )
    merge_weights: StringProperty(
        name="Merge Weights",
        subtype="FILE_PATH",
        options={"SKIP_SAVE"},
        description="Merge network checkpoint (default: from the models folder)",
    )
    scope: EnumProperty(
        name="Footage",
        items=FOOTAGE_SCOPE_ITEMS,
        description="Image sequence or movie: every frame of the range, or the current frame only (default: the "
        "Depth tab's choice)",
        options={"SKIP_SAVE"},
    )
    frame_start: IntProperty(name="Start", description="First scene frame (default: the Depth tab's range)",
                             options={"SKIP_SAVE"})
    frame_end: IntProperty(name="End", description="Last scene frame (default: the Depth tab's range)",
                           options={"SKIP_SAVE"})
    folder: StringProperty(name="Depth Folder", subtype="DIR_PATH", options={"SKIP_SAVE"},
                           description="Where the depth sequence goes (default: the Depth tab's)")
    start_over: BoolProperty(
        name="Start Over",
        description="Footage: forget the job file's record of finished frames (needed when the settings changed)",
        options={"SKIP_SAVE"},
    )
    blocking: BoolProperty(
        name="Wait",
        description="Wait for the result before returning (scripts); the default in background mode",
        options={"SKIP_SAVE", "HIDDEN"},
    )

    @classmethod
    def poll(cls, context):
        if running.running():
            cls.poll_message_set("A depth job is running (cancel it or wait)")
            return False
        return True

    def _fill_from_settings(self, context):
        s = context.scene.boost_depth
        for name in ("net", "mode", "max_res", "formats", "save_files", "keep_partial"):
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(s, name))
        if not self.properties.is_property_set("scope"):
            self.scope = s.footage_scope
        if not self.image and not self.filepath:
            if editor_image(context) is not None or s.source == "IMAGE":
                photo = context_photo(context)
                self.image = photo.name if photo is not None else ""
            else:
                self.filepath = s.filepath

    def invoke(self, context, event):
        if context.window is None:  # no event loop (background): run like a script call
            return self.execute(context)
        self._fill_from_settings(context)
        result = self._start(context)
        if result != {"RUNNING_MODAL"}:
            return result
        self._watch = running.active()
        self._watch.watched = True
        self._timer = context.window_manager.event_timer_add(running.INTERVAL, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS" and self._watch.outcome is None:
            self._watch.job.cancel()
        if event.type == "TIMER":
            running.tick()  # idempotent with the app timer; keeps the bar moving while the mouse rests
        if self._watch.outcome is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        if self._watch.outcome == "succeeded":
            self.report({"INFO"}, f"{self._watch.title}: done in {self._watch.job.elapsed:.1f} s")
            return {"FINISHED"}
        if self._watch.outcome == "failed":
            self.report({"ERROR"}, self._watch.error)
        else:
            self.report({"WARNING"}, f"{self._watch.title}: cancelled")
        return {"CANCELLED"}

    def cancel(self, context):  # Blender drops the modal (file load, window closed): stop the child too
        if getattr(self, "_timer", None) is not None:
            context.window_manager.event_timer_remove(self._timer)
        running.cancel()

    def execute(self, context):
        self._fill_from_settings(context)
        result = self._start(context)
        if result != {"RUNNING_MODAL"}:
            return result
        blocking = self.blocking if self.properties.is_property_set("blocking") else bpy.app.background
        if not blocking:
            return {"FINISHED"}  # the app timer applies the result and pushes the undo step
        active = running.active()
        outcome = running.wait()
        if outcome == "succeeded":
            self.report({"INFO"}, f"{active.title}: done in {active.job.elapsed:.1f} s")
            return {"FINISHED"}
        if outcome == "failed":
            self.report({"ERROR"}, active.error)
        else:
            self.report({"WARNING"}, f"{active.title}: cancelled")
        return {"CANCELLED"}

    def _footage(self, context):
        """The footage Image when this run covers a frame range of an image sequence or a movie, else None."""
        if self.filepath or self.scope != "RANGE":
            return None
        photo = bpy.data.images.get(self.image) if self.image else context_photo(context)
        return photo if footage.is_footage(photo) else None

    def _start_footage(self, context, photo):
        try:
            job_request = request.FootageRequest.build(
                context, photo, net=self.net, mode=self.mode, max_res=self.max_res,
                formats=set(self.formats) if self.save_files else set(),
                start=self.frame_start if self.properties.is_property_set("frame_start") else None,
                end=self.frame_end if self.properties.is_property_set("frame_end") else None,
                folder=bpy.path.abspath(self.folder) if self.folder else "", start_over=self.start_over,
                base_weights=self.base_weights, merge_weights=self.merge_weights)
        except request.RequestError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        try:
            running.start(context, job_request.job(), job_request.title,
                          on_success=lambda done_job: apply_footage_result(done_job, job_request),
                          undo_message="Estimate Depth")
        except OSError as error:
            self.report({"ERROR"}, f"Cannot start the depth engine with {job_request.python}: {error}. Check the "
                                   "Python interpreter in Preferences > Add-ons > Boost Depth")
            return {"CANCELLED"}
        return {"RUNNING_MODAL"}

    def _start(self, context):
        """Build the request, start the child. {'RUNNING_MODAL'} when started, else {'CANCELLED'} (reported)."""
        photo = self._footage(context)
        if photo is not None:
            return self._start_footage(context, photo)
        keywords = {name: getattr(self, name) for name in (
            "image", "filepath", "net", "mode", "max_res", "save_files", "base_weights", "merge_weights")}
        try:
            job_request = request.EstimateRequest.build(context, formats=set(self.formats),
                                                        photo=context_photo(context), **keywords)
        except request.RequestError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        for warning in job_request.warnings:
            self.report({"WARNING"}, warning)
        partial = images.PartialDepth(job_request.photo_name, properties={
            "net": job_request.net, "mode": job_request.mode})
        keep = self.keep_partial

        def show_partial(_job, event):
            partial.update(event["path"], event.get("done", 0), event.get("of"), event.get("kind"))
            settings.redraw_all()

        def abort(_job, _outcome):  # cancelled or failed: the scene as before, unless the user keeps the map
            if keep:
                partial.keep()
            else:
                partial.discard()

        try:
            running.start(context, job_request.job(), job_request.title,
                          on_success=lambda done_job: apply_result(done_job, job_request, partial),
                          cleanup=[job_request.workdir], undo_message="Estimate Depth",
                          on_partial=show_partial, on_abort=abort)
        except OSError as error:
            self.report({"ERROR"}, f"Cannot start the depth engine with {job_request.python}: {error}. Check the "
                                   "Python interpreter in Preferences > Add-ons > Boost Depth")
            return {"CANCELLED"}
        return {"RUNNING_MODAL"}


def apply_result(job, job_request, partial=None) -> None:
    """Main thread, after success: the depth image datablock (and files next to the photo). ``partial``: the
    images.PartialDepth shown while the job ran; the final image replaces it (one undo step, pushed after)."""
    photo_name, file_path = job_request.photo_name, job_request.file_path
    side_path, formats = job_request.side_path, job_request.formats
    if not job.results:
        raise RuntimeError("the engine finished without a result")
    result = job.results[0]
    outputs = result.get("outputs") or {}
    if "exr" not in outputs:
        raise RuntimeError("the engine wrote no EXR output")
    if file_path is not None:
        photo = images.load_photo(file_path)
        photo_name = photo.name
    elif bpy.data.images.get(photo_name) is None:
        raise RuntimeError(f"the photo {photo_name!r} was removed while its depth was estimated")
    props = {k: result.get(k) for k in ("net", "mode", "R", "factor")}
    if partial is not None and partial.image_name not in (None, images.depth_image_name(photo_name)):
        partial.discard()  # not the name the final image takes over (a file's photo, an older depth's name)
    photo = bpy.data.images.get(photo_name)
    size = tuple(photo.size) if photo is not None and photo.size[0] and photo.size[1] else None
    images.load_depth_image(outputs["exr"], photo_name, result.get("kind") or "inverse_depth", props,
                            expected_size=size)
    if partial is not None:
        partial.finish()
    if side_path is not None and formats:
        side_outputs(outputs, side_path, formats)


def apply_footage_result(job, job_request) -> None:
    """Main thread, after success: the depth sequence as the Image ``<photo> depth`` (source 'SEQUENCE'), its
    image users (Image Editors showing it or the photo, the photo's material) following the timeline."""
    photo = bpy.data.images.get(job_request.photo_name)
    if photo is None:
        raise RuntimeError(f"the footage {job_request.photo_name!r} was removed while its depth was estimated")
    kind = next((r.get("kind") for r in job.results if r.get("kind")), None) or job_request.kind
    first = next((r for r in job.results if r.get("R") is not None), {})
    props = {"net": job_request.net, "mode": job_request.mode, "R": first.get("R"), "factor": first.get("factor")}
    sequence = job_request.sequence
    depth = footage.load_depth_sequence(sequence, photo.name, kind, props)
    footage.retime_users(photo, depth, sequence)


class BOOST_DEPTH_OT_cancel(bpy.types.Operator):
    """Stop the running depth job; the scene stays as it was (unless Keep Partial Depth on Cancel is on)"""

    bl_idname = "boost_depth.cancel"
    bl_label = "Cancel Depth Job"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not running.running():
            cls.poll_message_set("No depth job is running")
            return False
        return True

    def execute(self, context):
        running.cancel()
        context.window_manager.boost_depth_job.message = "Cancelling…"
        return {"FINISHED"}


classes = (BOOST_DEPTH_OT_estimate, BOOST_DEPTH_OT_cancel)
