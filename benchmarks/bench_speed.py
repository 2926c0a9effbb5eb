"""Speed and memory of Final: the plain one-patch-at-a-time schedule vs the optimised one (issue 5).

    .venv/bin/python benchmarks/bench_speed.py [--case chelsea_midas_Final_mr2000] [--threads 2] [--repeats 1]
        [--device cpu|cuda|mps]
        [--forward-sizes 384,768,1568] [--forward-repeats 2] [--no-forwards] [--no-pipeline] [--memory-12mp]
        [--heap-rows]

Prints, in one run:

1. the golden case end to end, baseline (``acceleration.PLAIN``: models as loaded, glibc's default heap, one
   patch at a time) and optimised (the defaults of ``pipeline.load_networks`` / ``python -m boost_core``: BatchNorm
   folded, channels-last, Winograd convolutions with compiled transforms where a C compiler is found, freed memory
   reused), each in a fresh process, interleaved ``--repeats`` times: loading and wall time, ratio, per-stage time,
   share inside network forwards (timed around the model calls, identically for both), peak RSS (VmHWM) and the
   parity of each output against the golden; with ``--device cuda`` also the GPU's peak allocated memory and what
   is left allocated once the job is gone;
2. per-forward timings per network and size for each optimisation (plain, fold BN, channels-last, both, with
   Winograd; ``--heap-rows`` adds the heap setting, measured last as it cannot be undone), interleaved, as CPU
   seconds of this process (robust to other load on the machine) and wall seconds;
3. with ``--memory-12mp``: peak RSS of Final's non-network stages on a 4000x3000 photo, stage by stage;
4. README table lines (markdown).

Synthetic checkpoints (tests/synthetic_weights.py) stand in for the real weights: same architecture, same cost.
Figures are printed, never asserted. Other processes on a shared machine inflate wall times: compare the
ratios of interleaved runs, and the CPU-second columns.
"""

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from boost_core.host.peak_memory import current_rss_mib, peak_rss_mib  # noqa: E402


def reset_peak() -> None:
    """Reset the peak (VmHWM) to the current RSS (Linux: write 5 to /proc/self/clear_refs); a no-op elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


class Timed:
    """Wraps a model: counts seconds and calls spent in its forwards (the same for both schedules).

    On CUDA the forward is synchronised, so that its seconds are the GPU's and not the launch's.
    """

    def __init__(self, model, synchronize: bool = False):
        self.model, self.seconds, self.calls, self.synchronize = model, 0.0, 0, synchronize

    def __call__(self, x):
        import torch

        start = time.perf_counter()
        out = self.model(x)
        if self.synchronize:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        self.calls += x.shape[0]
        return out


def _compiled_transforms(options) -> str:
    """Whether the Winograd layers of this run use boost_core.speed.kernels.compiled, and why not."""
    from boost_core.speed.kernels import compiled as native_kernels

    if options.native_kernels is False or options.winograd is False:
        return "off"
    kernels = native_kernels.winograd_kernels()
    return f"on ({kernels.path.name})" if kernels else f"unavailable: {native_kernels.unavailable_reason()}"


def run_variant(args) -> dict:
    """One schedule end to end in this (fresh) process: load the networks, boost the golden case, measure."""
    import torch

    from boost_core.speed import acceleration
    from boost_core.algorithm.pipeline import boost, load_networks
    from golden import case, compare, final, photo
    from synthetic_weights import write_checkpoint

    torch.set_num_threads(args.threads)
    meta = case(args.case)
    options = acceleration.PLAIN if args.run_variant == "baseline" else acceleration.Acceleration()
    with tempfile.TemporaryDirectory() as folder:
        base_path = write_checkpoint(meta["net_name"], folder)
        merge_path = write_checkpoint("merge_net", folder)
        start = time.perf_counter()
        networks = load_networks(meta["net_name"], base_path, merge_path, acceleration=options, device=args.device)
        load = time.perf_counter() - start
    cuda = args.device == "cuda"
    networks.base_model, networks.merge_model = Timed(networks.base_model, cuda), Timed(networks.merge_model, cuda)
    reset_peak()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = current_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    max_batch = 1 if args.run_variant == "baseline" else None  # the baseline: one patch at a time
    result = boost(photo(meta["image"]), meta["net_name"], meta["mode_name"], meta["max_res_value"], networks=networks,
                   max_batch=max_batch)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    run = {"wall": wall, "cpu": cpu, "load": load,
           "forwards": networks.base_model.seconds + networks.merge_model.seconds,
           "calls": (networks.base_model.calls, networks.merge_model.calls), "stages": dict(result.timings),
           "peak": peak_rss_mib(), "rss_before": rss_before, "parity": compare(result.depth, final(args.case)),
           "patches": len(result.patches), "R": result.R, "compiled_transforms": _compiled_transforms(options)}
    if cuda:  # the GPU's peak during the job, and what is still allocated once the job's objects are gone
        import gc

        run["cuda_peak"] = torch.cuda.max_memory_allocated() / 2**20
        del networks, result
        gc.collect()
        torch.cuda.empty_cache()
        run["cuda_left"] = torch.cuda.memory_allocated() / 2**20
    return run


def pipeline_section(args, meta, rows):
    """Baseline and optimised schedules, each in its own process (heap settings are process-wide), interleaved."""
    import json
    import subprocess

    print(f"\n== {args.case}: {meta['net_name']} {meta['mode_name']}, {args.threads} threads, one process per run ==")
    runs = {"baseline": [], "optimised": []}
    for repeat in range(args.repeats):
        for name in runs:
            command = [sys.executable, __file__, "--case", args.case, "--threads", str(args.threads),
                       "--device", args.device, "--run-variant", name]
            proc = subprocess.run(command, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{name} run failed:\n{proc.stderr}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[name].append(run)
            p = run["parity"]
            ok = p["max"] <= 1e-4 and p["mean"] <= 1e-5 and p["pearson"] >= 0.99999
            print(f"[{repeat + 1}/{args.repeats}] {name:<9} load {run['load']:5.1f} s  wall {run['wall']:7.1f} s  "
                  f"cpu {run['cpu']:7.1f} s  forwards {run['forwards']:7.1f} s "
                  f"({100 * run['forwards'] / run['wall']:.1f}%)  peak RSS {run['peak']:6.0f} MiB  "
                  f"parity max {p['max']:.1e} mean {p['mean']:.1e} r {p['pearson']:.8f} {'PASS' if ok else 'FAIL'}"
                  + (f"  CUDA peak {run['cuda_peak']:.0f} MiB, left after the job {run['cuda_left']:.0f} MiB"
                     if "cuda_peak" in run else ""), flush=True)
    best = {name: min(r, key=lambda run: run["wall"]) for name, r in runs.items()}
    b, o = best["baseline"], best["optimised"]
    print(f"\nR={o['R']} patches={o['patches']}; base/merge samples: {b['calls']} (baseline) {o['calls']} (optimised)")
    print(f"compiled Winograd transforms: baseline {b['compiled_transforms']}, optimised {o['compiled_transforms']}")
    print(f"{'stage':<22}{'baseline s':>12}{'optimised s':>13}")
    for stage in b["stages"]:
        print(f"{stage:<22}{b['stages'][stage]:12.2f}{o['stages'].get(stage, float('nan')):13.2f}")
    for key, label in (("forwards", "inside model forwards"), ("wall", "total (boost call)"), ("cpu", "process CPU"),
                       ("load", "load networks")):
        print(f"{label:<22}{b[key]:12.2f}{o[key]:13.2f}")
    print(f"{'peak RSS MiB':<22}{b['peak']:12.0f}{o['peak']:13.0f}")
    ratio = (b["wall"] + b["load"]) / (o["wall"] + o["load"])
    reference = meta["wall_time_sec"]
    print(f"speed-up optimised vs baseline (incl. loading): {ratio:.2f}x")
    print(f"reference (published implementation, 2 threads, unloaded machine): {reference:.1f} s -> optimised incl. "
          f"loading {o['wall'] + o['load']:.1f} s = {reference / (o['wall'] + o['load']):.2f}x faster; "
          f"baseline {reference / (b['wall'] + b['load']):.2f}x")
    rows.append(f"| {args.case} | baseline (one patch at a time, plain models) | {b['wall'] + b['load']:.0f} s | "
                f"{100 * b['forwards'] / b['wall']:.0f}% | {b['peak']:.0f} MiB | 1.00x |")
    rows.append(f"| {args.case} | optimised (defaults) | {o['wall'] + o['load']:.0f} s | "
                f"{100 * o['forwards'] / o['wall']:.0f}% | {o['peak']:.0f} MiB | {ratio:.2f}x |")
    rows.append(f"| {args.case} | reference implementation (golden trace) | {reference:.0f} s | | | "
                f"{reference / (o['wall'] + o['load']):.2f}x slower than optimised |")


def forward_section(args, base_path, merge_path, rows):
    import torch

    from boost_core.speed import acceleration
    from boost_core.speed.allocator import reuse_freed_memory
    from boost_core.networks import registry

    keep_heap = {"reuse_freed_memory": False, "winograd": False, "layer_rewrites": False}
    variants = {  # the heap setting is process-wide and one-way: every variant here runs without it
        "plain": acceleration.PLAIN,
        "fold BN": acceleration.Acceleration(fold_batchnorm=True, channels_last=False, **keep_heap),
        "channels-last": acceleration.Acceleration(fold_batchnorm=False, channels_last=True, **keep_heap),
        "fold+CL": acceleration.Acceleration(**keep_heap),
        "fold+CL+Winograd": acceleration.Acceleration(reuse_freed_memory=False, native_kernels=False),
        "+compiled transforms": acceleration.Acceleration(reuse_freed_memory=False),  # the default's models
    }
    jobs = [("midas_v2", int(s)) for s in args.forward_sizes.split(",") if s] + [("merge_net", 1024)]
    print(f"\n== per-forward timings ({torch.get_num_threads()} threads; CPU s of this process, then wall s; "
          f"min of {args.forward_repeats}, interleaved) ==")
    loaded = {"midas_v2": registry.load_base(registry.get("midas_v2"), base_path),
              "merge_net": registry.load_merge_net(merge_path)}
    for name, size in jobs:
        models = {}
        for label, options in variants.items():
            if name == "merge_net" and label == "fold BN":
                continue  # no BatchNorm in the merge net
            models[label] = acceleration.accelerate(copy.deepcopy(loaded[name]), options)
        channels = 3 if name == "midas_v2" else 2
        x = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
        times = {label: [] for label in models}
        with torch.inference_mode():
            outputs = {label: model(x) for label, model in models.items()}  # warm-up (oneDNN primitive cache)
            for _ in range(args.forward_repeats):
                for label, model in models.items():
                    start, cpu = time.perf_counter(), time.process_time()
                    model(x)
                    times[label].append((time.process_time() - cpu, time.perf_counter() - start))
        if args.heap_rows:  # last, in the same process: the default acceleration, freed memory reused
            reuse_freed_memory()  # the default's heap setting, on the default's models
            times["default (+heap reuse)"] = []
            with torch.inference_mode():
                models["default (+heap reuse)"] = models["+compiled transforms"]
                outputs["default (+heap reuse)"] = models["default (+heap reuse)"](x)
                for _ in range(args.forward_repeats):
                    start, cpu = time.perf_counter(), time.process_time()
                    models["default (+heap reuse)"](x)
                    times["default (+heap reuse)"].append((time.process_time() - cpu, time.perf_counter() - start))
        reference = outputs["plain"]
        span = float(reference.max() - reference.min()) or 1.0
        plain_cpu = min(t[0] for t in times["plain"])
        for label, samples in times.items():
            cpu, wall = min(t[0] for t in samples), min(t[1] for t in samples)
            diff = float((outputs[label] - reference).abs().max()) / span
            print(f"{name:<9} {size:>5}  {label:<18} cpu {cpu:7.2f} s  wall {wall:7.2f} s  "
                  f"x{plain_cpu / cpu:.2f} vs plain (CPU)  max|diff|/range {diff:.1e}", flush=True)
            rows.append(f"| {name} {size}² | {label} | {cpu:.2f} s | {wall:.2f} s | {plain_cpu / cpu:.2f}x |")
        del models, outputs


def memory_section(rows):
    """Peak RSS of Final's image-side stages on a 12 MP photo (no network: those add their fixed cost)."""
    import numpy as np
    import skimage.data

    from boost_core.algorithm import merging, patches, pipeline, resolution
    from boost_core.algorithm.depth_networks import MERGE_SIZE

    print("\n== memory: 4000x3000 photo, Final's image-side stages (VmHWM reset before each) ==")
    import cv2

    photo = cv2.resize(skimage.data.coffee(), (4000, 3000), interpolation=cv2.INTER_CUBIC)  # (width, height)
    photo = np.clip(photo.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, photo.shape), 0, 255)
    photo = photo.astype(np.uint8)  # grain, so that the edge search sees a photo-like texture
    reset_peak()
    base_rss = current_rss_mib()

    def stage(label, fn):
        reset_peak()
        before = current_rss_mib()
        start = time.perf_counter()
        out = fn()
        print(f"{label:<34} peak {peak_rss_mib():7.0f} MiB (+{peak_rss_mib() - before:6.0f} over {before:6.0f})  "
              f"{time.perf_counter() - start:6.1f} s", flush=True)
        rows.append(f"| 12 MP | {label} | {peak_rss_mib():.0f} MiB | +{peak_rss_mib() - before:.0f} MiB |")
        return out

    print(f"process RSS before: {base_rss:.0f} MiB (torch and the test data loaded)")
    rgb = stage("as_rgb_float (float64)", lambda: pipeline.as_rgb_float(photo))
    choice = stage("resolution search (R20)", lambda: resolution.search_resolution(rgb, 384, 0.2))
    factor = patches.boost_factor(choice.patch_scale, choice.R)
    for max_res in (None, 6000):
        cap = float("inf") if max_res is None else max_res
        shape_t = patches.target_shape(rgb.shape[:2], choice.R, factor, cap)
        print(f"R={choice.R} factor={factor:.3f} max_res={max_res}: target {shape_t[1]}x{shape_t[0]} "
              f"(img_T float64 = {3 * 8 * shape_t[0] * shape_t[1] / 2**20:.0f} MiB)")
        rgb_t = stage(f"upsample_image to {shape_t[1]}x{shape_t[0]}", lambda: patches.upsample_image(rgb, shape_t))
        selected = stage("select_patches (gradients)", lambda: patches.select_patches(rgb_t, 384, factor))
        scale = rgb.shape[0] / shape_t[0]
        canvas_shape = patches.merge_canvas_shape(shape_t, scale)
        stage("rgb canvas + base + canvas", lambda: (merging.resize_cubic(rgb_t, canvas_shape),
                                                     merging.resize_cubic(np.zeros((MERGE_SIZE,) * 2, np.float32),
                                                                          canvas_shape)))
        print(f"  {len(selected)} patches")
        rgb_t = None  # free the target image before the next cap
    stage("feather mask template (3000²)", merging.feather_mask_template)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", default="chelsea_midas_Final_mr2000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"),
                        help="where the networks run (cuda adds the GPU's peak and left-over memory per run)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved baseline/optimised pipeline runs")
    parser.add_argument("--forward-sizes", default="384,768,1568", help="MiDaS sizes of the per-forward table")
    parser.add_argument("--forward-repeats", type=int, default=2)
    parser.add_argument("--no-forwards", action="store_true", help="skip the per-forward table")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end comparison")
    parser.add_argument("--memory-12mp", action="store_true", help="add the 12 MP memory breakdown")
    parser.add_argument("--heap-rows", action="store_true",
                        help="add a per-forward row with the heap setting (process-wide: measured last per network)")
    parser.add_argument("--run-variant", choices=("baseline", "optimised"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_variant:  # child process of pipeline_section: one JSON line
        import json

        print(json.dumps(run_variant(args)))
        return

    import torch

    from golden import case
    from synthetic_weights import write_checkpoint

    torch.set_num_threads(args.threads)
    meta = case(args.case)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, oneDNN {torch.backends.mkldnn.is_available()}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    if args.device != "cpu" and not args.no_forwards:
        print("(the per-forward table measures the CPU only: skipped with --device", args.device + ")")
        args.no_forwards = True
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        base_path = write_checkpoint(meta["net_name"], folder)
        merge_path = write_checkpoint("merge_net", folder)
        if not args.no_pipeline:
            pipeline_section(args, meta, rows)
        if not args.no_forwards:
            forward_section(args, base_path, merge_path, rows)
    if args.memory_12mp:
        memory_section(rows)
    print("\n== README table lines ==")
    print("| case / network | schedule / optimisation | time | forward share / wall | peak RSS | ratio |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
