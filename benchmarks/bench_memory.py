"""Peak memory of Final on a large photo, end to end (issue 5's 12-megapixel target), with synthetic weights.

    .venv/bin/python benchmarks/bench_memory.py [--megapixels 12] [--net midas_v2] [--max-res N] [--threads 2]

Builds a photo of the requested size (scikit-image's coffee, cubic upscaled, with grain so that the edge search
sees a photo-like texture), loads the networks with the default acceleration, runs ``boost(..., "final")`` and
prints R, the target size, the patch count, time per stage and the process's peak RSS (VmHWM, Linux), before and
after loading and at the end. Peak memory does not depend on the weights' values, so synthetic checkpoints stand
in for the real ones. Figures are printed, never asserted.
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from boost_core.host.peak_memory import current_rss_mib, peak_rss_mib  # noqa: E402


def make_photo(megapixels: float):
    import cv2
    import numpy as np
    import skimage.data

    width = int(round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    height = int(round(width * 3 / 4))
    photo = cv2.resize(skimage.data.coffee(), (width, height), interpolation=cv2.INTER_CUBIC)
    grain = np.random.default_rng(0).integers(-8, 9, photo.shape)
    return np.clip(photo.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--net", default="midas_v2")
    parser.add_argument("--max-res", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from boost_core.algorithm.pipeline import boost, load_networks
    from synthetic_weights import write_checkpoint

    torch.set_num_threads(args.threads)
    photo = make_photo(args.megapixels)
    print(f"photo {photo.shape[1]}x{photo.shape[0]} ({photo.shape[0] * photo.shape[1] / 1e6:.1f} MP), net {args.net}, "
          f"max_res {args.max_res}, {torch.get_num_threads()} threads; RSS {current_rss_mib():.0f} MiB")
    files = {"midas_v2": "midas_v2", "leres": "leres", "sgr": "sgr"}
    with tempfile.TemporaryDirectory() as folder:
        base = write_checkpoint(files.get(args.net, args.net), folder)
        merge = write_checkpoint("merge_net", folder)
        start = time.perf_counter()
        networks = load_networks(args.net, base, merge)
    print(f"networks loaded in {time.perf_counter() - start:.1f} s; RSS {current_rss_mib():.0f} MiB, "
          f"peak {peak_rss_mib():.0f} MiB")

    def progress(event):
        if event.get("event") == "stage":
            print(f"  {time.perf_counter() - start:7.1f} s  stage {event['stage']:<18} RSS {current_rss_mib():6.0f} "
                  f"MiB, peak {peak_rss_mib():6.0f} MiB", flush=True)

    start = time.perf_counter()
    result = boost(photo, args.net, "final", args.max_res, networks=networks, progress=progress)
    wall = time.perf_counter() - start
    print(f"R={result.R} target={result.target_shape} patches={len(result.patches)} boosted={result.boosted} "
          f"warnings={result.warnings}")
    for stage, seconds in result.timings.items():
        print(f"  {stage:<20} {seconds:8.1f} s")
    print(f"total {wall:.1f} s; peak RSS {peak_rss_mib():.0f} MiB "
          f"({peak_rss_mib() / 1024:.2f} GiB); output {result.depth.shape} {result.depth.dtype}")


if __name__ == "__main__":
    main()
