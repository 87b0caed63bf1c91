#!/usr/bin/env python3
"""Engines benchmark: end-to-end and raw ms/img for torch and ONNX Runtime on the CPU.

For each model (random weights: speed does not depend on them), CPU threads 1 and 2,
batch 1 and 8, and engine (torch eager, ONNX Runtime), it times the whole
``predict()`` over a folder of 640x480 JPEGs (decode + resize + normalise + network +
top-5), and the network alone on ONNX Runtime (``raw()`` on a preprocessed batch of
the same images). Figures are medians of ``--repeats`` runs after one warm-up run, in
ms per image; the table compares with PaddleX 3.7.2 on the same architecture and
threads and with raw ONNX Runtime.

    .venv/bin/python benchmarks/engines.py [--models PP-LCNet_x1_0 ResNet50] [--repeats 5]

Exports go to a temporary VIEWFINDER_HOME (``--home`` to keep them between runs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description, median_ms_per_image  # noqa: E402

MODELS = ("PP-LCNet_x1_0", "PP-HGNetV2-B0", "ResNet50", "PP-LCNetV2_base")
# PaddleX 3.7.2 end-to-end ms/img on this kind of 2-core machine: (model, threads, batch) -> ms
PADDLEX_MS = {
    ("PP-LCNet_x1_0", 1, 1): 18.4, ("PP-LCNet_x1_0", 1, 8): 14.4,
    ("PP-LCNet_x1_0", 2, 1): 21.5, ("PP-LCNet_x1_0", 2, 8): 15.2,
    ("PP-HGNetV2-B0", 1, 1): 41.6, ("PP-HGNetV2-B0", 1, 8): 36.6,
    ("PP-HGNetV2-B0", 2, 1): 56.5, ("PP-HGNetV2-B0", 2, 8): 60.5,
    ("ResNet50", 1, 1): 143.0, ("ResNet50", 1, 8): 129.0,
    ("ResNet50", 2, 1): 179.0, ("ResNet50", 2, 8): 155.0,
}
SPEEDUP_TARGET = 1.5
RAW_OVERHEAD_TARGET = 0.15


def raw_ms_per_image(model, batch, images: int, repeats: int) -> float:
    """Median ms/img of the network alone over ``images`` images in batches like ``batch``."""
    model.raw(batch)  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = 0
        while done < images:
            model.raw(batch)
            done += len(batch)
        samples.append((time.perf_counter() - start) * 1000.0 / done)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--engines", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", default=None, help="VIEWFINDER_HOME for the ONNX exports (default: temporary)")
    args = parser.parse_args()

    os.environ["VIEWFINDER_HOME"] = args.home or tempfile.mkdtemp(prefix="vf-bench-home-")
    import torch

    from viewfinder import create_model
    from viewfinder.io import decode_image

    # Random weights drive activations towards denormal floats, which cost 10-100x per
    # operation on x86; ONNX Runtime flushes them (our session option), so make torch do the
    # same, or the table would measure denormal arithmetic instead of the engines.
    torch.set_flush_denormal(True)
    folder = jpeg_folder(args.images)
    files = sorted(folder.glob("*.jpg"))[: args.images]
    print(f"machine: {machine_description()}; torch {torch.__version__}", end="")
    try:
        import onnxruntime

        print(f", onnxruntime {onnxruntime.__version__}")
    except ImportError:
        print()
    print(f"{len(files)} JPEGs 640x480 in {folder}; random weights; median of {args.repeats} runs after a warm-up")
    print(f"load average at start: {_load()} (other processes on the machine skew every figure)\n")
    print("| model | threads | batch | torch e2e | ORT e2e | ORT raw | ORT e2e over raw | PaddleX 3.7.2 e2e "
          "| ORT speed-up vs PaddleX |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model_name in args.models:
        for threads in args.threads:
            e2e: dict[tuple[str, int], float] = {}
            raw: dict[int, float] = {}
            for engine in args.engines:
                torch.manual_seed(0)
                model = create_model(model_name, pretrained=False, device="cpu", engine=engine, cpu_threads=threads)
                if model.engine.name != engine:
                    print(f"<!-- {model_name}: asked for {engine}, got {model.engine.name} -->")
                pixels = [decode_image(f, model.preprocess.config.min_decode_side).rgb for f in files]
                for batch_size in args.batches:
                    def run() -> int:
                        return sum(1 for r in model.predict(str(folder), batch_size=batch_size) if r.ok)

                    run()  # warm-up: allocations, thread pools, first-call costs
                    e2e[(engine, batch_size)] = median_ms_per_image(run, args.repeats)
                    if engine == "onnxruntime":
                        batch = model.preprocess(pixels[:batch_size])
                        raw[batch_size] = raw_ms_per_image(model, batch, len(files), args.repeats)
                model.close()
            for batch_size in args.batches:
                torch_ms = e2e.get(("torch", batch_size))
                ort_ms = e2e.get(("onnxruntime", batch_size))
                raw_ms = raw.get(batch_size)
                ref = PADDLEX_MS.get((model_name, threads, batch_size))
                over = f"{(ort_ms / raw_ms - 1) * 100:+.0f} %" if ort_ms and raw_ms else "-"
                speedup = f"{ref / ort_ms:.2f}x" if ref and ort_ms else "-"  # ORT: what engine="auto" runs on CPU
                cells = [f"{v:.1f}" if v else "-" for v in (torch_ms, ort_ms, raw_ms)]
                print(f"| {model_name} | {threads} | {batch_size} | {' | '.join(cells)} | {over} | "
                      f"{f'{ref:.1f}' if ref else '-'} | {speedup} |", flush=True)
    print(f"\nload average at end: {_load()}")


def _load() -> str:
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
