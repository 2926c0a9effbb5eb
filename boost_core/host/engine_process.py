"""Run the engine (``python -m boost_core ...``) as a child process and follow its JSON-lines progress.

Plain Python (no bpy, no torch): Blender's operators, the preferences' download buttons and
``scripts/batch_depth.py`` all drive the engine through ``EngineJob``, so the same state machine is
unit-tested
without Blender.

Threads: two reader threads drain the child's stdout (JSON lines, see DESIGN.md) and stderr (human-readable
log)
into a queue and a bounded buffer. Everything else (``poll``, ``cancel``, ``wait``) runs on the caller's
thread,
which in Blender is the main thread (a ``bpy.app.timers`` callback or a modal operator), so results are
applied
there.

States: "pending" -> "running" -> one of "succeeded", "failed", "cancelled".
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import peak_memory

PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
FINISHED_STATES = (SUCCEEDED, FAILED, CANCELLED)

#: Where each engine stage starts within one image's share of the progress bar (fractions in [0, 1]).
STAGE_START = {"resolution_search": 0.0, "whole_image": 0.1, "patches": 0.3, "writing": 0.95}
_STAGE_ORDER = list(STAGE_START)

EXTENSION_DIR = Path(__file__).resolve().parents[2]  # the extension root (holds boost_core/)
"""The folder holding the ``boost_core`` package: the extension's root, put on the child's PYTHONPATH."""


def engine_environment(
    dependencies: str | os.PathLike | list | tuple | None = None,
    *,
    extension_dir: str | os.PathLike | None = None,
    base_env: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Environment for the engine child: the extension root (so ``boost_core`` imports) and, for Blender's own
    interpreter, the folders holding the engine's packages (``dependencies``: one folder, an ``os.pathsep``
    separated string of them, or a list — the extension's installed wheels and its torch folder) go first on
    PYTHONPATH; output unbuffered so progress lines arrive as they are printed; the user's site-packages ignored
    when dependencies are given (so a stray torch in ~/.local does not shadow ours); ``cache_dir``: where the
    compiled kernels are kept (``BOOST_DEPTH_CACHE``)."""
    env = dict(os.environ if base_env is None else base_env)
    if isinstance(dependencies, (list, tuple)):
        folders = [str(d) for d in dependencies if d]
    else:
        folders = [d for d in str(dependencies or "").split(os.pathsep) if d]
    paths = [str(extension_dir or EXTENSION_DIR), *folders]
    if folders:
        env["PYTHONNOUSERSITE"] = "1"
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if cache_dir:
        env["BOOST_DEPTH_CACHE"] = str(cache_dir)
    return env


def estimate_arguments(
    images,
    *,
    net: str,
    mode: str,
    output: str | os.PathLike,
    formats=("exr",),
    max_res: int | None = None,
    device: str = "auto",
    base_weights: str | os.PathLike | None = None,
    merge_weights: str | os.PathLike | None = None,
    models_dir: str | os.PathLike | None = None,
    partial: bool = False,
    partial_interval: float | None = None,
) -> list[str]:
    """Command-line arguments of ``python -m boost_core`` for an estimate with JSON-lines progress (``partial``:
    intermediate maps in final mode, at most every ``partial_interval`` seconds)."""
    args = [str(p) for p in images]
    args += ["--net", net, "--mode", mode, "--output", str(output), "--device", device]
    args += ["--format", ",".join(formats), "--progress", "json"]
    if max_res:
        args += ["--max-res", str(int(max_res))]
    if base_weights:
        args += ["--base-weights", str(base_weights)]
    if merge_weights:
        args += ["--merge-weights", str(merge_weights)]
    if models_dir:
        args += ["--models-dir", str(models_dir)]
    if partial:
        args += ["--partial"]
        if partial_interval is not None:
            args += ["--partial-interval", f"{float(partial_interval):g}"]
    return args


def engine_command(python: str | os.PathLike, arguments) -> list[str]:
    """argv running the engine module with ``python``."""
    return [str(python), "-m", "boost_core", *[str(a) for a in arguments]]


class EngineJob:
    """One child process speaking the JSON-lines protocol on stdout.

    argv: the full command (see ``engine_command``); env, cwd: as for ``subprocess.Popen``.
    grace: seconds between the polite stop (SIGTERM) and the hard kill on cancel.

    After ``start()``, call ``poll()`` regularly (it never blocks) or ``wait()``; read ``state``, ``fraction``
    (0..1 over all images), ``message`` (one line for a status bar), ``results`` / ``errors`` (the protocol's
    result and error events, in order), ``done`` (the done event or None), ``returncode`` and ``stderr_tail``.
    Progressive results: ``partial`` (the latest partial event: an intermediate map's ``path``, ``done``, ``of``;
    None before the first), ``partial_count`` (how many arrived, to notice a new one), ``engine_elapsed`` and
    ``eta`` (the engine's ``elapsed_s`` / ``eta_s`` of the current image; eta None while not estimable).
    """

    def __init__(self, argv, *, env=None, cwd=None, grace: float = 3.0, stderr_lines: int = 200,
                 log_path: str | os.PathLike | None = None):
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path) if log_path else None  # the child's whole stderr, after a header
        self.env = env
        self.cwd = cwd
        self.grace = float(grace)
        self.state = PENDING
        self.fraction = 0.0
        self.message = ""
        self.events: list[dict] = []
        self.results: list[dict] = []
        self.errors: list[dict] = []
        self.noise: list[str] = []  # stdout lines that are not protocol JSON (kept for the report)
        self.done: dict | None = None
        self.returncode: int | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._proc: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()
        self._stderr = collections.deque(maxlen=stderr_lines)
        self._stderr_lock = threading.Lock()
        self._stdout_closed = False
        self._cancel_requested = False
        self._kill_at: float | None = None
        self._total = 1
        self._completed = 0
        self._current = 0.0
        self._stage: str | None = None
        self._threads: list[threading.Thread] = []
        self.partial: dict | None = None
        self.partial_count = 0
        self.engine_elapsed: float | None = None
        self.eta: float | None = None

    # -- life cycle ---------------------------------------------------------------------------------------
    def start(self) -> EngineJob:
        """Start the child. Raises OSError (e.g. the interpreter does not exist) without leaving anything."""
        if self.state != PENDING:
            raise RuntimeError(f"job already {self.state}")
        kwargs = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True  # its own process group: cancel reaches grandchildren too
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "CREATE_NO_WINDOW", 0
            )
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        self.started_at = time.monotonic()
        self.state = RUNNING
        self.message = "Starting…"
        for target, stream in (
            (self._read_stdout, self._proc.stdout),
            (self._read_stderr, self._proc.stderr),
        ):
            t = threading.Thread(target=target, args=(stream,), daemon=True, name="boost-depth-reader")
            t.start()
            self._threads.append(t)
        return self

    def _read_stdout(self, stream):
        try:
            for line in stream:
                self._queue.put(line.rstrip("\r\n"))
        finally:
            self._queue.put(None)

    def _read_stderr(self, stream):
        log = None
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(self.log_path, "w", encoding="utf-8")
                log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  {subprocess.list2cmdline(self.argv)}\n")
            except OSError:
                log = None  # a log that cannot be written never stops the job
        try:
            for line in stream:
                with self._stderr_lock:
                    self._stderr.append(line.rstrip("\r\n"))
                if log is not None:
                    log.write(line)
                    log.flush()
        finally:
            if log is not None:
                log.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def stderr_tail(self) -> list[str]:
        with self._stderr_lock:
            return list(self._stderr)

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at

    def cancel(self) -> None:
        """Ask the child to stop (SIGTERM / terminate); ``poll`` kills it if it has not exited after
        ``grace``."""
        if self.state == PENDING:
            self.state = CANCELLED
            self.message = "Cancelled"
            return
        if self.finished or self._cancel_requested:
            return
        self._cancel_requested = True
        self.message = "Cancelling…"
        self._signal(signal.SIGTERM if os.name == "posix" else None)
        self._kill_at = time.monotonic() + self.grace

    def kill(self) -> None:
        """Stop the child (and its process group) at once, without waiting: for interpreter exit."""
        self._cancel_requested = True
        self._signal(signal.SIGKILL if os.name == "posix" else signal.SIGTERM)

    def _signal(self, sig) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(proc.pid, sig)
            elif sig is None:
                proc.terminate()
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def poll(self) -> list[dict]:
        """Handle what arrived since the last call; never blocks. Returns the new protocol events."""
        new: list[dict] = []
        if self.state != RUNNING:
            return new
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._stdout_closed = True
                continue
            event = self._parse(line)
            if event is not None:
                self._handle(event)
                new.append(event)
        if self._kill_at is not None and time.monotonic() >= self._kill_at:
            self._signal(signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
            self._kill_at = None
        if self._stdout_closed and self._proc.poll() is not None:
            self._finish()
        return new

    def wait(self, timeout: float | None = None, on_events=None) -> str:
        """Block until the job finishes (or ``timeout`` seconds pass); ``on_events(job, events)`` is called
           with
        each batch of new events. Returns the state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            events = self.poll()
            if events and on_events is not None:
                on_events(self, events)
            if self.finished or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(0.02)
        return self.state

    # -- protocol -----------------------------------------------------------------------------------------
    def _parse(self, line: str) -> dict | None:
        text = line.strip()
        if not text:
            return None
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            self.noise.append(line)
            return None
        return event

    def _handle(self, event: dict) -> None:
        self.events.append(event)
        kind = event.get("event")
        image = Path(str(event.get("image") or event.get("name") or "")).name
        if isinstance(event.get("elapsed_s"), (int, float)):
            self.engine_elapsed = float(event["elapsed_s"])
        if kind in ("stage", "progress", "partial"):
            eta = event.get("eta_s")
            self.eta = float(eta) if isinstance(eta, (int, float)) else None
        if kind == "start":
            self._total = max(1, int(event.get("total") or 1))
            self._completed = int(event.get("index") or 0)
            self._current = 0.0
            self._stage = None
            self.engine_elapsed = self.eta = None
            self.message = f"{image}: starting ({self._completed + 1}/{self._total})"
        elif kind == "stage":
            stage = str(event.get("stage", ""))
            self._stage = stage
            self._current = max(self._current, STAGE_START.get(stage, self._current))
            self.message = f"{image}: {stage.replace('_', ' ')}"
        elif kind == "progress":
            fraction = event.get("fraction")
            if fraction is None and event.get("of"):
                fraction = float(event.get("done", 0)) / float(event["of"])
            if fraction is not None:
                self._current = max(self._current, self._stage_fraction(float(fraction)))
            if event.get("of"):
                self.message = f"{image}: {event.get('done')}/{event.get('of')}".lstrip(": ")
            elif event.get("steps") and event.get("stage") == "whole_image":
                self.message = f"{image}: whole image {event.get('step')}/{event.get('steps')}".lstrip(": ")
        elif kind == "partial":
            self.partial = event
            self.partial_count += 1
        elif kind == "result":
            self.results.append(event)
            self._completed += 1
            self._current = 0.0
            self.message = f"{image}: done"
        elif kind == "error":
            self.errors.append(event)
            if event.get("image"):
                self._completed += 1
                self._current = 0.0
            self.message = f"{image}: {event.get('message', 'failed')}".lstrip(": ")
        elif kind == "done":
            self.done = event
            self._completed = self._total
            self._current = 0.0
        self.fraction = min(1.0, (self._completed + min(self._current, 1.0)) / self._total)

    def _stage_fraction(self, fraction: float) -> float:
        """Position within the current image of a progress fraction inside the current stage (the whole image
        when no stage was announced, e.g. a download)."""
        fraction = min(max(fraction, 0.0), 1.0)
        if self._stage not in STAGE_START:
            return fraction
        i = _STAGE_ORDER.index(self._stage)
        start = STAGE_START[self._stage]
        end = STAGE_START[_STAGE_ORDER[i + 1]] if i + 1 < len(_STAGE_ORDER) else 1.0
        return start + (end - start) * fraction

    def _finish(self) -> None:
        for t in self._threads:
            t.join(timeout=1.0)
        self.returncode = self._proc.returncode
        self.finished_at = time.monotonic()
        for p in (self._proc.stdout, self._proc.stderr):
            try:
                p.close()
            except OSError:
                pass
        failed = bool(self.errors) or (self.done is not None and int(self.done.get("failed") or 0) > 0)
        if self._cancel_requested:
            self.state = CANCELLED
            self.message = "Cancelled"
        elif self.returncode == 0 and not failed:
            self.state = SUCCEEDED
            self.fraction = 1.0
            memory = peak_memory.describe(self.done or {})
            self.message = f"Done ({memory})" if memory else "Done"
        else:
            self.state = FAILED
            self.message = self.error_summary()

    # -- reporting ----------------------------------------------------------------------------------------
    def error_summary(self) -> str:
        """One line saying why the job failed (the first error event, or how the process ended)."""
        if self.errors:
            e = self.errors[0]
            text = str(e.get("message") or "the engine reported an error")
            if e.get("hint"):
                text += f" ({e['hint']})"
            if e.get("image"):
                text = f"{Path(str(e['image'])).name}: {text}"
            if len(self.errors) > 1:
                text += f" (+{len(self.errors) - 1} more)"
            return text
        code = self.returncode
        if code is not None and code < 0 and os.name == "posix":
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        text = f"The depth engine {how}"
        if last:
            text += f": {last.strip()}"
        return text

    def error_report(self, lines: int = 20) -> str:
        """A multi-line report for a failed job: the summary, the command and the last lines of stderr."""
        parts = [self.error_summary(), "command: " + " ".join(self.argv)]
        tail = self.stderr_tail[-lines:]
        if tail:
            parts.append("engine log (last lines):")
            parts += ["  " + line for line in tail]
        if self.noise:
            parts.append("unexpected output: " + " | ".join(self.noise[-3:]))
        return "\n".join(parts)


class FunctionJob:
    """A Python function run in a worker thread behind the same interface as ``EngineJob`` (poll / cancel /
    wait / state / fraction / message / error_summary), for work that is not the engine CLI, e.g. pip
    installs.

    fn(progress, cancel) runs in the thread; progress(fraction: float | None, message: str) reports, cancel
    is a
    threading.Event the function may check. Its return value lands in ``value``; an exception fails the job.
    """

    def __init__(self, fn, title: str = ""):
        self.fn = fn
        self.argv = [title or getattr(fn, "__name__", "job")]
        self.state = PENDING
        self.fraction = 0.0
        self.message = ""
        self.results: list = []
        self.errors: list[dict] = []
        self.value = None
        self.exception: BaseException | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._outcome: str | None = None
        self._thread: threading.Thread | None = None

    pid = None
    stderr_tail: list = []
    noise: list = []

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at

    def start(self) -> FunctionJob:
        if self.state != PENDING:
            raise RuntimeError(f"job already {self.state}")
        self.state = RUNNING
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="boost-depth-worker")
        self._thread.start()
        return self

    def _progress(self, fraction=None, message: str = "") -> None:
        with self._lock:
            if fraction is not None:
                self.fraction = min(max(float(fraction), 0.0), 1.0)
            if message:
                self.message = str(message)

    def _run(self) -> None:
        try:
            value = self.fn(self._progress, self._cancel)
        except BaseException as error:
            with self._lock:
                self.exception = error
                self._outcome = CANCELLED if self._cancel.is_set() else FAILED
            return
        with self._lock:
            self.value = value
            self._outcome = CANCELLED if self._cancel.is_set() else SUCCEEDED

    def cancel(self) -> None:
        if self.state == PENDING:
            self.state = CANCELLED
            return
        self._cancel.set()
        self.message = "Cancelling…"

    def poll(self) -> list:
        with self._lock:
            outcome = self._outcome
        if self.state == RUNNING and outcome is not None:
            self.state = outcome
            self.finished_at = time.monotonic()
            if outcome == SUCCEEDED:
                self.fraction = 1.0
                self.message = "Done"
            elif outcome == FAILED:
                self.message = self.error_summary()
                self.errors.append({"event": "error", "message": self.message})
            else:
                self.message = "Cancelled"
        return []

    def wait(self, timeout: float | None = None, on_events=None) -> str:
        if self._thread is not None:
            self._thread.join(timeout)
        self.poll()
        return self.state

    def error_summary(self) -> str:
        if self.exception is None:
            return ""
        return str(self.exception) or type(self.exception).__name__

    def error_report(self, lines: int = 20) -> str:
        import traceback

        if self.exception is None:
            return ""
        return "".join(traceback.format_exception(self.exception)[-lines:])
