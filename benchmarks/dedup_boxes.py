#!/usr/bin/env python3
"""PP-ShiTuV2 boxes per photo with and without ``dedup_threshold`` (issue 28 part 5): no timing.

The real mainbody stand-in (COCO CenterNet from ../shared/assets, class-agnostic, the offline
config's det_threshold 0.3) and real MobileNetV2 features; the gallery is six seeded photos
(what tests/shitu_fp32_cases.py uses), embedded whole (PaddleX's default) or as every detected
box (``--crop all``). The queries are the seeded photos with several objects (street, horses,
kites, people). Per setting it prints, summed over the queries:

* boxes: boxes in the results (detected ones + the whole image, which this config adds unless
  ``--no_whole``);
* accepted: boxes whose best match passed rec_threshold;
* repeated: accepted boxes whose top-1 label another accepted box of the same photo has too;
* overlapping repeats: those pairs that overlap (IoU > 0.05) — what dedup is meant to remove.

    .venv/bin/python benchmarks/dedup_boxes.py [--crop none|best|all] [--no_whole] [--thresholds none 0.3 0.05]
"""
from __future__ import annotations

import argparse
import os
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / ".assets" / "photos"
SHARED = Path(os.environ.get("VIEWFINDER_SHARED", ROOT.parent / "shared"))
WEIGHTS = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder")) / "weights"
GALLERY = ("dog.jpg", "horses.jpg", "astronaut.png", "chelsea.png", "coffee.png", "giraffe.jpg")
QUERIES = ("dog.jpg", "horses.jpg", "kite.jpg", "person.jpg", "giraffe.jpg", "eagle.jpg", "motorcycle_left.png",
           "china.jpg")


def iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def count(results: list) -> dict[str, int]:
    boxes = accepted = repeated = overlapping = 0
    for result in results:
        kept = [b for b in result["boxes"] if b["labels"]]
        boxes += len(result["boxes"])
        accepted += len(kept)
        labels = [b["labels"][0] for b in kept]
        repeated += sum(labels.count(label) > 1 for label in labels)
        overlapping += sum(a["labels"][0] == b["labels"][0] and iou(a["coordinate"], b["coordinate"]) > 0.05
                           for a, b in combinations(kept, 2))
    return {"boxes": boxes, "accepted": accepted, "repeated": repeated, "overlapping repeats": overlapping}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", default="none", choices=("none", "best", "all"), help="how the gallery is cut")
    parser.add_argument("--thresholds", nargs="+", default=["none", "0.3", "0.05"])
    parser.add_argument("--no_whole", action="store_true",
                        help="always_add_whole_image false (the shipped PP-ShiTuV2.yaml's setting; the whole image "
                             "is then recognised only when nothing is detected)")
    args = parser.parse_args()

    from viewfinder import create_pipeline

    pipeline = create_pipeline(str(ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"), device="cpu", config={
        "dedup_threshold": None, "always_add_whole_image": not args.no_whole,
        "SubModules": {"Detection": {"spec": {"onnx": str(SHARED / "assets" / "centernet.onnx")}},
                       "Recognition": {"weights": str(WEIGHTS / "mobilenet_v2-b0353104.pth")}}})
    index = pipeline.build_index([str(PHOTOS / g) for g in GALLERY], [Path(g).stem for g in GALLERY],
                                 index_type="Flat", crop=args.crop, show_progress=False)
    queries = [str(PHOTOS / q) for q in QUERIES]
    print(f"gallery {len(GALLERY)} photos, crop={args.crop} ({len(index)} entries); {len(queries)} query photos; "
          f"det_threshold {pipeline.det_threshold}, rec_threshold {pipeline.rec_threshold}, "
          f"always_add_whole_image {pipeline.always_add_whole_image}")
    print(f"{'dedup_threshold':>16} {'boxes':>6} {'accepted':>9} {'repeated':>9} {'overlapping repeats':>20}")
    for text in args.thresholds:
        pipeline.dedup_threshold = None if text == "none" else float(text)
        figures = count(list(pipeline.predict(queries, index=index)))
        print(f"{text:>16} {figures['boxes']:>6} {figures['accepted']:>9} {figures['repeated']:>9} "
              f"{figures['overlapping repeats']:>20}")


if __name__ == "__main__":
    main()
