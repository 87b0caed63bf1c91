#!/usr/bin/env python3
"""Time PaddleX 3.7.2 on request: the PaddleX side of our benchmarks' same-run comparisons.

Runs in the PaddleX side environment (``make paddlex-env``) as a child of one of our
benchmarks, which starts it once per (model, threads, batch) and then writes one command
per line to its stdin; each command is answered with one JSON line on stdout:

    run       classification: ``predict`` over the image folder -> {"ms_per_image", "images"}
    build     PP-ShiTuV2: ``build_index`` over the folder (labels = file stems) -> same keys
    predict   PP-ShiTuV2: ``predict`` over the folder against the last built index -> same keys
              plus "boxes" (boxes per image)

PaddleX's own defaults apply everywhere (its CPU run mode, its preprocessing from
``inference.yml``) except the thread count, set through ``PaddlePredictorOption.cpu_threads``
as a PaddleX user would. Every answer also carries "cores_busy": process CPU seconds over
wall seconds. On this 2-core machine PaddleX keeps both cores busy whatever ``cpu_threads``
says (its oneDNN run mode), so ``--pin`` restricts the process to the first THREADS cores
(``sched_setaffinity``, before Paddle loads) for a comparison at equal cores.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path


def _patch_feature_split() -> None:
    """Work around a PaddleX 3.7.2 bug so that its PP-ShiTuV2 runs at all.

    ``ImageFeatureRunnerPredictor.process`` returns the batch's features as one array, and the
    generic ``apply`` only splits lists by instance, so every result carries the whole
    batch's ``(batch, 512)`` array and ``build_index`` fails with "too many values to
    unpack". Splitting the array into per-image rows is what the result should hold; it
    costs nothing measurable.
    """
    from paddlex.inference.models.image_feature.predictor import ImageFeatureRunnerPredictor

    process = ImageFeatureRunnerPredictor.process

    def process_with_rows(self, batch_data):
        output = process(self, batch_data)
        output["feature"] = list(output["feature"])
        return output

    ImageFeatureRunnerPredictor.process = process_with_rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["classify", "shitu"], required=True)
    parser.add_argument("--models", type=Path, required=True, help="folder written by build_models.py")
    parser.add_argument("--model", default="PP-LCNet_x1_0")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=None, help="only the first COUNT images (sorted by name)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pin", action="store_true", help="run on the first THREADS cores only")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])

    # PaddleX prints model-loading chatter on stdout, which is our answer channel
    with contextlib.redirect_stdout(sys.stderr):
        from paddlex import create_model, create_pipeline
        from paddlex.inference import PaddlePredictorOption

        _patch_feature_split()
        option = PaddlePredictorOption()
        option.cpu_threads = args.threads
        files = sorted(str(p) for p in args.images.iterdir()
                       if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.count]
        if args.task == "classify":
            model = create_model(args.model, model_dir=str(args.models / args.model), device="cpu",
                                 batch_size=args.batch, pp_option=option)
        else:
            config = {
                "pipeline_name": "PP-ShiTuV2", "index": None, "det_threshold": 0.5, "rec_threshold": 0.5,
                "rec_topk": 5,
                "SubModules": {
                    "Detection": {"module_name": "object_detection", "model_name": "PP-ShiTuV2_det",
                                  "model_dir": str(args.models / "PP-ShiTuV2_det"), "batch_size": args.batch},
                    "Recognition": {"module_name": "image_feature", "model_name": "PP-ShiTuV2_rec",
                                    "model_dir": str(args.models / "PP-ShiTuV2_rec"), "batch_size": args.batch},
                },
            }
            pipeline = create_pipeline(config=config, device="cpu", pp_option=option)
    index = None
    for line in sys.stdin:
        command = line.strip()
        with contextlib.redirect_stdout(sys.stderr):
            started, cpu_started = time.perf_counter(), time.process_time()
            answer: dict = {}
            if command == "run" and args.task == "classify":
                count = sum(1 for _ in model.predict(files))
            elif command == "build" and args.task == "shitu":
                index = pipeline.build_index(files, [Path(f).stem for f in files], metric_type="IP",
                                             index_type="HNSW32")
                count = len(files)
            elif command == "predict" and args.task == "shitu" and index is not None:
                results = list(pipeline.predict(files, index=index))
                count = len(results)
                answer["boxes"] = sum(len(r["boxes"]) for r in results) / max(1, count)
            elif command == "predict" and args.task == "shitu":
                answer, count = {"error": "predict needs an index: send build first"}, 0
            else:
                answer = {"error": f"unknown command {command!r} for task {args.task}"}
                count = 0
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if count:
            answer.update(ms_per_image=elapsed * 1000.0 / count, images=count, cores_busy=cpu / elapsed)
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")  # offline: no hub look-ups
    main()
