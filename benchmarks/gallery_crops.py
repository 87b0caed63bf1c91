#!/usr/bin/env python3
"""PP-ShiTuV2 recall@1 with the gallery embedded whole or as detected crops (issue 28 part 1): no timing.

OpenCV's same-object pairs (aloeL/aloeR, leuvenA/leuvenB, ...): the first photo of each pair
and 10 distractors form the gallery, the second photo is the query (tests/test_shitu_pipeline.py's
set). The real COCO CenterNet (../shared/assets) is the mainbody detector, MobileNetV2 (seeded
torchvision weights) the recogniser, as in examples/configs/PP-ShiTuV2_offline.yaml. A query's
answer is the top-1 label of its best-scored box (rec_threshold 0, so every box answers).

Per gallery crop mode (none, best, all) and query mode (every box + the whole image, as the
offline config does; single_mainbody) it prints hits out of the pairs, and the mean top-1
score of the hits (what a rec_threshold has to clear).

    .venv/bin/python benchmarks/gallery_crops.py
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
SHARED = Path(os.environ.get("VIEWFINDER_SHARED", ROOT.parent / "shared"))
WEIGHTS = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder")) / "weights"
OPENCV = ROOT / ".assets" / "opencv"


def answer(result) -> tuple[str | None, float]:
    boxes = [b for b in result["boxes"] if b["labels"]]
    if not boxes:
        return None, 0.0
    best = max(boxes, key=lambda b: b["rec_scores"][0])
    return best["labels"][0], best["rec_scores"][0]


def main() -> None:
    from test_shitu_pipeline import DISTRACTORS, PAIRS  # the pair list the tests use

    from viewfinder import create_pipeline

    pipeline = create_pipeline(str(ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"), device="cpu", config={
        "SubModules": {"Detection": {"spec": {"onnx": str(SHARED / "assets" / "centernet.onnx")}},
                       "Recognition": {"weights": str(WEIGHTS / "mobilenet_v2-b0353104.pth")}}})
    images = [str(OPENCV / a) for a, _ in PAIRS] + [str(OPENCV / d) for d in DISTRACTORS]
    labels = [Path(a).stem for a, _ in PAIRS] + [Path(d).stem for d in DISTRACTORS]
    queries = [str(OPENCV / b) for _, b in PAIRS]
    print(f"{len(PAIRS)} pairs, gallery {len(images)} photos; CenterNet det_threshold {pipeline.det_threshold}, "
          "MobileNetV2")
    print(f"{'gallery crop':>12} {'entries':>8} {'query boxes':>22} {'recall@1':>9} {'mean top-1 score':>17}")
    for crop in ("none", "best", "all"):
        index = pipeline.build_index(images, labels, index_type="Flat", crop=crop, show_progress=False)
        for mode, params in (("all + whole image", {}), ("single_mainbody", {"single_mainbody": True})):
            found = [answer(r) for r in pipeline.predict(queries, index=index, rec_threshold=0.0, **params)]
            hits = [score for (label, score), (a, _) in zip(found, PAIRS) if label == Path(a).stem]
            mean = sum(hits) / len(hits) if hits else float("nan")
            print(f"{crop:>12} {len(index):>8} {mode:>22} {len(hits):>5}/{len(PAIRS):<3} {mean:>17.3f}")


if __name__ == "__main__":
    main()
