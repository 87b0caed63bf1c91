#!/usr/bin/env python3
"""CPU cost of turning a 640x480 JPEG into the network's 224x224 input, ms/img, one thread.

The stages the CPU decode pool runs for a classifier (resize the short side to 256 with
bilinear, centre-crop 224), each timed alone and as the two routes the code has, for both
resize backends (``pillow``: antialiased; ``cv2``: PaddleX's resize, no antialiasing):

* ``array route``: decode to an RGB array, then resize from the array (detection and
  PP-ShiTuV2 take this route: they crop boxes from the array);
* ``Pillow route``: decode, resize straight from the Pillow image (classifiers and
  multi-label models); the full-size array is only made if a result is drawn.

Both routes give identical pixels within a backend (checked here). Run on a quiet machine:

    .venv/bin/python benchmarks/decode.py [--images 32] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description  # noqa: E402
from viewfinder.io import decode_image  # noqa: E402
from viewfinder.models.preprocess import Preprocessor, PreprocessConfig  # noqa: E402


def best_ms(stage: Callable[[Path], object], paths: list[Path], repeats: int) -> float:
    """Best of ``repeats`` passes over ``paths`` (ms per image): the least disturbed pass."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            stage(path)
        best = min(best, (time.perf_counter() - start) * 1000.0 / len(paths))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    paths = sorted(jpeg_folder(args.images).glob("*.jpg"))[:args.images]
    side = PreprocessConfig(resize_short=256, crop=224).min_decode_side
    decoded = [decode_image(str(p), min_short_side=side) for p in paths]
    stages: dict[str, Callable[[Path], object]] = {
        "decode only (Pillow image)": lambda p: decode_image(str(p), min_short_side=side, keep_pil=True),
        "decode to an array": lambda p: decode_image(str(p), min_short_side=side),
    }
    for backend in ("pillow", "cv2"):
        preprocess = Preprocessor(PreprocessConfig(resize_short=256, crop=224, backend=backend))

        def array_route(path: Path, preprocess: Preprocessor = preprocess) -> np.ndarray:
            return preprocess.resize_one(decode_image(str(path), min_short_side=side).rgb)

        def pillow_route(path: Path, preprocess: Preprocessor = preprocess) -> np.ndarray:
            return preprocess.resize_one(decode_image(str(path), min_short_side=side, keep_pil=True).pil)

        for path in paths:
            if not np.array_equal(array_route(path), pillow_route(path)):
                raise SystemExit(f"{path}: the two {backend} routes disagree")
        arrays = iter(decoded * args.repeats)
        stages[f"{backend}: resize + crop from an array"] = \
            lambda p, preprocess=preprocess, arrays=arrays: preprocess.resize_one(next(arrays).rgb)
        stages[f"{backend}: array route (decode to array + resize)"] = array_route
        stages[f"{backend}: Pillow route (decode + resize from Pillow)"] = pillow_route
    print(machine_description())
    print(f"{len(paths)} JPEGs 640x480, resize short side 256 + centre crop 224, best of {args.repeats}\n")
    print("| stage | ms/img |\n|---|---|")
    results = {name: best_ms(stage, paths, args.repeats) for name, stage in stages.items()}
    for name, ms in results.items():
        print(f"| {name} | {ms:.2f} |")
    for backend in ("pillow", "cv2"):
        array_ms = results[f"{backend}: array route (decode to array + resize)"]
        pillow_ms = results[f"{backend}: Pillow route (decode + resize from Pillow)"]
        print(f"{backend}: the Pillow route saves {array_ms - pillow_ms:.2f} ms/img "
              f"({100 * (array_ms - pillow_ms) / array_ms:.0f} %), identical pixels")
    fastest = {b: min(results[f"{b}: array route (decode to array + resize)"],
                      results[f"{b}: Pillow route (decode + resize from Pillow)"]) for b in ("pillow", "cv2")}
    print(f"cv2 backend: {fastest['pillow'] - fastest['cv2']:.2f} ms/img less than pillow "
          f"({fastest['pillow'] / fastest['cv2']:.2f}x faster preparation)")

if __name__ == "__main__":
    main()
