#!/usr/bin/env python3
"""End-to-end multi-label speed: decode + 448x448 resize + infer + sigmoid/threshold, ms/img.

Runs the image_multilabel_classification pipeline over a folder of 640x480 JPEGs at
batch 1 and 8, CPU threads 1 and 2, for PP-LCNet_x1_0_ML with random weights (speed does
not depend on them; seeded so the ONNX export is cached), on every engine available
(torch, and onnxruntime when installed), and prints a Markdown table: wall-clock ms per
image end to end, the process's CPU ms per image (all threads; robust when other jobs
share the machine), the network alone on a ready batch, and the 1-minute load average.

PaddleX publishes 13.16 ms (normal) / 5.61 ms (high-performance) per image for
PP-LCNet_x1_0_ML on an 8-thread Intel Xeon Gold 6271C (inference only, batch 1).

    .venv/bin/python benchmarks/multilabel.py [--model PP-LCNet_x1_0_ML] [--engines torch,onnxruntime]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description, median_ms_per_image  # noqa: E402

PADDLEX_MS = {"PP-LCNet_x1_0_ML": (13.16, 5.61)}  # normal / high-performance mode, 8 threads


def _engines(requested: str | None) -> list[str]:
    if requested:
        return [e.strip() for e in requested.split(",") if e.strip()]
    engines = ["torch"]
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("viewfinder.engines.select"):
        engines.append("onnxruntime")
    return engines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="PP-LCNet_x1_0_ML")
    parser.add_argument("--engines", default=None, help="comma-separated (default: torch, plus onnxruntime if present)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()

    import numpy as np
    import torch

    from viewfinder import create_pipeline

    folder = jpeg_folder(args.images)
    print(f"machine: {machine_description()}")
    print(f"model: {args.model} (random weights) at 448x448, {args.images} JPEGs 640x480 in {folder}, "
          f"median of {args.repeats} runs")
    reference = PADDLEX_MS.get(args.model)
    if reference:
        print(f"PaddleX published: {reference[0]} ms normal / {reference[1]} ms high-performance "
              "(8-thread Xeon Gold 6271C, inference only)")
    print("\n| engine | threads | batch | end-to-end ms/img | img/s | CPU ms/img | network only ms/img | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for engine in _engines(args.engines):
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            torch.manual_seed(0)  # the same random weights every run: the ONNX export is made once
            entry = {"model_name": args.model, "batch_size": 1}
            if engine != "torch":
                entry["engine"] = engine
            pipeline = create_pipeline("image_multilabel_classification",
                                       config={"SubModules": {"ImageMultiLabelClassification": entry}},
                                       device="cpu", pretrained=False, cpu_threads=threads)
            used = pipeline.model.engine.name
            for batch in (int(b) for b in args.batches.split(",")):
                def run() -> int:
                    return sum(1 for r in pipeline.predict(str(folder), batch_size=batch) if r.ok)

                run()  # warm-up: allocations, first-call costs
                cpu_samples: list[float] = []

                def timed_run() -> int:
                    # CPU time of the whole process (all threads): unlike wall time, barely
                    # affected by other jobs competing for the cores
                    start = time.process_time()
                    images = run()
                    cpu_samples.append((time.process_time() - start) * 1000.0 / max(1, images))
                    return images

                ms = median_ms_per_image(timed_run, args.repeats)
                cpu_ms = statistics.median(cpu_samples)
                # the network alone on a preprocessed batch: what PaddleX's published figure measures
                tensor = np.random.default_rng(0).standard_normal((batch, 3, 448, 448), dtype=np.float32)

                def forward() -> int:
                    for _ in range(max(1, 16 // batch)):
                        pipeline.model.raw(tensor)
                    return max(1, 16 // batch) * batch

                forward()
                net_ms = median_ms_per_image(forward, args.repeats)
                load = os.getloadavg()[0]
                print(f"| {used} | {threads} | {batch} | {ms:.1f} | {1000.0 / ms:.1f} | {cpu_ms:.1f} | {net_ms:.1f} "
                      f"| {load:.1f} |", flush=True)


if __name__ == "__main__":
    main()
