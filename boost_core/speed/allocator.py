"""Heap settings for the engine process: keep freed activation memory for reuse instead of unmapping it.

glibc serves large blocks (the activation maps of a forward: 10-300 MiB each) with a fresh ``mmap`` and gives
them back to the OS on ``free``, so the next layer page-faults the same amount in again, zero-filled by the
kernel. Measured on this project's 2-core CPU (channels-last, folded BatchNorm, synthetic weights, best of 4):
merge net at 1024² 2.0 -> 1.3-1.6 s, MiDaS v2 at 768² 8.6 -> 6.3-7.0 s, page faults per merge forward
155,000 -> 0. The price: the process keeps its peak heap until it exits (about +200-500 MiB of peak RSS from
fragmentation, measured on the same forwards), which suits a job process such as ``python -m boost_core``.

Only glibc (Linux) has these knobs; elsewhere :func:`reuse_freed_memory` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameter numbers (glibc malloc.h)
M_TRIM_THRESHOLD = -1  # free memory at the heap top kept before trimming back to the OS (bytes)
M_TOP_PAD = -2  # extra bytes requested from the OS on each heap growth
M_MMAP_MAX = -4  # how many blocks may have their own mmap at a time (0: none, every block comes from the heap)
M_ARENA_MAX = -8  # how many arenas threads may spread over (1: every thread allocates from the main heap)

TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of freed heap top
TOP_PAD = 1 << 30  # grow the heap 1 GiB at a time: few brk calls, pages faulted once

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep and reuse freed memory (process-wide, idempotent); True when applied.

    Every block comes from the heap (no per-block mmap: a raised mmap threshold alone still maps blocks above
    32 MiB whenever the heap top is short), the heap keeps up to 2 GiB of freed top and grows 1 GiB at a time, and
    every thread allocates from that one heap (a thread's own arena has heaps of at most 64 MiB, so forwards run in
    other threads, ``speed.lanes``, mapped and faulted their maps again: six MiDaS v2 forwards at 768² in two
    lanes 11.6 s, 9.0 s with one heap; set before those threads first allocate).
    Returns False without changing anything on a non-glibc C library (macOS, Windows, musl).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD), (M_ARENA_MAX, 1))
    _applied = all(mallopt(param, value) == 1 for param, value in settings)
    return _applied


__all__ = ["reuse_freed_memory"]
