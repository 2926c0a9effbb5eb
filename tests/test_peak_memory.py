"""boost_core.host.peak_memory: the job's peak memory as the done event reports it (issue 5)."""

import subprocess
import sys
import textwrap

import numpy as np
import torch

from boost_core.host import peak_memory


def test_peak_rss_is_the_childs_own_and_follows_a_real_allocation():
    """Started from a parent holding 1 GiB (as Blender holds its scene), a child reports its own peak, well under
    1 GiB, until it writes 1 GiB itself (getrusage's ru_maxrss would report the parent's peak from before exec)."""
    parent_block = np.ones(2**30, dtype=np.uint8)
    code = textwrap.dedent("""
        import numpy as np
        from boost_core.host import peak_memory
        before = peak_memory.peak_rss_mib()
        block = np.ones(2**30, dtype=np.uint8)  # written, so resident
        print(before, peak_memory.peak_rss_mib())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after = map(float, out.split())
    del parent_block
    assert 0 < before < 1000 and after >= 1024


def test_job_memory_on_cpu_has_no_gpu_field():
    fields = peak_memory.job_memory(torch.device("cpu"))
    assert set(fields) == {"peak_rss_mib"} and fields["peak_rss_mib"] > 50
    assert peak_memory.cuda_peak_mib("cpu") is None


def test_describe_in_gib():
    assert peak_memory.describe({"ok": 1}) == ""
    assert peak_memory.describe({"peak_rss_mib": 4864.0}) == "peak memory 4.8 GiB"
    both = {"peak_rss_mib": 1024, "cuda_peak_mib": 512}
    assert peak_memory.describe(both) == "peak memory 1.0 GiB RAM, 0.5 GiB GPU"
    assert peak_memory.describe({"cuda_peak_mib": 512}) == "peak memory 0.5 GiB GPU"
