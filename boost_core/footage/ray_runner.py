"""``--ray ADDRESS|auto``: a job's frames computed by actors on a Ray cluster; the driver (this process) owns the job.

One ``FrameWorker`` actor per worker loads the networks once and returns each frame's depth map (float32 (H, W))
and result fields; the driver writes the outputs all-or-nothing into the output folder and records the frame's
state (``runner.run_frames``), so the files are the same bytes as those of a run in one process, and only the
driver ever writes the job file. Each actor asks for CPUs (``--threads``, default 1) or, with ``--device cuda``,
one GPU. An actor lost mid-frame (its process or node died) costs that frame only: Ray restarts the actor, the
frame comes back as a failed attempt and is resubmitted (``--retries``); the other actors go on.

The cluster must see the photos / movies and the weights at the same paths (a shared folder), and have this
Python's packages (torch, cv2, ...); ``boost_core`` itself is shipped to the workers (Ray ``py_modules``).
Ray is an optional extra (``requirements-ray.txt``): it is imported here only, and only when ``--ray`` is given.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path

from .runner import FrameDepth, compute_frame, load_engine

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # boost_core/


class WorkerLost(RuntimeError):
    """The Ray actor computing a frame died (its process or node was lost); the frame is redone."""


class RaySetupError(RuntimeError):
    """No cluster at the address, or the actors could not start (weights, device); the message says which."""


def ray_available() -> str | None:
    """None when Ray can be imported, else the message naming the fix (checked without importing Ray)."""
    if importlib.util.find_spec("ray") is None:
        return ("--ray needs Ray, an optional extra that is not installed in this Python; install it with "
                "`pip install -r requirements-ray.txt`, or leave --ray out to run here")
    return None


class FrameWorker:
    """The actor: networks loaded once per worker; ``compute(frame)`` -> ("ok", depth, info) or ("error", message,
    hint) for a frame that failed in the engine (a bad photo), so only lost workers surface as Ray errors."""

    def __init__(self, options: dict):
        self.options = options
        self.networks, self.device = load_engine(options)

    def ready(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid()}

    def compute(self, frame):
        try:
            result = compute_frame(frame, self.options, self.networks, self.device)
        except Exception as error:  # noqa: BLE001 - reported to the driver as this frame's failure
            return "error", str(error) or type(error).__name__, getattr(error, "hint", "")
        return "ok", result.depth, dict(result.info, worker=f"{socket.gethostname()}:{os.getpid()}")


class RayBackend:
    """Frames spread over ``workers`` actors (default: one per alive node of the cluster)."""

    def __init__(self, address: str, options: dict, workers: int | None, reporter):
        import logging

        import ray

        self.ray = ray
        self.reporter = reporter
        _keep_stdout_for(reporter)
        try:
            ray.init(address=address, runtime_env={"py_modules": [str(PACKAGE_DIR)]}, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=True, include_dashboard=False)
        except Exception as error:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError by Ray version
            raise RaySetupError(f"cannot connect to the Ray cluster at {address!r}: {error}; start one with "
                                "`ray start --head` (or give its address), or leave --ray out") from error
        # Ray's core installs its own SIGTERM handler (it ends the driver at once, exit 1): put ours back, so a
        # cancel ends as everywhere else (exit 130, a done event, the actors stopped, no partial file)
        from ..host.signals import terminate_as_interrupt

        terminate_as_interrupt()
        count = workers or max(1, sum(1 for node in ray.nodes() if node.get("Alive")))
        threads = int(options.get("threads") or 1)
        # torch's CPU results depend on its thread count: each actor uses exactly the CPUs it asks for, so a job
        # gives the same bytes as one process run with the same --threads
        options = dict(options, threads=threads)
        resources = {"num_gpus": 1, "num_cpus": threads} if options.get("device") == "cuda" else {"num_cpus": threads}
        actor_class = ray.remote(max_restarts=-1, max_task_retries=0, **resources)(FrameWorker)
        self.actors = [actor_class.remote(options) for _ in range(count)]
        try:
            self.workers = ray.get([actor.ready.remote() for actor in self.actors])
        except Exception as error:  # noqa: BLE001 - an actor's constructor raised (weights missing, no GPU)
            self.close()
            raise RaySetupError(f"the Ray workers could not start: {_cause(error)}") from error
        self.names = {id(actor): f"{w['host']}:{w['pid']}" for actor, w in zip(self.actors, self.workers)}
        self.restarting: dict = {}  # ready() ref -> an actor Ray is restarting after its process was lost
        reporter.message(f"ray: {count} worker(s): " + ", ".join(f"{w['host']}:{w['pid']}" for w in self.workers))

    def process(self, frames, reporter, index_of):
        """Yield (frame, FrameDepth or exception) as frames finish, keeping every live actor busy. An actor whose
        process was lost gets no frame until Ray has restarted it (its networks loaded again)."""
        ray = self.ray
        lost_errors = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                       getattr(ray.exceptions, "ActorUnavailableError", ray.exceptions.RayActorError))
        queue = deque(frames)
        names, restarting = self.names, self.restarting  # kept across calls (retry rounds)
        idle = [actor for actor in self.actors if actor not in restarting.values()]
        in_flight: dict = {}  # compute() ref -> (actor, frame)
        while queue or in_flight:
            while queue and idle:
                frame, actor = queue.popleft(), idle.pop(0)
                reporter.image = frame.label
                reporter.emit({"event": "start", "index": index_of[frame.name], "total": len(index_of),
                               "name": frame.name, **({"frame": frame.number} if frame.number is not None else {}),
                               "worker": names[id(actor)]})
                in_flight[actor.compute.remote(frame)] = (actor, frame)
            if queue and not idle and not in_flight and not restarting:
                for frame in queue:  # every actor is gone for good
                    yield frame, WorkerLost("no Ray worker is left to compute it; check the cluster")
                return
            ready, _ = ray.wait([*in_flight, *restarting], num_returns=1)
            for ref in ready:
                if ref in restarting:
                    actor = restarting.pop(ref)
                    try:
                        worker = ray.get(ref)
                    except ray.exceptions.ActorDiedError:
                        reporter.message(f"ray: worker {names[id(actor)]} is gone for good")
                        self.actors.remove(actor)
                        continue
                    except lost_errors:
                        time.sleep(0.5)  # still restarting: ask again
                        restarting[actor.ready.remote()] = actor
                        continue
                    names[id(actor)] = f"{worker['host']}:{worker['pid']}"
                    reporter.message(f"ray: worker restarted as {names[id(actor)]}")
                    idle.append(actor)
                    continue
                actor, frame = in_flight.pop(ref)
                try:
                    status, first, second = ray.get(ref)
                except lost_errors as error:
                    restarting[actor.ready.remote()] = actor
                    yield frame, WorkerLost(f"the Ray worker computing {frame.name} ({names[id(actor)]}) was lost "
                                            f"({type(error).__name__}); the frame is redone")
                    continue
                except ray.exceptions.RayError as error:
                    idle.append(actor)
                    yield frame, RuntimeError(f"Ray could not run {frame.name}: {_cause(error)}")
                    continue
                idle.append(actor)
                if status == "ok":
                    yield frame, FrameDepth(first, second)
                else:
                    failure = RuntimeError(first)
                    failure.hint = second
                    yield frame, failure

    def close(self) -> None:
        """Stop the actors and disconnect (the cluster itself keeps running)."""
        ray = self.ray
        for actor in getattr(self, "actors", []):
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass


def _keep_stdout_for(reporter) -> None:
    """Ray prints messages of its own (a lost worker, autoscaler notes) to the driver's stdout, which carries the
    JSON lines: from here on the reporter writes to a copy of stdout and file descriptor 1 / sys.stdout go to
    stderr."""
    if getattr(reporter, "out", None) is not None:
        return
    sys.stdout.flush()
    reporter.out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _cause(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[-400:]
