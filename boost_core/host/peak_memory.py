"""Peak memory of a depth job, as the protocol's ``done`` event reports it (issue 5).

A job runs in its own process, so the process's peak resident set size is the job's peak host memory;
on CUDA, torch's peak allocated device memory is reported beside it (allocations by torch's caching allocator,
not the driver's context). Both are in MiB (2**20 bytes). The process exits when the job ends, which frees
both.
"""

from __future__ import annotations

import sys

MIB = 2**20


def peak_rss_mib() -> float | None:
    """Peak resident set size of this process so far (MiB), or None where the platform does not say.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's address space. Not
    ``ru_maxrss``, which keeps the peak of the process before ``exec``, i.e. of the forked parent: a job started
    from a 6 GB Blender would report 6 GB. macOS: ``ru_maxrss`` (bytes); Windows: the peak working set from
    ``GetProcessMemoryInfo``.
    """
    linux = _proc_status_mib("VmHWM")
    if linux is not None:
        return linux
    try:
        import resource
    except ImportError:
        return _windows_peak_working_set_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float | None:
    """Resident set size of this process now (MiB; Linux, else None): what the benchmarks print per stage."""
    return _proc_status_mib("VmRSS")


def _proc_status_mib(field: str) -> float | None:
    """A kB field of /proc/self/status in MiB; None where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _windows_peak_working_set_mib() -> float | None:
    try:
        import ctypes
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
                (name, ctypes.c_size_t) for name in (
                    "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage", "QuotaPagedPoolUsage",
                    "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage", "PagefileUsage",
                    "PeakPagefileUsage")]

        counters = Counters()
        counters.cb = ctypes.sizeof(Counters)
        current_process = ctypes.windll.kernel32.GetCurrentProcess
        current_process.restype = wintypes.HANDLE  # the pseudo-handle -1, pointer-sized
        memory_info = ctypes.windll.psapi.GetProcessMemoryInfo
        memory_info.argtypes = [wintypes.HANDLE, ctypes.POINTER(Counters), wintypes.DWORD]
        if not memory_info(current_process(), ctypes.byref(counters), counters.cb):
            return None
        return counters.PeakWorkingSetSize / MIB
    except (AttributeError, OSError, ValueError):
        return None


def cuda_peak_mib(device) -> float | None:
    """Peak memory torch allocated on ``device`` since the process started or the last reset (MiB); None when
    ``device`` is not a CUDA device or CUDA was never initialised."""
    import torch

    if getattr(device, "type", str(device).split(":")[0]) != "cuda" or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated(device) / MIB


def job_memory(device=None) -> dict:
    """The ``done`` event's memory fields: ``peak_rss_mib`` and, on CUDA, ``cuda_peak_mib`` (MiB, rounded to
    0.1; a field the platform cannot measure is left out)."""
    fields = {"peak_rss_mib": peak_rss_mib()}
    if device is not None:
        fields["cuda_peak_mib"] = cuda_peak_mib(device)
    return {k: round(v, 1) for k, v in fields.items() if v is not None}


def describe(done: dict) -> str:
    """'peak memory 3.9 GiB' or 'peak memory 3.9 GiB RAM, 2.1 GiB GPU' from a ``done`` event; '' without
    memory fields."""
    parts = []
    if done.get("peak_rss_mib") is not None:
        parts.append(f"{float(done['peak_rss_mib']) / 1024:.1f} GiB")
    if done.get("cuda_peak_mib") is not None:
        parts[-1:] = [f"{parts[-1]} RAM"] if parts else []
        parts.append(f"{float(done['cuda_peak_mib']) / 1024:.1f} GiB GPU")
    return f"peak memory {', '.join(parts)}" if parts else ""
