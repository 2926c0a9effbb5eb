"""``python -m boost_core evaluate --estimates DIR --ground-truth DIR [options]``: ORD, D³R, RMSE and δ per image.

Ground-truth files (PNG, TIFF, PFM, EXR, NPY) are taken in name order (the MATLAB ``dir`` order, which matters
because the random ORD pairs come from one MATLAB-equivalent stream shared by all images); each is paired with
the estimate of the same stem. A table goes to stdout, with the dataset means (NaN skipped) as its last row;
``--csv FILE`` writes one row per image (``image, ord, d3r, rmse, delta``). See ``boost_core.tools.evaluation``.

Exit codes: 0 every image evaluated; 1 some image could not be (missing estimate, size mismatch, unreadable
file); 2 bad arguments (folders missing, no ground truth found).
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

DEPTH_SUFFIXES = (".png", ".pfm", ".exr", ".npy", ".tif", ".tiff")
INTEGER_SUFFIXES = (".png", ".tif", ".tiff")  # read as MATLAB im2double: uint16 / 65535, uint8 / 255
CSV_COLUMNS = ("image", "ord", "d3r", "rmse", "delta")
EXTRA_COLUMNS = ("delta2", "delta3", "log10", "abs_rel", "sq_rel")
EXIT_FAILED, EXIT_USAGE = 1, 2


def read_map(path: str | Path) -> np.ndarray:
    """A depth/disparity file -> float64 (H, W).

    16/8-bit PNG and TIFF are divided by 65535 / 255 in float64 (MATLAB ``im2double``); PFM, EXR and NPY keep
    their values (``boost_core.image_io.read_depth``). Colour images are refused.
    """
    import cv2

    from ..image_io import ImageReadError, read_depth

    path = Path(path)
    if path.suffix.lower() in INTEGER_SUFFIXES and path.is_file():
        data = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is not None and image.dtype in (np.uint8, np.uint16):
            if image.ndim == 3:
                if image.shape[2] >= 3 and not (np.array_equal(image[..., 0], image[..., 1])
                                                and np.array_equal(image[..., 1], image[..., 2])):
                    raise ImageReadError(f"{path} is a colour image; depth maps must be single-channel "
                                         "(a colourised output cannot be evaluated)")
                image = image[..., 0]
            return image.astype(np.float64) / (65535.0 if image.dtype == np.uint16 else 255.0)
    return read_depth(path).astype(np.float64)


def list_maps(folder: Path, suffix: str | None = None) -> dict[str, list[Path]]:
    """{stem: [files]} for the depth files in ``folder`` (optionally only those ending in ``suffix``)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if not path.is_file() or path.name.startswith("."):
            continue
        if suffix is not None:
            if not lower.endswith(suffix.lower()):
                continue
            stem = path.name[: len(path.name) - len(suffix)]
        elif path.suffix.lower() in DEPTH_SUFFIXES:
            stem = path.stem
        else:
            continue
        found.setdefault(stem, []).append(path)
    return found


def pair_files(estimates: Path, ground_truth: Path, estimate_suffix: str | None = None):
    """[(stem, gt_path, estimate_path or an error message)] in ground-truth name order."""
    gts = list_maps(ground_truth)
    ests = list_maps(estimates, estimate_suffix)
    pairs = []
    for stem in sorted(gts):
        gt = gts[stem][0]
        candidates = ests.get(stem, [])
        if len(gts[stem]) > 1:
            problem = (f"several ground-truth files named {stem}.*: "
                       f"{', '.join(p.name for p in gts[stem])}; keep one")
        elif not candidates:
            problem = f"no estimate named {stem}{estimate_suffix or '.*'} in {estimates}"
        elif len(candidates) > 1:
            problem = (f"several estimates for {stem}: {', '.join(p.name for p in candidates)}; choose one "
                       "with --estimate-suffix (e.g. --estimate-suffix .png)")
        else:
            problem = None
        pairs.append((stem, gt, problem if problem else candidates[0]))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m boost_core evaluate",
        description="ORD, D3R, RMSE and the delta error fractions of depth estimates against ground truth, as "
                    "the reference's MATLAB evaluation defines them (superpixels by scikit-image: D3R/ORD "
                    "differ slightly from MATLAB's). Estimates must be disparity-like (large = near).")
    parser.add_argument("--estimates", type=Path, required=True, help="folder of estimates (PNG, EXR, NPY, PFM)")
    parser.add_argument("--ground-truth", type=Path, required=True, help="folder of ground-truth maps")
    parser.add_argument("--gt-kind", choices=("disparity", "depth"), default="disparity",
                        help="what the ground-truth files hold: disparity (Middlebury, default) or depth "
                             "(IBims-1, NYU)")
    parser.add_argument("--superpixel-scale", type=float, default=1.0,
                        help="superpixels are computed on the GT resized by this factor (reference: 0.2 for "
                             "full-size Middlebury, 1 for IBims-1 and NYU; default 1)")
    parser.add_argument("--gt-scale", choices=("auto", "file", "max"), default="auto",
                        help="file: GT values as read (16-bit PNG / 65535, the reference); max: divide by the "
                             "largest valid value; auto (default): file for PNG/TIFF, max for PFM/EXR/NPY")
    parser.add_argument("--estimate-suffix", default=None,
                        help="only estimates whose name is <stem><suffix> (e.g. .png, .npy); needed when one "
                             "stem has several estimate files")
    parser.add_argument("--csv", type=Path, default=None, help="write one CSV row per image to this file")
    parser.add_argument("--all-metrics", action="store_true",
                        help="also report delta2, delta3, log10, abs_rel, sq_rel (table and CSV)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..tools.evaluation import evaluate, matlab_stream, mean_scores

    args = build_parser().parse_args(argv)
    for name, folder in (("--estimates", args.estimates), ("--ground-truth", args.ground_truth)):
        if not folder.is_dir():
            print(f"error: {name} {folder} is not a folder", file=sys.stderr)
            return EXIT_USAGE
    if not 0 < args.superpixel_scale <= 1:
        print(f"error: --superpixel-scale must be in (0, 1], got {args.superpixel_scale}", file=sys.stderr)
        return EXIT_USAGE
    pairs = pair_files(args.estimates, args.ground_truth, args.estimate_suffix)
    if not pairs:
        print(f"error: no ground-truth file ({', '.join(DEPTH_SUFFIXES)}) in {args.ground_truth}",
              file=sys.stderr)
        return EXIT_USAGE

    columns = CSV_COLUMNS + (EXTRA_COLUMNS if args.all_metrics else ())
    rng = matlab_stream()  # one stream for the whole dataset, as a fresh MATLAB session
    rows, scores, failed = [], [], 0
    for stem, gt_path, estimate in pairs:
        if isinstance(estimate, str):
            failed += 1
            print(f"{stem}: error: {estimate}", file=sys.stderr)
            continue
        try:
            gt = read_map(gt_path)
            est = read_map(estimate)
            scale = args.gt_scale
            if scale == "auto":
                scale = "file" if gt_path.suffix.lower() in INTEGER_SUFFIXES else "max"
            result = evaluate(est, gt, gt_kind=args.gt_kind, superpixel_scale=args.superpixel_scale, rng=rng,
                              gt_scale=scale)
        except (OSError, ValueError) as error:
            failed += 1
            print(f"{stem}: error: {error}", file=sys.stderr)
            continue
        scores.append(result)
        row = {"image": stem, **{c: getattr(result, c) for c in columns[1:]}}
        rows.append(row)

    print(format_table(rows, columns, mean_scores(scores) if scores else None))
    if args.csv is not None:
        write_csv(args.csv, rows, columns)
        print(f"wrote {args.csv}", file=sys.stderr)
    if failed:
        print(f"{len(rows)} evaluated, {failed} failed", file=sys.stderr)
    return EXIT_FAILED if failed else 0


def format_table(rows: list[dict], columns, means: dict | None) -> str:
    """Fixed-width text table of the rows, with a "mean" row (NaN skipped) at the end."""
    headers = {"image": "image", "ord": "ORD", "d3r": "D3R", "rmse": "RMSE", "delta": "d>1.25",
               "delta2": "d>1.25^2", "delta3": "d>1.25^3", "log10": "log10", "abs_rel": "AbsRel",
               "sq_rel": "SqRel"}
    lines = [dict(r) for r in rows]
    if means is not None:
        lines.append({"image": "mean", **means})
    width = max([len("image")] + [len(str(r["image"])) for r in lines])
    text = [f"{headers['image']:<{width}}" + "".join(f" {headers[c]:>9}" for c in columns[1:])]
    for r in lines:
        text.append(f"{r['image']:<{width}}" + "".join(f" {_number(r[c]):>9}" for c in columns[1:]))
    return "\n".join(text)


def _number(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def write_csv(path: Path, rows: list[dict], columns) -> None:
    """Write the rows (full float precision) atomically: a temp file in the target folder, then replace."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (row[c] if c == "image" else repr(float(row[c]))) for c in columns})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(buffer.getvalue())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
