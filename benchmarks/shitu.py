#!/usr/bin/env python3
"""PP-ShiTuV2 speed: build_index ms/img and predict ms/img (detection 640 + crops + search).

Two workloads, at CPU threads 1 and 2:

* ``one-crop`` — PaddleX's measured workload: PP-ShiTuV2_det + PP-ShiTuV2_rec with random
  weights, so nothing passes det_threshold and every query falls back to one whole-image
  crop. PaddleX 3.7.2 per issue 5 (another day): build_index 58 ms/img, predict 482 ms/img
  at 1 thread (40 / 402 at 2 threads). With ``--paddlex`` (after ``make paddlex-env``)
  PaddleX runs this workload in the same run and repeat loop, as configured
  (``cpu_threads``) and pinned to that many cores; [cores busy] = CPU s / wall s.
* ``multi-box`` — a real multi-box workload: the real COCO CenterNet (../shared/assets) as
  mainbody detector, MobileNetV2_x1_0 features, the whole image added too (3-5 crops per photo).

    .venv/bin/python benchmarks/shitu.py [--engine onnxruntime|torch|auto] [--repeats 3] [--paddlex]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Timed, jpeg_folder, machine_description, medians, time_pass  # noqa: E402
from benchmarks.paddlex import client as paddlex  # noqa: E402
from benchmarks.paddlex.client import PaddleXWorker  # noqa: E402

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
    # engine="auto" runs ONNX Runtime on CPU for real weights but torch for random ones (each
    # run would export new weights); time what users with real weights run.
    parser.add_argument("--engine", default="onnxruntime", help="engine for the torch models (default: onnxruntime)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    paddlex.add_arguments(parser)
    args = parser.parse_args()
    paddlex.check_arguments(args)

    import torch

    from viewfinder import create_pipeline

    folder = jpeg_folder(max(args.images, 16))
    images = sorted(str(p) for p in folder.glob("*.jpg"))[: args.images]
    labels = [f"item{i}" for i in range(len(images))]
    print(f"machine: {machine_description()}")
    print(f"{len(images)} JPEGs 640x480; median of {args.repeats} runs (each after one warm-up); gallery = the same "
          "photos; [cores busy] = CPU seconds / wall seconds\n")
    print("| workload | threads | build_index ms/img | predict ms/img | boxes/img | PaddleX build / predict "
          "| PaddleX pinned build / predict | predict speed-up | vs pinned | predict CPU time, pinned / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, override in workloads(args.engine).items():
        if "multi-box" in name and not CENTERNET.is_file():
            print(f"| {name} | - | skipped: {CENTERNET} not found | | | | | | | |")
            continue
        for threads in args.threads:
            torch.set_num_threads(threads)
            pipeline = create_pipeline("PP-ShiTuV2", config=override, device="cpu",
                                       pretrained="random" not in name, cpu_threads=threads)
            index = pipeline.build_index(images, labels, show_progress=False)
            boxes: list[int] = []

            def predict() -> int:
                results = list(pipeline.predict(images, index=index))
                boxes.append(sum(len(r["boxes"]) for r in results))
                return len(results)

            runners = {"build": lambda: time_pass(lambda: len(pipeline.build_index(images, labels,
                                                                                   show_progress=False))),
                       "predict": lambda: time_pass(predict)}
            workers = []
            if args.paddlex and "one-crop" in name:  # PaddleX's workload (its models in PaddleX's format)
                for prefix, pin in (("paddlex", False), ("paddlex_pinned", True)):
                    worker = PaddleXWorker(args.paddlex, args.paddlex_models, "shitu", folder, threads=threads,
                                           count=len(images), pin=pin)
                    workers.append(worker)
                    runners[f"{prefix}_build"] = lambda w=worker: w.timed("build")
                    runners[f"{prefix}_predict"] = lambda w=worker: w.timed("predict")
            samples: dict[str, list[Timed]] = {key: [] for key in runners}
            for run in runners.values():
                run()  # warm-up
            for _ in range(args.repeats):
                for key, run in runners.items():
                    samples[key].append(run())
            for worker in workers:
                worker.close()
            print(_row(name, threads, samples, boxes[-1] / len(images)), flush=True)


def _row(name: str, threads: int, samples: dict[str, list[Timed]], boxes_per_image: float) -> str:
    ms, cores = medians(samples)

    def cell(key: str) -> str:
        return f"{ms[key]:.1f} [{cores[key]:.1f}]" if key in ms else "-"

    if "paddlex_predict" in ms:
        paddlex = f"{cell('paddlex_build')} / {cell('paddlex_predict')}"
        pinned = f"{cell('paddlex_pinned_build')} / {cell('paddlex_pinned_predict')}"
        reference, pinned_reference = ms["paddlex_predict"], ms["paddlex_pinned_predict"]
    else:
        ref_build, reference = PADDLEX.get(threads, (None, None))
        paddlex = f"{ref_build:.0f} / {reference:.0f} (issue 5)" if reference else "-"
        pinned, pinned_reference = "-", None
    speedups = [f"{ref / ms['predict']:.1f}x" if ref else "-" for ref in (reference, pinned_reference)]
    if pinned_reference:  # CPU seconds per image, both sides
        cpu_time = ms["paddlex_pinned_predict"] * cores["paddlex_pinned_predict"]
        speedups.append(f"{cpu_time / (ms['predict'] * cores['predict']):.2f}x")
    else:
        speedups.append("-")
    return (f"| {name} | {threads} | {cell('build')} | {cell('predict')} | {boxes_per_image:.1f} | {paddlex} | "
            f"{pinned} | {' | '.join(speedups)} |")


if __name__ == "__main__":
    main()
