"""The engine's heap setting: freed activation-sized blocks are reused, not page-faulted in again."""

import platform
import subprocess
import sys
import textwrap

import pytest

from paths import ROOT

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

PROBE = textwrap.dedent("""
    import ctypes, resource, sys, threading
    import torch
    sys.path.insert(0, sys.argv[1])
    if sys.argv[2] != "default":
        from boost_core.speed.allocator import reuse_freed_memory
        assert reuse_freed_memory() and reuse_freed_memory()  # idempotent
    if sys.argv[2] == "tuned-but-many-arenas":
        ctypes.CDLL("libc.so.6").mallopt(-8, 8)  # M_ARENA_MAX back to glibc's kind of default
    small = torch.ones(2**18)  # a first 1 MiB block: grows the heap (by the top pad once tuned)
    faults = []
    def run():
        for mib in (96, 95, 94, 93):  # activation-sized blocks (a 1024-px merge-net layer), each fits the last's place
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            block = torch.ones(mib * 2**20 // 4)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            del block
    if sys.argv[3] == "thread":  # as in a lane (boost_core/speed/lanes.py): a thread that is not the main one
        lane = threading.Thread(target=run)
        lane.start()
        lane.join()
    else:
        run()
    print(min(faults[1:]))
""")


def page_faults(mode: str, where: str = "main") -> int:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), mode, where], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def test_freed_blocks_are_reused_after_tuning():
    pages = 93 * 2**20 // 4096
    assert page_faults("default") > pages // 2  # glibc unmaps the block on free: every page faults again
    assert page_faults("tuned") < pages // 100  # kept in the heap: written again without faults


def test_other_threads_reuse_the_one_heap_too():
    """Lanes run forwards in their own threads: with one arena they reuse the heap; with glibc's per-thread arenas
    (heaps of at most 64 MiB) every activation-sized block is mapped and faulted again."""
    pages = 93 * 2**20 // 4096
    assert page_faults("tuned-but-many-arenas", "thread") > pages // 2
    assert page_faults("tuned", "thread") < pages // 100


def test_acceleration_defaults_tune_and_plain_does_not():
    from boost_core.speed import acceleration

    assert acceleration.Acceleration().reuse_freed_memory
    assert not acceleration.PLAIN.reuse_freed_memory
