"""Progressive results: the job's clock on every event (``elapsed_s``, honest ``eta_s``) and intermediate depth
maps published while Final mode merges its patches.

    clock = JobClock(progress)            # wraps a progress callback: adds elapsed_s / eta_s to each event
    publisher = PartialPublisher(path, clock, interval=5.0)
    publisher(lambda: depth_at_input_size, done=k, of=n)   # maybe writes path, emits {"event": "partial", ...}

``eta_s`` is only given once it can be measured: in the patch stage after the first group of patches is merged
(seconds per patch so far x patches left; every Final patch runs at the same network sizes, so the cost per patch
is nearly constant). Before that (resolution search, whole image, patch selection) events carry no ``eta_s``.

Publishing is throttled: the whole-image map (k = 0) and the finished map (k = n) are always written; maps in
between at most every ``interval`` seconds and only while the publishing has cost at most ``budget`` (3 %) of the
job's time so far (the next publish is predicted to cost what the last one did). A map is computed only when it is
published (the callback receives a function), so skipped publishes cost nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

DEFAULT_INTERVAL = 5.0  # s between intermediate maps
DEFAULT_BUDGET = 0.03  # at most this share of the job's time goes to publishing


class JobClock:
    """A progress callback that stamps events with the seconds since the job started and, in the patch stage, an
    estimate of the seconds left. ``progress``: the callback to forward to (None: nothing forwarded)."""

    def __init__(self, progress: Callable[[dict], None] | None = None, now=time.perf_counter):
        self.progress = progress
        self.now = now
        self.started = now()
        self._loop_start: float | None = None  # when the first patch group began
        self._per_patch: float | None = None
        self._total = 0
        self.eta: float | None = None  # seconds left, once measurable

    @property
    def elapsed(self) -> float:
        return self.now() - self.started

    def __call__(self, event: dict) -> None:
        now = self.now()
        if event.get("event") == "progress" and "done" in event and event.get("of"):
            done, self._total = int(event["done"]), int(event["of"])
            if self._loop_start is None:
                self._loop_start = now
            elif done > 0:
                self._per_patch = (now - self._loop_start) / done
            if self._per_patch is not None:
                self.eta = self._per_patch * (self._total - done)
        elif (event.get("event") == "progress" and event.get("stage") == "patches" and self._per_patch is not None
              and event.get("fraction") is not None):  # a sub-step inside a patch group: count down within it
            self.eta = max(0.0, self._per_patch * self._total * (1.0 - float(event["fraction"])))
        event = dict(event)
        event["elapsed_s"] = round(now - self.started, 3)
        if self.eta is not None and event.get("event") in ("progress", "partial", "stage"):
            event["eta_s"] = round(self.eta, 3)
        if self.progress is not None:
            self.progress(event)


class PartialPublisher:
    """Writes intermediate depth maps atomically to ``path`` (float32 EXR) and emits ``partial`` events.

    clock: the JobClock (its events are forwarded to its progress callback; its start is the job's start).
    interval: minimum seconds between intermediate maps; budget: cap on the share of the job's time spent here.
    kind: the map's kind ("inverse_depth" / "depth"), put in the events when given.
    """

    def __init__(self, path: str | os.PathLike, clock: JobClock, image: str | None = None,
                 interval: float = DEFAULT_INTERVAL, budget: float = DEFAULT_BUDGET, kind: str | None = None):
        self.path = Path(path)
        self.kind = kind
        self.clock = clock
        self.image = image
        self.interval = max(0.0, float(interval))
        self.budget = budget
        self.spent = 0.0  # seconds spent publishing
        self.last_cost = 0.0
        self.last_at: float | None = None
        self.published: list[int] = []

    def due(self, done: int, of: int | None, force: bool = False) -> bool:
        if force or self.last_at is None:
            return True
        now = self.clock.now()
        if now - self.last_at < self.interval:
            return False
        return self.spent + self.last_cost <= self.budget * (now - self.clock.started)

    def __call__(self, depth: Callable[[], object], done: int, of: int | None, force: bool = False) -> bool:
        """Publish ``depth()`` (an (H, W) float map) as map ``done`` of ``of`` when due. True when written."""
        if not self.due(done, of, force):
            return False
        from ..image_io import write_depth_files

        start = self.clock.now()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_depth_files(depth(), {"exr": self.path})  # temp name in the same folder, then os.replace
        self.last_cost = self.clock.now() - start
        self.spent += self.last_cost
        self.last_at = self.clock.now()
        self.published.append(done)
        event = {"event": "partial"}
        if self.image is not None:
            event["image"] = self.image
        event.update({"path": str(self.path), "done": done, "of": of, "publish_s": round(self.last_cost, 4)})
        if self.kind is not None:
            event["kind"] = self.kind
        self.clock(event)
        return True


def partial_path(output: str | os.PathLike, stem: str, partial_dir: str | os.PathLike | None = None) -> Path:
    """Where the intermediate map of ``stem`` goes: ``<partial_dir or <output>/.partial>/<stem>.exr``."""
    folder = Path(partial_dir) if partial_dir else Path(output) / ".partial"
    return folder / f"{stem}.exr"


__all__ = ["JobClock", "PartialPublisher", "partial_path", "DEFAULT_INTERVAL", "DEFAULT_BUDGET"]
