#!/usr/bin/env python3
"""PP-ShiTuV2 speed: build_index ms/img and predict ms/img (detection 640 + crops + search), fp32, int8, bf16.

Two workloads, at CPU threads 1 and 2, each in fp32, int8 and bf16 (``--precisions``; bf16 runs on
OpenVINO where the CPU has AVX512-BF16 or AMX, and is fp32 elsewhere: the precision column says):

* ``one-crop`` — PaddleX's measured workload: PP-ShiTuV2_det + PP-ShiTuV2_rec with random
  weights (seeded, so exports and int8 files are made once and cached), so nothing passes
  det_threshold and every query falls back to one whole-image crop. With ``--paddlex`` (after
  ``make paddlex-env``) PaddleX 3.7.2 runs this workload in the same run and repeat loop, as
  configured (``cpu_threads``) and pinned to that many cores. Random weights have no accuracy
  to check, so their int8/bf16 models run whatever their check says ($VIEWFINDER_INT8_UNVALIDATED=1,
  printed below the table).
* ``multi-box`` — a real multi-box workload: the real COCO CenterNet (../shared/assets) as
  mainbody detector, real MobileNetV2_x1_0 features, the whole image added too (3-5 crops per
  photo). int8/bf16 here is what ``precision: int8|bf16`` gives a user: a model that fails its accuracy
  check against fp32 runs fp32 (the precision column says what ran).

int8 is calibrated on the seeded sample photos (.assets/photos, .assets/opencv). Every figure
carries [cores busy] = process CPU seconds / wall seconds. ``--ab`` adds, at 2+ threads, an fp32
row with ONNX Runtime's worker threads spinning during runs (the default sleeps: measured faster).

    .venv/bin/python benchmarks/shitu.py --paddlex [--repeats 3] [--threads 1 2] [--precisions fp32 int8 bf16] [--ab]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Timed, jpeg_folder, machine_description, medians, time_pass  # noqa: E402
from benchmarks.paddlex import client as paddlex  # noqa: E402
from benchmarks.paddlex.client import PaddleXWorker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CENTERNET = ROOT.parent / "shared" / "assets" / "centernet.onnx"
CALIBRATION_FOLDERS = (ROOT / ".assets" / "photos", ROOT / ".assets" / "opencv")
PADDLEX = {1: (58.0, 482.0), 2: (40.0, 402.0)}  # threads -> (build ms/img, predict ms/img), issue 5
ONE_CROP = "one-crop (random PP-ShiTuV2_det/_rec)"
MULTI_BOX = "multi-box (CenterNet + MobileNetV2)"
SPIN_OFF = "fp32, spinning off"


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
    return {ONE_CROP: one_crop, MULTI_BOX: multi_box}


def calibration_photos() -> list[str]:
    extensions = {".jpg", ".jpeg", ".png"}
    return sorted(str(p) for folder in CALIBRATION_FOLDERS if folder.is_dir()
                  for p in folder.iterdir() if p.suffix.lower() in extensions)


def make_pipeline(name: str, override: dict, threads: int, precision: str, calibration: list[str]):
    import torch

    from viewfinder import create_pipeline

    torch.manual_seed(0)  # the same random weights every time: one export and one int8 file, cached
    random = "random" in name
    previous = os.environ.get("VIEWFINDER_INT8_UNVALIDATED")
    if random:  # random weights: nothing to be accurate about; time the int8 model whatever its check says
        os.environ["VIEWFINDER_INT8_UNVALIDATED"] = "1"
    try:
        return create_pipeline("PP-ShiTuV2", config=override, device="cpu", pretrained=not random,
                               cpu_threads=threads, precision=precision, calibration=calibration)
    finally:
        if previous is None:
            os.environ.pop("VIEWFINDER_INT8_UNVALIDATED", None)
        else:
            os.environ["VIEWFINDER_INT8_UNVALIDATED"] = previous


def ran_as(pipeline) -> str:
    """What each model ran in: "det / rec", * where int8/bf16 runs without having passed its check."""
    def one(model) -> str:
        if model is None:
            return "-"
        check = model.int8_check or {}
        mark = "*" if model.precision in ("int8", "bf16") and check and not check.get("ok") else ""
        failed = " (failed check)" if model.precision == "fp32" and check and not check.get("ok") else ""
        return f"{model.precision}{mark}{failed}"

    return f"{one(pipeline.detector)} / {one(pipeline.recognizer)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # engine="auto" runs ONNX Runtime on CPU for real weights but torch for random ones (each
    # run would export new weights); time what users with real weights run.
    parser.add_argument("--engine", default="onnxruntime", help="engine for the torch models (default: onnxruntime)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8", "bf16"],
                        choices=["fp32", "int8", "bf16", "auto"])
    parser.add_argument("--workloads", nargs="+", default=["one-crop", "multi-box"], choices=["one-crop", "multi-box"])
    parser.add_argument("--ab", action="store_true", help="add an fp32 row with ONNX Runtime spinning during runs (the default sleeps)")
    paddlex.add_arguments(parser)
    args = parser.parse_args()
    paddlex.check_arguments(args)

    import onnxruntime

    from viewfinder.engines import cpu_features

    folder = jpeg_folder(max(args.images, 16))
    images = sorted(str(p) for p in folder.glob("*.jpg"))[: args.images]
    labels = [f"item{i}" for i in range(len(images))]
    calibration = calibration_photos()
    print(f"machine: {machine_description()}; load average at start {os.getloadavg()[0]:.1f}")
    print(f"CPU: {cpu_features.describe()}; VNNI/AMX detected: {'yes' if cpu_features.int8_dot_product() else 'no'}; "
          f"onnxruntime {onnxruntime.__version__}")
    print(f"{len(images)} JPEGs 640x480; median of {args.repeats} runs (each after one warm-up); gallery = the same "
          f"photos; int8 calibrated on {len(calibration)} sample photos; [cores busy] = CPU seconds / wall seconds\n")
    print("| workload | threads | precision (det / rec) | build_index ms/img | predict ms/img | boxes/img "
          "| PaddleX build / predict (as configured) | PaddleX pinned build / predict | predict speed-up vs PaddleX "
          "| vs PaddleX pinned | predict CPU time, pinned / ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    checks: dict[str, str] = {}
    for name, override in workloads(args.engine).items():
        if not any(name.startswith(w) for w in args.workloads):
            continue
        if "multi-box" in name and not CENTERNET.is_file():
            print(f"| {name} | - | - | skipped: {CENTERNET} not found | | | | | | | |")
            continue
        for threads in args.threads:
            pipelines = {precision: make_pipeline(name, override, threads, precision, calibration)
                         for precision in args.precisions}
            if args.ab and threads > 1:
                os.environ["VIEWFINDER_ORT_SPINNING"] = "run"  # read when each session is created
                try:
                    pipelines[SPIN_OFF] = make_pipeline(name, override, threads, "fp32", calibration)
                finally:
                    os.environ.pop("VIEWFINDER_ORT_SPINNING", None)
            for pipeline in pipelines.values():
                for model in (pipeline.detector, pipeline.recognizer):
                    if model is not None and model.int8_check:
                        checks[f"{model.model_name} {model.precision}"] = model.int8_check["summary"]
            runners, boxes = {}, {label: [] for label in pipelines}
            for label, pipeline in pipelines.items():
                index = pipeline.build_index(images, labels, show_progress=False)

                def predict(pipeline=pipeline, index=index, label=label) -> int:
                    results = list(pipeline.predict(images, index=index))
                    boxes[label].append(sum(len(r["boxes"]) for r in results))
                    return len(results)

                runners[f"{label}|build"] = lambda p=pipeline: time_pass(
                    lambda: len(p.build_index(images, labels, show_progress=False)))
                runners[f"{label}|predict"] = lambda run=predict: time_pass(run)
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
                for key, run in runners.items():  # interleaved: a change in the machine's load hits all alike
                    samples[key].append(run())
            for worker in workers:
                worker.close()
            for label, pipeline in pipelines.items():
                print(_row(name, threads, label, pipeline, samples, boxes[label][-1] / len(images)), flush=True)
    if checks:
        print("\nint8/bf16 accuracy checks against fp32 (photos not used for calibration; * = kept without passing, "
              "random weights):")
        for model, summary in checks.items():
            print(f"- {model}: {summary}")


def _row(name: str, threads: int, label: str, pipeline, samples: dict[str, list[Timed]],
         boxes_per_image: float) -> str:
    ms, cores = medians(samples)

    def cell(key: str) -> str:
        return f"{ms[key]:.1f} [{cores[key]:.1f}]" if key in ms else "-"

    ours = ms[f"{label}|predict"]
    if "paddlex_predict" in ms:
        paddlex = f"{cell('paddlex_build')} / {cell('paddlex_predict')}"
        pinned = f"{cell('paddlex_pinned_build')} / {cell('paddlex_pinned_predict')}"
        reference, pinned_reference = ms["paddlex_predict"], ms["paddlex_pinned_predict"]
    else:
        ref_build, reference = PADDLEX.get(threads, (None, None)) if "one-crop" in name else (None, None)
        paddlex = f"{ref_build:.0f} / {reference:.0f} (issue 5, another day)" if reference else "-"
        pinned, pinned_reference = "-", None
    speedups = [f"{ref / ours:.2f}x" if ref else "-" for ref in (reference, pinned_reference)]
    if pinned_reference:  # CPU seconds per image, both sides
        cpu_time = ms["paddlex_pinned_predict"] * cores["paddlex_pinned_predict"]
        speedups.append(f"{cpu_time / (ours * cores[f'{label}|predict']):.2f}x")
    else:
        speedups.append("-")
    precision = "fp32 / fp32, ORT spinning during runs" if label == SPIN_OFF else ran_as(pipeline)
    return (f"| {name} | {threads} | {precision} | {cell(f'{label}|build')} | {cell(f'{label}|predict')} | "
            f"{boxes_per_image:.1f} | {paddlex} | {pinned} | {' | '.join(speedups)} |")


if __name__ == "__main__":
    main()
