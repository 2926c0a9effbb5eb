"""``python -m boost_core prepare-dataset --images DIR --output DATAROOT [options]``: merge-net training data.

Runs a registered base network on every photo of ``--images`` at two resolutions, cuts the reference's crops and
writes ``DATAROOT/{train,test}/{rgb,outer,inner,gtfake}/`` (see ``boost_core.tools.training.dataset``), ready for
``python -m boost_core train --dataroot DATAROOT``. An interrupted run resumes where it stopped.

Exit codes: 0 done; 2 bad arguments, weights missing or no photo; 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from ..networks import registry
    from ..tools.training.dataset import CROP_PRESETS, CROP_SIZE, HIGH_RES

    parser = argparse.ArgumentParser(
        prog="python -m boost_core prepare-dataset",
        description="Prepare merge-network training data from a folder of photos (reference: IBims-1 and "
                    "Middlebury 2014 RGB images with MiDaS v2 at 384 and 672).")
    parser.add_argument("--images", type=Path, required=True, help="folder of photos (png, jpg, tif, ...)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="dataset folder to write (DATAROOT)")
    parser.add_argument("--net", default="midas_v2", choices=registry.names(),
                        help="base network making the estimates (default midas_v2, as the reference)")
    parser.add_argument("--base-weights", type=Path, help="its checkpoint (default: the models folder)")
    parser.add_argument("--models-dir", type=Path, help="models folder (default: BOOST_DEPTH_MODELS or per-user)")
    parser.add_argument("--low-res", type=int, default=None,
                        help="resolution of the low-res whole-image estimate (default: the network's receptive "
                             "field, 384 for MiDaS v2)")
    parser.add_argument("--high-res", type=int, default=HIGH_RES,
                        help=f"resolution of the high-res whole-image and crop estimates (default {HIGH_RES})")
    parser.add_argument("--crop-size", type=int, default=CROP_SIZE,
                        help=f"side of the stored crops (default {CROP_SIZE}; smaller for quick experiments)")
    parser.add_argument("--crops", default="auto",
                        help=f"crop grid: auto (IBims grid scaled to each photo's shorter side), "
                             f"{', '.join(CROP_PRESETS)}, or SIDE:STRIDE,SIDE:STRIDE,...")
    parser.add_argument("--test-count", type=int, default=0,
                        help="the last N photos (name order) go to test/ instead of train/ (reference "
                             "Middlebury: 2)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="redo photos already prepared")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..host.devices import resolve_device
    from ..host.signals import terminate_as_interrupt
    from ..tools.training.dataset import parse_crops, prepare_dataset

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder")
    try:
        parse_crops(args.crops, (480, 640))
    except ValueError as error:
        parser.error(str(error))
    for name in ("low_res", "high_res", "crop_size"):
        value = getattr(args, name)
        if value is not None and value < 32:
            parser.error(f"--{name.replace('_', '-')} must be at least 32, got {value}")
    terminate_as_interrupt()
    try:
        import torch

        from ..networks import registry

        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        net = registry.get(args.net)
        weights_path = args.base_weights
        if weights_path is None:
            from ..weights import store as weights

            weights_path = weights.locate_first(net.weights, weights.models_dir(args.models_dir))
        model = registry.load_base(net, weights_path, device)
    except Exception as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        summary = prepare_dataset(args.images, args.output, net, model, device=device, low_res=args.low_res,
                                  high_res=args.high_res, crop_size=args.crop_size, crops=args.crops,
                                  test_count=args.test_count, overwrite=args.overwrite,
                                  log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("cancelled (photos finished so far are kept; run again to continue)", file=sys.stderr)
        return 130
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{summary['photos']} photos ({summary['skipped']} already done): {summary['crops']['train']} train "
          f"and {summary['crops']['test']} test samples in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
