"""Final against the published reference, side by side: whole processes, a warm-up each, then rounds.

    .venv/bin/python benchmarks/bench_vs_reference.py --oracle ORACLE.py --reference-python REF_VENV/bin/python \\
        --reference-tree REF --weights W --image chelsea.png --net midas [--max-res 2000] [--rounds 2] \\
        [--also OTHER_CHECKOUT]

The reference is the unmodified BoostingMonocularDepth tree (``--reference-tree``, exported as ``BMD_REF``) run
by a measuring harness (``--oracle``: a script with the interface ``run --image --merge --base --net --mode Final
--threads 2 --out [--max_res]``) in its own virtual environment; this project's side is ``python -m boost_core``
from this checkout (and, with ``--also``, from another checkout, e.g. the commit before a change, with the same
interpreter). ``--weights`` holds merge_net.pth, midas_v2.pt, leres.pth and sgr.pth.tar (the synthetic
checkpoints work: the time of a forward does not depend on the weights). Each process is timed from start to exit
(loading included) on 2 threads; a round runs every side once, one after the other, on a quiet machine (a second
process on these 2 cores moves figures by 30 %). Prints every round and the median ratio reference / ours.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASES = {"midas": ("midas_v2.pt", "midas_v2"), "leres": ("leres.pth", "leres"), "sgr": ("sgr.pth.tar", "sgr")}


def timed(command: list[str], env: dict, cwd: Path, log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{command[0]} ... exited {result.returncode}; see {log}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--oracle", type=Path, required=True)
    parser.add_argument("--reference-python", type=Path, required=True)
    parser.add_argument("--reference-tree", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--net", choices=sorted(BASES), default="midas")
    parser.add_argument("--max-res", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--also", type=Path, default=None, help="another checkout timed the same way")
    args = parser.parse_args()

    base_file, ours_net = BASES[args.net]
    weights = args.weights.resolve()
    work = Path(tempfile.mkdtemp(prefix="bench-vs-reference-"))
    reference = [str(args.reference_python), str(args.oracle.resolve()), "run", "--image", str(args.image.resolve()),
                 "--merge", str(weights / "merge_net.pth"), "--base", str(weights / base_file), "--net", args.net,
                 "--mode", "Final", "--threads", "2", "--out", str(work / "reference")]
    reference += ["--max_res", str(args.max_res)] if args.max_res else []
    sides = {"reference": (reference, dict(os.environ, BMD_REF=str(args.reference_tree.resolve())), work)}
    checkouts = {"ours": ROOT} | ({"also": args.also.resolve()} if args.also else {})
    for name, checkout in checkouts.items():
        command = [sys.executable, "-m", "boost_core", str(args.image.resolve()), "--net", ours_net, "--mode", "final",
                   "--base-weights", str(weights / base_file), "--merge-weights", str(weights / "merge_net.pth"),
                   "--output", str(work / name), "--overwrite", "--device", "cpu", "--threads", "2",
                   "--progress", "none"]
        command += ["--max-res", str(args.max_res)] if args.max_res else []
        sides[name] = (command, dict(os.environ, PYTHONPATH=str(checkout)), checkout)  # -m imports from the cwd

    print(f"{args.image.name}, {args.net}, Final, max_res {args.max_res or '-'}; logs in {work}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(args.rounds + 1):  # round 0 is the warm-up
        row = {name: timed(command, env, cwd, work / f"{name}-{round_index}.log")
               for name, (command, env, cwd) in sides.items()}
        label = "warm-up" if round_index == 0 else f"round {round_index}"
        print(f"{label:>8}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in row.items())
              + f"; reference / ours {row['reference'] / row['ours']:.2f}x", flush=True)
        if round_index:
            for name, seconds in row.items():
                times[name].append(seconds)
    ratios = [r / o for r, o in zip(times["reference"], times["ours"])]
    print(f"median reference / ours: {statistics.median(ratios):.2f}x over {len(ratios)} rounds", flush=True)
    if args.also:
        print(f"median also / ours: {statistics.median(a / o for a, o in zip(times['also'], times['ours'])):.3f}")


if __name__ == "__main__":
    main()
