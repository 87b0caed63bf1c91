#!/usr/bin/env python3
"""End-to-end classification speed: decode + preprocess + infer + postprocess, ms/img.

Runs the image_classification pipeline over a folder of 640x480 JPEGs at batch 1 and 8,
CPU threads 1 and 2, for PP-LCNet_x1_0 with random weights (speed does not depend on
them), and prints a table next to PaddleX 3.7.2's figures from issue 3 (another day; see
``engines.py --paddlex`` for PaddleX timed in the same run).

    .venv/bin/python benchmarks/classify.py [--model PP-LCNet_x1_0] [--engine torch] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description, median_ms_per_image  # noqa: E402

# PaddleX 3.7.2, same model and random weights, as issue 3 quotes them (another day; ms/img).
# For PaddleX timed in the same run: make paddlex-env, then benchmarks/engines.py --paddlex.
PADDLEX_MS = {("PP-LCNet_x1_0", 1, 1): 18.4, ("PP-LCNet_x1_0", 1, 8): 14.4,
              ("PP-LCNet_x1_0", 2, 1): 21.5, ("PP-LCNet_x1_0", 2, 8): 15.2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="PP-LCNet_x1_0")
    parser.add_argument("--engine", default=None, help="torch, onnxruntime or auto (default: the library default)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from viewfinder import create_pipeline

    folder = jpeg_folder(args.images)
    print(f"machine: {machine_description()}")
    print(f"model: {args.model} (random weights), {args.images} JPEGs 640x480 in {folder}, "
          f"median of {args.repeats} runs\n")
    print("| threads | batch | engine | viewfinder ms/img | PaddleX 3.7.2 ms/img | speed-up |")
    print("|---|---|---|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        entry = {"model_name": args.model, "batch_size": 1}
        if args.engine:
            entry["engine"] = args.engine
        pipeline = create_pipeline("image_classification", config={"SubModules": {"ImageClassification": entry}},
                                   device="cpu", pretrained=False, cpu_threads=threads)
        engine = pipeline.model.engine.name
        for batch in (1, 8):
            def run() -> int:
                return sum(1 for r in pipeline.predict(str(folder), batch_size=batch) if r.ok)

            run()  # warm-up: allocations, first-call costs
            ms = median_ms_per_image(run, args.repeats)
            ref = PADDLEX_MS.get((args.model, threads, batch))
            ref_text = f"{ref:.1f}" if ref else "-"
            speedup = f"{ref / ms:.2f}x" if ref else "-"
            print(f"| {threads} | {batch} | {engine} | {ms:.1f} | {ref_text} | {speedup} |", flush=True)


if __name__ == "__main__":
    main()
