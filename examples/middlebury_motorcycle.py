"""Evaluate depth maps of the Middlebury 2014 "Motorcycle" view that ships with scikit-image.

``skimage.data.stereo_motorcycle()`` gives the left image (500x741 RGB) and its ground-truth disparity in
pixels (inf = invalid), a quarter-size version of the Middlebury 2014 scene. This script writes them as
``motorcycle.png`` / ``ground_truth/motorcycle.pfm`` and scores a few estimates with ORD, D³R, RMSE and the
δ error fraction (SPEC part two §B, ``boost_core.tools.evaluation``):

* ``ground_truth``: the min-max normalised GT disparity itself (scores 0: a sanity check);
* ``blur_2``, ``blur_8``: the same, Gaussian-blurred (sigma 2 and 8 px): lost depth edges raise D³R;
* ``8_bit``: the same, cut to 8 bits (what the reference's BYOD reader does to 16-bit maps);
* with ``--net NAME``: the boosted estimate of the pipeline (``--mode r20|final``), when the weights are in the
  models folder (``python -m boost_core weights download NAME merge_net``).

No network weights are needed for the first four. Run from the repository root::

    python examples/middlebury_motorcycle.py [--out DIR] [--net midas_v2 --mode r20] [--superpixel-scale 1]

and evaluate a written estimate again with the command line (one folder per estimate, paired by stem)::

    python -m boost_core evaluate --estimates DIR/estimates/blur_2 --ground-truth DIR/ground_truth
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing


def write_pfm(path: Path, data: np.ndarray) -> None:
    """Single-channel little-endian PFM (rows bottom-up), the format of Middlebury's disparities."""
    data = np.asarray(data, np.float32)
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n-1.0\n" % (data.shape[1], data.shape[0]))
        np.flipud(data).astype("<f4").tofile(f)


def main(argv=None) -> int:
    import cv2
    import skimage.data

    from boost_core.tools import evaluation
    from boost_core.cli.evaluate import format_table
    from boost_core.image_io import write_depth_files

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the files (default: a temp folder)")
    parser.add_argument("--net", default=None, help="also evaluate the pipeline with this base network")
    parser.add_argument("--mode", default="r20", choices=("r0", "r20", "final"))
    parser.add_argument("--superpixel-scale", type=float, default=1.0,
                        help="1 for this quarter-size view (the reference uses 0.2 at full Middlebury size)")
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="motorcycle-"))
    (out / "ground_truth").mkdir(parents=True, exist_ok=True)
    left, _right, disparity = skimage.data.stereo_motorcycle()
    cv2.imwrite(str(out / "motorcycle.png"), cv2.cvtColor(left, cv2.COLOR_RGB2BGR))
    write_pfm(out / "ground_truth" / "motorcycle.pfm", disparity)

    valid = np.isfinite(disparity) & (disparity > 0)
    perfect = np.zeros(disparity.shape, np.float64)
    perfect[valid] = evaluation.rescale(disparity[valid].astype(np.float64))
    estimates = {
        "ground_truth": perfect,
        "blur_2": cv2.GaussianBlur(perfect, (0, 0), 2.0),
        "blur_8": cv2.GaussianBlur(perfect, (0, 0), 8.0),
        "8_bit": np.floor(perfect * 255) / 255,
    }
    if args.net:
        from boost_core.image_io import read_image
        from boost_core.algorithm.pipeline import boost

        try:
            result = boost(read_image(out / "motorcycle.png"), net=args.net, mode=args.mode)
        except Exception as error:  # weights missing: say how to get them, keep the other rows
            print(f"pipeline skipped: {error}", file=sys.stderr)
        else:
            if result.kind == "inverse_depth":
                estimates[f"{args.net}_{args.mode}"] = result.depth
            else:  # the reference's evaluation takes disparity-like maps only (SPEC §B.1 ⚠)
                print(f"pipeline skipped: {args.net} outputs depth, the evaluation needs inverse depth",
                      file=sys.stderr)

    rows, scores = [], []
    for name, estimate in estimates.items():
        score = evaluation.evaluate(estimate, disparity, gt_kind="disparity",
                                    superpixel_scale=args.superpixel_scale, gt_scale="max")
        scores.append(score)
        rows.append({"image": name, **score.as_dict()})
        write_depth_files(estimate.astype(np.float32), {"npy": out / "estimates" / name / "motorcycle.npy"})
    columns = ("image", "ord", "d3r", "rmse", "delta")
    print(f"Middlebury 2014 Motorcycle (skimage, {disparity.shape[1]}x{disparity.shape[0]}), "
          f"{valid.mean():.1%} valid GT pixels, {scores[0].superpixels} superpixels, "
          f"{scores[0].d3r_pairs} D3R pairs, {scores[0].ord_pairs} ORD pairs")
    print(format_table(rows, columns, None))
    print(f"files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
