"""Benchmark one golden case end to end: wall time per stage, share inside network forwards, peak RSS.

    .venv/bin/python benchmarks/bench_pipeline.py [--case chelsea_midas_Final_mr2000] [--threads N]

Uses the deterministic synthetic checkpoints (same architecture and cost as the real weights) and checks the
output against the golden while it is at it. Figures are printed, never asserted.
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from boost_core.host.peak_memory import peak_rss_mib  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", default="chelsea_midas_Final_mr2000")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from boost_core.algorithm.pipeline import boost, load_networks
    from golden import case, compare, final, photo
    from synthetic_weights import write_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    meta = case(args.case)
    files = {"midas_v2": "midas_v2", "leres": "leres", "sgr": "sgr"}
    with tempfile.TemporaryDirectory() as folder:
        base = write_checkpoint(files[meta["net_name"]], folder)
        merge = write_checkpoint("merge_net", folder)
        start = time.perf_counter()
        networks = load_networks(meta["net_name"], base, merge)
        load_seconds = time.perf_counter() - start
    rss_after_load = peak_rss_mib()
    start = time.perf_counter()
    result = boost(photo(meta["image"]), meta["net_name"], meta["mode_name"], meta["max_res_value"],
                   networks=networks)
    wall = time.perf_counter() - start
    stats = compare(result.depth, final(args.case))

    print(f"case {args.case}: {meta['net_name']} {meta['mode_name']} R={result.R} patches={len(result.patches)}")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"load networks        {load_seconds:8.2f} s")
    for stage, seconds in result.timings.items():
        if stage != "network_forwards":
            print(f"{stage:<20} {seconds:8.2f} s")
    forwards = result.timings["network_forwards"]
    print(f"total (boost call)   {wall:8.2f} s")
    print(f"inside net forwards  {forwards:8.2f} s  = {100 * forwards / wall:.1f}% of the boost call "
          f"({networks.calls['base']} base + {networks.calls['merge']} merge calls)")
    print(f"reference wall time  {meta['wall_time_sec']:8.2f} s  (published implementation, 2 threads) "
          f"-> ratio {meta['wall_time_sec'] / (wall + load_seconds):.2f}x incl. loading")
    print(f"peak RSS             {peak_rss_mib():8.0f} MiB  (after loading networks: {rss_after_load:.0f} MiB)")
    print(f"parity vs golden     max {stats['max']:.2e}  mean {stats['mean']:.2e}  pearson {stats['pearson']:.8f}")


if __name__ == "__main__":
    main()
