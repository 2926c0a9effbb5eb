"""Independent forwards side by side on a CPU: lanes, each a thread with its share of torch's intra-op threads.

    lanes = ForwardLanes(2, threads_per_lane=1)
    outputs = lanes.map(run_one, batches)          # run_one(batch) in the lanes, results in input order

Why: on this project's 2-core CPU one forward on 2 threads spends ~14 % of its time where one thread waits for the
other (MiDaS v2 at 768²: 2.95 s on 1 thread, 1.72 s on 2), while two forwards on 1 thread each keep both cores busy.
Measured (channels-last, the default acceleration, synthetic weights, 2 cores, best of 2): two MiDaS v2 forwards
at 768² 10.1 -> 9.0 s for six, the merge net at 1024² 3.0 -> 2.7 s for six, MiDaS v2 at 384² (against a batch of 2)
3.4 -> 3.2-3.3 s for eight. Final's patches are independent until they are blended in order, so the patches of a
pair go one to a lane (``DepthNetworks.singles`` / ``merges``); a single forward (the whole image) keeps every
thread.

That gain needs one heap for all threads (``allocator.reuse_freed_memory`` sets it): glibc gives each new thread its
own arena, whose heaps are capped at 64 MiB, so the lanes' activation maps fell back to ``mmap`` and page faults
(the same six 768² forwards took 11.6 s, slower than one after the other).

Torch's thread count is per thread (OpenMP): each lane sets its own once, when it starts; the caller's is left as
it was (threads started later take the lanes' count as their default: the engine runs torch only in its main thread
and the lanes). A cancel stops the lanes within a layer, not a forward: when the caller's wait is interrupted (Ctrl-C,
SIGTERM) or its cancel event is set, the lanes raise :class:`LanesStopped` at the next module of a model they
:meth:`~ForwardLanes.watch`. Importing this module imports torch.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

import torch
from torch import nn

T = TypeVar("T")
R = TypeVar("R")

#: how often (s) a waiting caller looks at its cancel event
CANCEL_POLL_SECONDS = 0.05


class LanesStopped(Exception):
    """The lanes' work was stopped: the caller was interrupted or its cancel event was set."""


class ForwardLanes:
    """``count`` worker threads with ``threads_per_lane`` intra-op threads each (count >= 2, threads >= 1)."""

    def __init__(self, count: int, threads_per_lane: int):
        if count < 2 or threads_per_lane < 1:
            raise ValueError(f"lanes need count >= 2 and threads_per_lane >= 1, got {count} and {threads_per_lane}")
        torch.get_num_threads()  # fixes this thread's own count before a lane changes the default new threads take
        self.count = count
        self.threads_per_lane = threads_per_lane
        self._local = threading.local()
        self._stopping = threading.Event()
        self._running: list = []
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="boost-depth-lane", initializer=self._start_lane)

    def _start_lane(self) -> None:
        torch.set_num_threads(self.threads_per_lane)
        self._local.lane = True

    def _check(self, module, args) -> None:
        """Forward pre-hook: in a lane, raise LanesStopped once a stop is requested (elsewhere: nothing)."""
        if self._stopping.is_set() and getattr(self._local, "lane", False):
            raise LanesStopped("stopped")

    def watch(self, model: nn.Module) -> None:
        """Let a stop interrupt ``model``'s forwards in the lanes between any two of its modules."""
        for module in model.modules():
            module.register_forward_pre_hook(self._check)

    def map(self, fn: Callable[[T], R], items: Sequence[T], cancel: threading.Event | None = None) -> list[R]:
        """``[fn(item) for item in items]``, up to ``count`` at a time in the lanes; the first error is raised.

        If the wait is interrupted (any exception in this thread, KeyboardInterrupt included) or ``cancel`` is set,
        the lanes are stopped (see :meth:`watch`) and the exception, or LanesStopped, is raised here.
        """
        for future in self._running:  # work a previous stop cut short: let it end before clearing the stop
            future.exception()
        self._stopping.clear()
        futures = self._running = [self._pool.submit(fn, item) for item in items]
        try:
            while True:
                done, pending = wait(futures, None if cancel is None else CANCEL_POLL_SECONDS, FIRST_EXCEPTION)
                if not pending or any(future.exception() is not None for future in done):
                    return [future.result() for future in futures]
                if cancel is not None and cancel.is_set():
                    raise LanesStopped("cancelled")
        except BaseException:
            self._stopping.set()
            raise

    def close(self) -> None:
        """Stop the lane threads (after the running calls)."""
        self._pool.shutdown()


def lane_count(threads: int) -> int:
    """Lanes for ``threads`` intra-op threads: 2 from 2 threads on (halves of the threads each), else 1 (none)."""
    return 2 if threads >= 2 else 1


__all__ = ["CANCEL_POLL_SECONDS", "ForwardLanes", "LanesStopped", "lane_count"]
