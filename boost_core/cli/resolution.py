"""``python -m boost_core resolution IMAGE [--net NAME | --receptive-field N] [--confidence 0.2] [--json]``.

The R20 calculator of Boost Your Own Depth (SPEC part two §C.5): the processing resolution R at which a network
of the given receptive field should see the photo (then run your own network at R and merge its output with a
low-resolution estimate: ``python -m boost_core merge``). Unlike the reference's colab, the edge map is computed on
the RGB image (the colab feeds a grey 2-D array, which makes its edge map meaningless).

Prints R and patch_scale (the paper's K); with ``--json`` one JSON object instead. Exit codes: 0 done,
2 bad arguments or unreadable image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MIN_RECEPTIVE_FIELD = 128  # the search's kernels are RF/32 and RF/128 pixels: both must be at least 1


def build_parser() -> argparse.ArgumentParser:
    from ..networks import registry

    parser = argparse.ArgumentParser(
        prog="python -m boost_core resolution",
        description="Processing resolution R (R20 by default, R0 with --confidence 0) for a photo and a network's "
                    "receptive field, as the reference's calculateprocessingres.")
    parser.add_argument("image", type=Path, metavar="IMAGE", help="photo (png, jpg, tif, ...)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--net", choices=registry.names(), default=None,
                        help="take the receptive field of this registered network (default midas_v2: 384)")
    source.add_argument("--receptive-field", type=int, default=None, metavar="N",
                        help=f"receptive field in pixels of your own network (at least {MIN_RECEPTIVE_FIELD}; "
                             "MiDaS v2 384, LeReS and SGR 448)")
    parser.add_argument("--confidence", type=float, default=0.2,
                        help="largest tolerated fraction of pixels farther than RF/2 from an edge "
                             "(0.2 = R20, the default; 0 = R0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..image_io import ImageReadError, read_image
    from ..networks import registry
    from ..algorithm.resolution import MAX_UPSCALE, MAX_WHOLE_SIZE, search_resolution

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.receptive_field is not None:
        rf, source = args.receptive_field, "receptive field"
        if rf < MIN_RECEPTIVE_FIELD:
            parser.error(f"--receptive-field must be at least {MIN_RECEPTIVE_FIELD}, got {rf}")
    else:
        net = registry.get(args.net or "midas_v2")
        rf, source = net.receptive_field, net.name
    if not 0 <= args.confidence < 1:
        parser.error(f"--confidence must be in [0, 1), got {args.confidence}")
    try:
        rgb = read_image(args.image)
    except ImageReadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    choice = search_resolution(rgb, rf, args.confidence)
    height, width = rgb.shape[:2]
    result = {
        "image": str(args.image), "width": width, "height": height, "receptive_field": rf,
        "net": None if args.receptive_field is not None else source, "confidence": args.confidence,
        "R": choice.R, "patch_scale": choice.patch_scale,
        "limit": min(MAX_WHOLE_SIZE, MAX_UPSCALE * max(height, width)),
    }
    if args.json:
        print(json.dumps(result))
    else:
        label = "R20" if args.confidence == 0.2 else "R0" if args.confidence == 0 else f"R(x={args.confidence:g})"
        print(f"{args.image}: {width}x{height}, receptive field {rf} ({source})")
        print(f"{label} = {choice.R}")
        print(f"patch_scale = {choice.patch_scale:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
