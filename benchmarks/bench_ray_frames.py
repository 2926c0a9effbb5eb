"""Time per frame of a footage job: one process, and a local Ray cluster with one and with two workers.

    .venv/bin/python benchmarks/bench_ray_frames.py [--frames 12] [--mode single] [--cpus 2]

Makes ``--frames`` 64x48 frames by panning a crop over scikit-image's *chelsea* (tests/footage_helpers.py),
synthetic weights (the time does not depend on the weights' values), starts a Ray head on 127.0.0.1 with
``--cpus`` CPUs and runs ``python -m boost_core shot_####.png --mode MODE --progress json`` three ways: one process
with ``--threads 1``, ``--ray ADDR --workers 1`` and ``--ray ADDR --workers 2``. Time per frame = seconds from the
first ``start`` event to the ``job`` event, as the driver receives them, divided by the frames (start-up and
network loading left out, which the wall time printed beside it includes). Figures are printed, never asserted;
on a shared machine they vary with the load (``os.getloadavg`` is printed with them).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from footage_helpers import local_ray_cluster, write_sequence  # noqa: E402
from synthetic_weights import write_checkpoint  # noqa: E402


def timed_job(args, env) -> tuple[float, float, int]:
    """(seconds per frame between the first start and the job event, wall seconds, frames done)."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "boost_core", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = end = None
    done = 0
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "start" and first is None:
            first = time.perf_counter()
        elif event["event"] == "job":
            end, done = time.perf_counter(), event["done"]
    if proc.wait() != 0:
        raise SystemExit(f"the job failed: {args}")
    return (end - first) / max(done, 1), time.perf_counter() - began, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--mode", default="single", choices=("single", "r0", "r20"))
    parser.add_argument("--cpus", type=int, default=2)
    options = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as folder:
        folder = Path(folder)
        pattern = write_sequence(folder / "shots", options.frames)
        weights = ["--base-weights", write_checkpoint("midas_v2", folder, seed=0)]
        if options.mode != "single":
            weights += ["--merge-weights", write_checkpoint("merge_net", folder, seed=0)]
        common = [pattern, "--mode", options.mode, *weights, "--format", "npy", "--device", "cpu",
                  "--progress", "json"]
        with local_ray_cluster(env, cpus=options.cpus) as address:
            runs = [("one process, --threads 1", ["--threads", "1"]),
                    ("Ray, 1 worker", ["--ray", address, "--workers", "1"]),
                    ("Ray, 2 workers", ["--ray", address, "--workers", "2"])]
            for title, extra in runs:
                out = folder / title.replace(" ", "_").replace(",", "")
                per_frame, wall, done = timed_job([*common, "--output", out, *extra], env)
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(f"{title:26s} {done} frames {options.mode} 64x48: {per_frame:.2f} s/frame "
                      f"(wall {wall:.1f} s incl. start-up; load {load})", flush=True)


if __name__ == "__main__":
    main()
