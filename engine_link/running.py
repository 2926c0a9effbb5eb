"""The one background job Blender runs at a time (an estimate or a weights download), driven on the main thread.

``start()`` launches a ``boost_core.host.engine_process.EngineJob`` child process; ``tick()`` (registered with
``bpy.app.timers``; also called by modal operators and by blocking runs) reads its progress into
``WindowManager.boost_depth_job`` for the panel and the status bar, and when the child ends calls the job's
``on_success`` on the main thread, so the scene only changes when a job succeeds. Cancel terminates the child
(then kills it after a grace period); a failed or crashed child leaves its message in ``last_error`` and in
Blender's console, and Blender carries on.

Progressive results: a job may pass ``on_partial(job, event)``, called on the main thread for the newest
intermediate map (the engine's ``partial`` event; older ones that arrived in the same poll are skipped), and
``on_abort(job, outcome)``, called when it ends without success (cancelled or failed) to undo what
``on_partial`` showed, or keep it when the user asked. The panel shows ``elapsed`` (seconds since the child
started) and ``eta`` (the engine's estimate of the seconds left; -1 while it has none).
"""

import atexit
import shutil
import time
import traceback

import bpy

from . import settings

INTERVAL = 0.1  # seconds between polls


class ActiveJob:
    """A running child plus what to do with its results.

    job: boost_core.host.engine_process.EngineJob (started). title: short text for the UI. on_success(job): applies results
    (main thread; may raise to report a failure). cleanup: folders removed when the job ends.
    """

    def __init__(self, job, title: str, on_success=None, cleanup=(), undo_message: str = "", on_partial=None,
                 on_abort=None):
        self.job = job
        self.on_partial = on_partial
        self.on_abort = on_abort
        self.partials_seen = 0
        self.title = title
        self.on_success = on_success
        self.cleanup = list(cleanup)
        self.undo_message = undo_message
        self.watched = False  # a modal operator reports the outcome itself
        self.outcome: str | None = None  # "succeeded" | "failed" | "cancelled" once finalised
        self.error = ""


_active: ActiveJob | None = None


@atexit.register
def _kill_at_exit() -> None:
    """Blender is quitting with a job running: take its child along (it runs in its own process group)."""
    if _active is not None:
        _active.job.kill()
        remove_folders(_active.cleanup)


def active() -> ActiveJob | None:
    return _active


def running() -> bool:
    return _active is not None


def start(
    context, job, title: str, *, on_success=None, cleanup=(), undo_message: str = "", timer: bool = True,
    on_partial=None, on_abort=None,
):
    """Start ``job`` as the active job. Raises RuntimeError if another runs, OSError if it cannot start
    (the cleanup folders are removed then)."""
    global _active
    if _active is not None:
        raise RuntimeError("another depth job is running; wait for it or cancel it")
    try:
        job.start()
    except OSError:
        remove_folders(cleanup)
        raise
    _active = ActiveJob(job, title, on_success, cleanup, undo_message, on_partial, on_abort)
    state = context.window_manager.boost_depth_job
    state.running = True
    state.fraction = 0.0
    state.elapsed = 0.0
    state.eta = -1.0
    state.title = title
    state.message = job.message
    state.last_error = ""
    if timer and not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=INTERVAL)
    settings.redraw_all(context)
    return _active


def cancel() -> bool:
    """Ask the active job to stop; True when there was one."""
    if _active is None:
        return False
    _active.job.cancel()
    return True


def tick():
    """Poll the active job; the ``bpy.app.timers`` callback. Returns the next interval, or None when idle."""
    a = _active
    if a is None:
        return None
    a.job.poll()
    state = bpy.context.window_manager.boost_depth_job
    state.fraction = a.job.fraction
    state.message = a.job.message
    state.elapsed = a.job.elapsed
    eta = getattr(a.job, "eta", None)
    state.eta = -1.0 if eta is None else eta
    count = getattr(a.job, "partial_count", 0)
    if count > a.partials_seen and not a.job.finished:
        a.partials_seen = count
        if a.on_partial is not None and a.job.state == "running" and not getattr(a.job, "_cancel_requested", False):
            try:
                a.on_partial(a.job, a.job.partial)
            except Exception:  # noqa: BLE001 - a map that cannot be shown must not stop the job
                traceback.print_exc()
    if a.job.finished:
        _finalize(a)
        return None
    settings.redraw_all()
    return INTERVAL


def wait(timeout: float | None = None) -> str | None:
    """Drive the active job to its end on this thread (blocking runs, background mode). Returns its
    outcome."""
    a = _active
    if a is None:
        return None
    deadline = None if timeout is None else time.monotonic() + timeout
    while tick() is not None:
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    return a.outcome


def _finalize(a: ActiveJob) -> None:
    global _active
    _active = None
    wm = bpy.context.window_manager
    state = wm.boost_depth_job
    job = a.job
    outcome = job.state
    error = ""
    if outcome == "succeeded" and a.on_success is not None:
        try:
            a.on_success(job)
        except Exception as exc:  # noqa: BLE001 - report, never take Blender down
            traceback.print_exc()
            outcome, error = "failed", f"{a.title}: {exc}"
    elif outcome == "failed":
        error = f"{a.title}: {job.error_summary()}"
        print("Boost Depth:", job.error_report())
    if outcome != "succeeded" and a.on_abort is not None:
        try:
            a.on_abort(job, outcome)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    a.outcome, a.error = outcome, error
    state.running = False
    state.fraction = 1.0 if outcome == "succeeded" else state.fraction
    state.message = {"succeeded": job.message, "cancelled": "Cancelled"}.get(outcome, "Failed")
    state.last_error = error
    remove_folders(a.cleanup)
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if outcome == "succeeded" and a.undo_message:  # the one undo step of the job (its operator has no UNDO)
        try:
            bpy.ops.ed.undo_push(message=a.undo_message)
        except RuntimeError:
            pass
    if error and not a.watched and not bpy.app.background:
        _popup(error)
    settings.redraw_all()


def _popup(message: str) -> None:
    wm = bpy.context.window_manager
    if not wm.windows:
        return

    def draw(menu, _context):
        for line in message.splitlines() or [message]:
            menu.layout.label(text=line)

    try:
        wm.popup_menu(draw, title="Boost Depth", icon="ERROR")
    except RuntimeError:
        pass


def remove_folders(folders) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def stop_all(kill_timeout: float = 5.0) -> None:
    """Cancel the active job and wait for its child to exit (on unregister / file load): no orphan
    processes. A child that outlives ``kill_timeout`` is killed and dropped; the timer is always removed."""
    global _active
    a = _active
    try:
        if a is None:
            return
        a.on_success = None  # the scene it was meant for is going away
        a.job.cancel()
        deadline = time.monotonic() + kill_timeout
        while tick() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        if _active is a:  # still running: kill it and forget it
            try:
                a.job.kill()
            except Exception:  # noqa: BLE001 - unregistering must go on
                traceback.print_exc()
            _active = None
            a.outcome = "cancelled"
            remove_folders(a.cleanup)
            try:
                state = bpy.context.window_manager.boost_depth_job
                state.running, state.message = False, "Cancelled"
            except AttributeError:
                pass
    finally:
        unregister_timer()


def unregister_timer() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
