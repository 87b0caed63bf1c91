#!/usr/bin/env python3
"""What int8 and bf16 change in accuracy: each model's check against fp32 (models/int8_check.py), plus the
recognition demo's retrieval (OpenCV's same-object pairs) for the feature models. No timings.
bf16 (OpenVINO) is only checked on a CPU with AVX512-BF16 or AMX (``--precisions int8 bf16``).

Models: the real COCO CenterNet (../shared/assets) and PP-ShiTuV2_det with the parity weights
(../shared/parity: random weights in Paddle's layout) as detectors; the real MobileNetV2_x1_0
and PP-ShiTuV2_rec with the parity weights as feature models. Calibration: the seeded sample
photos (.assets/photos + .assets/opencv; every third photo kept back for the check). For the
parity detector, whose random weights score every anchor near 1.0, the anchors before NMS are
compared as well (the check's own fallback for detectors that find nothing).

    .venv/bin/python benchmarks/int8_accuracy.py [--precisions int8 bf16]

The int8 recipe is the one ``precision="int8"`` uses (viewfinder.models.precision.DEFAULT_QUANT).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VIEWFINDER_SHARED", ROOT.parent / "shared"))
OPENCV = ROOT / ".assets" / "opencv"
WEIGHTS = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder")) / "weights"
PAIRS = (("aloeL.jpg", "aloeR.jpg"), ("leuvenA.jpg", "leuvenB.jpg"), ("graf1.png", "graf3.png"),
         ("box.png", "box_in_scene.png"), ("basketball1.png", "basketball2.png"),
         ("rubberwhale1.png", "rubberwhale2.png"), ("aero1.jpg", "aero3.jpg"),
         ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"), ("ela_original.jpg", "ela_modified.jpg"),
         ("left.jpg", "right.jpg"))
DISTRACTORS = ("apple.jpg", "baboon.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "messi5.jpg", "orange.jpg",
               "squirrel_cls.jpg", "starry_night.jpg", "building.jpg")
CENTERNET_SPEC = {"decoding": "boxes_scores_classes", "input_name": "tower_0/images:0", "output": "tower_0/detections",
                  "layout": "NHWC", "size": [512, 512], "channel_order": "RGB", "labels": "coco80",
                  "class_agnostic": True, "keep_top_k": 10, "threshold": 0.3}


def calibration_photos() -> list[str]:
    return sorted(str(p) for folder in (ROOT / ".assets" / "photos", OPENCV) if folder.is_dir()
                  for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def demo_pairs(fp32, int8) -> str:
    """Gallery: the first photo of each pair + distractors; queries: the second photos. Top-1 labels."""
    from viewfinder.io import decode_image

    side = fp32.preprocess.config.min_decode_side
    gallery = [decode_image(str(OPENCV / a), min_short_side=side) for a, _ in PAIRS]
    gallery += [decode_image(str(OPENCV / d), min_short_side=side) for d in DISTRACTORS]
    queries = [decode_image(str(OPENCV / b), min_short_side=side) for _, b in PAIRS]
    top1 = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        found = np.argmax(model.embed(queries) @ model.embed(gallery).T, axis=1)
        top1[name] = found
    right = {name: int((found == np.arange(len(PAIRS))).sum()) for name, found in top1.items()}
    same = int((top1["fp32"] == top1["int8"]).sum())
    return (f"demo pairs: top-1 correct fp32 {right['fp32']}/{len(PAIRS)}, {int8.precision} {right['int8']}/{len(PAIRS)}; "
            f"top-1 unchanged {same}/{len(PAIRS)}"), same == len(PAIRS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", nargs="+", default=["int8", "bf16"], choices=["int8", "bf16"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ["VIEWFINDER_INT8_UNVALIDATED"] = "1"  # keep the int8 model to compare it; the check still runs
    from viewfinder import create_model
    from viewfinder.engines import cpu_features
    from viewfinder.io import decode_image
    from viewfinder.models.int8_check import check_detector_anchors
    from viewfinder.models.onnx_detector import create_onnx_detector
    from viewfinder.models.precision import split_photos

    photos = calibration_photos()
    split = split_photos(photos)
    print(f"CPU: {cpu_features.describe()}; {len(split.calibration)} calibration photos, "
          f"{len(split.validation)} kept back for the check\n")
    parity = SHARED / "parity"
    makers = {
        "CenterNet (real, COCO)": lambda p: create_onnx_detector(SHARED / "assets" / "centernet.onnx", CENTERNET_SPEC,
                                                                 device="cpu", precision=p, calibration=photos),
        "PP-ShiTuV2_det (parity weights)": lambda p: create_model(
            "PP-ShiTuV2_det", weights=parity / "PP-ShiTuV2_det" / "model.pdparams", engine="onnxruntime",
            device="cpu", precision=p, calibration=photos),
        "MobileNetV2_x1_0 features (real, ImageNet)": lambda p: create_model(
            "MobileNetV2_x1_0", weights=WEIGHTS / "mobilenet_v2-b0353104.pth", task="image_feature",
            engine="onnxruntime", device="cpu", precision=p, calibration=photos),
        "PP-ShiTuV2_rec (parity weights)": lambda p: create_model(
            "PP-ShiTuV2_rec", weights=parity / "PP-ShiTuV2_rec" / "model.pdparams", engine="onnxruntime",
            device="cpu", precision=p, calibration=photos),
    }
    if "bf16" in args.precisions and cpu_features.bf16_arithmetic() is None:
        print("bf16 skipped: this CPU has no bf16 arithmetic (AVX512-BF16 or AMX)\n")
        args.precisions.remove("bf16")
    for (label, make), precision in ((item, p) for item in makers.items() for p in args.precisions):
        fp32, int8 = make("fp32"), make(precision)
        check = int8.int8_check or {}
        print(f"- {label}, {precision}: {'passes' if check.get('ok') else 'fails'}: {check.get('summary')}")
        if label.startswith("PP-ShiTuV2_det"):  # anchors correspond one to one (CenterNet outputs sorted rows)
            side = fp32.preprocess.config.min_decode_side
            images = [decode_image(p, min_short_side=side) for p in split.validation]
            print(f"  {check_detector_anchors(fp32, int8, images).summary}")
        elif "features" in label or "_rec" in label:
            pairs, unchanged = demo_pairs(fp32, int8)
            cosine_ok = (check.get("figures") or {}).get("cosine_min", 0) >= 0.99
            # the issue's own wording; the check above also asks every held-out photo's nearest photo to stay
            print(f"  {pairs}\n  issue 30's bar (cosine >= 0.99 on every held-out photo, top-1 unchanged on the "
                  f"demo pairs): {'met' if cosine_ok and unchanged else 'not met'}")


if __name__ == "__main__":
    main()
