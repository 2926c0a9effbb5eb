"""Benchmark progressive results in Final mode: time to the first depth map, to each quarter of the patches, the
total, and the overhead of publishing intermediate maps against the same job without them.

    .venv/bin/python benchmarks/bench_progressive.py [--image coffee | --image PHOTO | --case GOLDEN]
        [--size 100x150] [--max-res PX] [--interval 5] [--pairs 3] [--threads N] [--batch B]

Back to back in one process, the networks loaded once: a warm-up run, then ``--pairs`` pairs alternating the
order (with/without, without/with, ...) so that drifting machine load hits both sides alike. Uses the synthetic
checkpoints (same architectures and cost as the real weights). Figures are printed, never asserted; the maps of
the two runs are compared (they must be identical).
"""

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def load_photo(args):
    import cv2
    import numpy as np
    import skimage.data

    if args.case:
        from golden import case, photo

        meta = case(args.case)
        rgb, net, max_res = photo(meta["image"]), meta["net_name"], meta["max_res_value"]
    elif Path(args.image).is_file():
        from boost_core.image_io import read_image

        rgb, net, max_res = read_image(args.image), args.net, None
    else:
        rgb, net, max_res = getattr(skimage.data, args.image)().astype(np.float64) / 255, args.net, None
    if args.size:
        height, width = (int(v) for v in args.size.lower().split("x"))
        rgb = cv2.resize(np.asarray(rgb, np.float32), (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    return rgb, net, args.max_res if args.max_res is not None else max_res


def run_once(rgb, net, max_res, networks, batch, partial_folder=None, interval=5.0):
    """One Final job; returns (map, milestones dict, publishing seconds)."""
    from boost_core.algorithm.pipeline import boost
    from boost_core.algorithm.progressive import JobClock, PartialPublisher

    events = []
    clock = JobClock(events.append)
    publisher = None
    if partial_folder is not None:
        publisher = PartialPublisher(Path(partial_folder) / "bench.exr", clock, interval=interval)
    result = boost(rgb, net, "final", max_res, networks=networks, progress=clock, max_batch=batch,
                   partial=publisher)
    total = clock.elapsed
    n = len(result.patches)
    marks = {"total": total, "patches": n}
    partial = [e for e in events if e["event"] == "partial"]
    if partial:
        marks["first depth"] = partial[0]["elapsed_s"]
        marks["maps"] = len(partial)
    whole = [e for e in events if e["event"] == "progress" and e.get("stage") == "whole_image" and e["step"] == 3]
    if whole:
        marks["whole image done"] = whole[0]["elapsed_s"]
    merged = [e for e in events if e["event"] == "progress" and "done" in e]
    for quarter in (1, 2, 3, 4):
        reached = [e["elapsed_s"] for e in merged if n and e["done"] >= quarter * n / 4]
        if reached:
            marks[f"{quarter}/4 patches"] = reached[0]
    return result.depth, marks, (publisher.spent if publisher else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="coffee", help="a skimage.data name or a photo file (default coffee)")
    parser.add_argument("--case", default=None, help="a golden case instead (e.g. chelsea_midas_Final_mr2000)")
    parser.add_argument("--net", default="midas_v2")
    parser.add_argument("--size", default=None, help="downscale the photo to HxW first (e.g. 100x150: a tiny case)")
    parser.add_argument("--max-res", type=float, default=None)
    parser.add_argument("--interval", type=float, default=5.0, help="--partial-interval (s)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    from boost_core.algorithm.pipeline import load_networks
    from synthetic_weights import write_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    rgb, net, max_res = load_photo(args)
    with tempfile.TemporaryDirectory() as folder:
        networks = load_networks(net, write_checkpoint(net, folder), write_checkpoint("merge_net", folder))
    print(f"photo {args.case or args.image} {rgb.shape[1]}x{rgb.shape[0]}, {net} final, max_res {max_res}, "
          f"interval {args.interval:g} s; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run_once(rgb, net, max_res, networks, args.batch)
        print(f"warm-up              {time.perf_counter() - start:8.2f} s")
        rows = {True: [], False: []}
        for pair in range(args.pairs):
            for with_partial in ((True, False) if pair % 2 == 0 else (False, True)):
                depth, marks, spent = run_once(rgb, net, max_res, networks, args.batch,
                                               folder if with_partial else None, args.interval)
                rows[with_partial].append((depth, marks, spent))
                label = "with partial   " if with_partial else "without partial"
                text = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in marks.items())
                print(f"pair {pair + 1} {label}: {text}" + (f", publishing {spent * 1000:.1f} ms" if with_partial
                                                           else ""))
    same = all(np.array_equal(a[0], b[0]) for a, b in zip(rows[True], rows[False]))
    with_t = [m["total"] for _, m, _ in rows[True]]
    without_t = [m["total"] for _, m, _ in rows[False]]
    diffs = [a - b for a, b in zip(with_t, without_t)]
    spent = [s for _, _, s in rows[True]]
    first = [m.get("first depth", float("nan")) for _, m, _ in rows[True]]
    print(f"median total with {statistics.median(with_t):.2f} s, without {statistics.median(without_t):.2f} s; "
          f"difference {statistics.median(diffs):+.2f} s ({100 * statistics.median(diffs) / statistics.median(without_t):+.1f}%, "
          "machine noise included)")
    print(f"publishing itself: median {1000 * statistics.median(spent):.1f} ms = "
          f"{100 * statistics.median(spent) / statistics.median(with_t):.2f}% of the job; time to first depth "
          f"{statistics.median(first):.2f} s; maps identical with and without: {same}")


if __name__ == "__main__":
    main()
