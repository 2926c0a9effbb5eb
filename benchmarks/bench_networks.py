"""One line per base-network family: forward time at the sizes boosting uses, and at its own single-pass size.

    .venv/bin/python benchmarks/bench_networks.py [--nets midas_v2,depth_anything_v2_small,...] [--repeat 2]

Networks are built with their real architecture (random initialisation: the cost of a forward does not depend on
the weights) and timed through the same ``single_estimate`` / ``single_pass`` the pipeline calls. The merge network
at 1024² is timed too. Figures are printed, never asserted.
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_NETS = ("midas_v2", "leres", "sgr", "depth_anything_v2_small", "depth_anything_v2_base",
                "dpt_hybrid_384", "dpt_large_384", "dpt_beit_large_512")


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (allocator, oneDNN primitive cache)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default=",".join(DEFAULT_NETS))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import numpy as np
    import skimage.data
    import torch

    from boost_core.networks import registry
    from boost_core.networks.estimate import single_estimate, single_pass

    if args.threads:
        torch.set_num_threads(args.threads)
    rgb = skimage.data.coffee().astype(np.float64) / 255
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; image coffee 400x600; best of {args.repeat}")
    print(f"{'network':<26}{'RF':>6}{'t(RF)':>9}{'t(2RF)':>9}{'single':>8}{'t(single)':>11}  params")
    for name in args.nets.split(","):
        net = registry.get(name)
        family = registry.family(net.module)
        torch.manual_seed(0)
        model = (family.build() if getattr(net, "variant", None) is None else family.build(net.variant)).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rf = net.receptive_field
        t_rf = timed(partial(single_estimate, net, model, rgb, rf), args.repeat)
        t_2rf = timed(partial(single_estimate, net, model, rgb, 2 * rf), args.repeat)
        t_single = timed(partial(single_pass, net, model, rgb), args.repeat)
        print(f"{name:<26}{rf:>6}{t_rf:>8.2f}s{t_2rf:>8.2f}s{net.single_size or rf:>8}{t_single:>10.2f}s  {params:.1f} M")
        del model
    merge = registry.family(registry.MERGE_NET_MODULE).build().eval()
    x = torch.zeros(1, 2, 1024, 1024)
    with torch.inference_mode():
        t_merge = timed(lambda: merge(x), args.repeat)
    print(f"{'merge net (pix2pix 1024²)':<26}{'':>6}{t_merge:>8.2f}s")


if __name__ == "__main__":
    main()
