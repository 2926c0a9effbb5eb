"""Frames for the temporal-alignment figures: a crop window panned across scikit-image's Middlebury *motorcycle*.

    python benchmarks/temporal_frames.py OUT_DIR [--frames 40] [--size 160x120] [--step 2]

Writes OUT_DIR/photos/frame_0001.png ... : the photo is first halved (741x500 -> 370x250), then a SIZE window
moves STEP px right per frame (and STEP/2 px down every other frame), a camera pan in which every pixel moves.
Then the engine over them and ``align`` over its raw depth (the figures of the footage branch's report)::

    python benchmarks/temporal_frames.py pan/
    python tests/synthetic_weights.py --out pan/weights midas_v2 merge_net   # or real weights
    python -m boost_core pan/photos/frame_*.png --net midas_v2 --mode r0 --format npy --output pan/raw \
        --base-weights pan/weights/midas_v2.pt --merge-weights pan/weights/merge_net.pth
    python -m boost_core align 'pan/raw/frame_####.npy' --photos 'pan/photos/frame_####.png' \
        --output pan/aligned     # prints both flicker figures, writes pan/aligned/flicker.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import skimage.data


def pan_frames(count: int, width: int, height: int, step: int):
    """(H, W, 3) uint8 RGB crops, frame k at x = k*step, y = (k // 2) * (step // 2) of the halved photo."""
    left = skimage.data.stereo_motorcycle()[0]
    half = cv2.resize(left, (left.shape[1] // 2, left.shape[0] // 2), interpolation=cv2.INTER_AREA)
    for k in range(count):
        x, y = k * step, (k // 2) * max(step // 2, 1)
        if x + width > half.shape[1] or y + height > half.shape[0]:
            raise SystemExit(f"frame {k + 1} leaves the photo; use fewer --frames or a smaller --step")
        yield half[y:y + height, x:x + width]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--step", type=int, default=2)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    photos = args.out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for k, rgb in enumerate(pan_frames(args.frames, width, height, args.step), start=1):
        cv2.imwrite(str(photos / f"frame_{k:04d}.png"), rgb[..., ::-1])
    print(f"{args.frames} frames in {photos}")


if __name__ == "__main__":
    main()
