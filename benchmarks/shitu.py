#!/usr/bin/env python3
"""PP-ShiTuV2 speed: build_index ms/img and predict ms/img (detection 640 + crops + search).

Two workloads, at CPU threads 1 and 2:

* ``one-crop`` — PaddleX's measured workload: PP-ShiTuV2_det + PP-ShiTuV2_rec with random
  weights, so nothing passes det_threshold and every query falls back to one whole-image
  crop. PaddleX 3.7.2 here: build_index 58 ms/img, predict 482 ms/img at 1 thread (40 / 402
  at 2 threads).
* ``multi-box`` — a real multi-box workload: the real COCO CenterNet (../shared/assets) as
  mainbody detector, MobileNetV2_x1_0 features, the whole image added too (3-5 crops per photo).

    .venv/bin/python benchmarks/shitu.py [--engine auto|torch|onnxruntime] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description, median_ms_per_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CENTERNET = ROOT.parent / "shared" / "assets" / "centernet.onnx"
PADDLEX = {1: (58.0, 482.0), 2: (40.0, 402.0)}  # threads -> (build ms/img, predict ms/img)


def workloads(engine: str | None) -> dict[str, dict]:
    extra = {"engine": engine} if engine else {}
    one_crop = {"SubModules": {"Detection": {"model_name": "PP-ShiTuV2_det", **extra},
                               "Recognition": {"model_name": "PP-ShiTuV2_rec", "batch_size": 8, **extra}}}
    multi_box = {"always_add_whole_image": True, "det_threshold": 0.3,
                 "SubModules": {"Detection": {"model_name": "ONNXDetector", "spec": {
                     "onnx": str(CENTERNET), "decoding": "boxes_scores_classes", "input_name": "tower_0/images:0",
                     "output": "tower_0/detections", "layout": "NHWC", "size": [512, 512], "channel_order": "RGB",
                     "class_agnostic": True, "keep_top_k": 10}},
                     "Recognition": {"model_name": "MobileNetV2_x1_0", "batch_size": 8, **extra}}}
    return {"one-crop (random PP-ShiTuV2_det/_rec)": one_crop, "multi-box (CenterNet + MobileNetV2)": multi_box}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default=None, help="engine for the torch models (default: library default)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from viewfinder import create_pipeline

    folder = jpeg_folder(max(args.images, 16))
    images = sorted(str(p) for p in folder.glob("*.jpg"))[: args.images]
    labels = [f"item{i}" for i in range(len(images))]
    print(f"machine: {machine_description()}")
    print(f"{len(images)} JPEGs 640x480; median of {args.repeats} runs; gallery = the same photos\n")
    print("| workload | threads | build_index ms/img | predict ms/img | boxes/img | PaddleX build / predict | predict speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, override in workloads(args.engine).items():
        if "multi-box" in name and not CENTERNET.is_file():
            print(f"| {name} | - | skipped: {CENTERNET} not found | | | | |")
            continue
        for threads in (1, 2):
            torch.set_num_threads(threads)
            pipeline = create_pipeline("PP-ShiTuV2", config=override, device="cpu",
                                       pretrained="random" not in name, cpu_threads=threads)
            index = pipeline.build_index(images, labels, show_progress=False)
            build_ms = median_ms_per_image(
                lambda: len(pipeline.build_index(images, labels, show_progress=False)), args.repeats)
            boxes: list[int] = []

            def run() -> int:
                results = list(pipeline.predict(images, index=index))
                boxes.append(sum(len(r["boxes"]) for r in results))
                return len(results)

            run()  # warm-up
            predict_ms = median_ms_per_image(run, args.repeats)
            ref_build, ref_predict = PADDLEX[threads]
            print(f"| {name} | {threads} | {build_ms:.1f} | {predict_ms:.1f} | {boxes[-1] / len(images):.1f} | "
                  f"{ref_build:.0f} / {ref_predict:.0f} | {ref_predict / predict_ms:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
