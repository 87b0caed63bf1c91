#!/usr/bin/env python3
"""Engines benchmark: end-to-end and raw ms/img for torch and ONNX Runtime on the CPU.

For each model (random weights: speed does not depend on them), CPU threads 1 and 2,
batch 1 and 8, and engine (torch eager, ONNX Runtime), it times the whole
``predict()`` over a folder of 640x480 JPEGs (decode + resize + normalise + network +
top-5), and the network alone on ONNX Runtime (``raw()`` on a preprocessed batch of
the same images). Figures are medians of ``--repeats`` runs after one warm-up run, in
ms per image; each repeat runs the three measurements of a row in turn, so a change in
the machine's load hits them alike. The table compares with PaddleX 3.7.2 on the same
architecture and threads (target: 1.5x faster) and with raw ONNX Runtime (target at
batch 8: end to end within 15 %).

With ``--paddlex`` (after ``make paddlex-env``) PaddleX itself is timed in the same run, in
its own environment, on the same files and in the same repeat loop, twice: as configured
(``cpu_threads`` = the row's threads; it keeps both cores busy regardless) and pinned to
that many cores. Every figure carries its cores busy (CPU seconds / wall seconds), and the
last column compares CPU time per image (ms x cores busy) with pinned PaddleX: our "1
thread" decodes in a pool beside ONNX Runtime's thread, so it keeps 1.1-1.4 cores busy. Without
``--paddlex`` the PaddleX column shows figures measured on another day (issue 3).

    .venv/bin/python benchmarks/engines.py [--models PP-LCNet_x1_0 ResNet50] [--repeats 5] [--paddlex]

Exports go to a temporary VIEWFINDER_HOME (``--home`` to keep them between runs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Timed, jpeg_folder, machine_description, medians, time_pass  # noqa: E402
from benchmarks.paddlex import client as paddlex  # noqa: E402
from benchmarks.paddlex.client import PaddleXWorker  # noqa: E402

MODELS = ("PP-LCNet_x1_0", "PP-HGNetV2-B0", "ResNet50", "PP-LCNetV2_base")
# PaddleX 3.7.2 end-to-end ms/img as issue 3 quotes them (another day, another machine of
# this kind): (model, threads, batch) -> ms. Used only when PaddleX is not timed in the run.
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


def raw_runner(model: Any, batch: Any, images: int) -> Callable[[], int]:
    """The network alone on ``images`` images, in batches like ``batch``."""

    def run() -> int:
        done = 0
        while done < images:
            model.raw(batch)
            done += len(batch)
        return done

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--engines", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", default=None, help="VIEWFINDER_HOME for the ONNX exports (default: temporary)")
    paddlex.add_arguments(parser)
    args = parser.parse_args()
    paddlex.check_arguments(args)

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
    print(f"{len(files)} JPEGs 640x480 in {folder}; random weights; ms/img: median of {args.repeats} runs after a "
          "warm-up (best run in brackets); ratios from the medians; [cores busy] = CPU seconds / wall seconds")
    if args.paddlex:
        print("PaddleX 3.7.2 timed in this run (its own environment, same files, same repeat loop): as configured "
              "(cpu_threads = threads) and pinned to that many cores")
    else:
        print("PaddleX 3.7.2: figures from issue 3 (another day; rerun with --paddlex to time it here)")
    print(f"load average at start: {_load()} (other processes on the machine skew every figure)\n")
    print("| model | threads | batch | torch e2e | ORT e2e | ORT raw | ORT e2e over raw (bs 8: ≤ 15 %) "
          "| PaddleX e2e | PaddleX pinned | ORT speed-up vs PaddleX (≥ 1.5x) | vs PaddleX pinned "
          "| CPU time per image, PaddleX pinned / ORT |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    paths = [str(f) for f in files]
    notes: list[str] = []
    for model_name in args.models:
        for threads in args.threads:
            models = {}
            for engine in args.engines:
                torch.manual_seed(0)
                started = time.perf_counter()
                model = create_model(model_name, pretrained=False, device="cpu", engine=engine, cpu_threads=threads)
                if model.engine.name == "onnxruntime":
                    record = json.loads(Path(model.engine.path).with_suffix(".json").read_text())
                    notes.append(f"{model_name}, {threads} thread(s): create_model {time.perf_counter() - started:.1f} s "
                                 f"(includes export + validation the first time); export vs torch max abs diff "
                                 f"{record['max_abs_diff']:.2g}, {record['max_rel_diff']:.2g} of the output range")
                if model.engine.name != engine:
                    print(f"<!-- {model_name}: asked for {engine}, got {model.engine.name} -->")
                models[engine] = model
            for batch_size in args.batches:
                # One runner per column; every repeat runs each once, in turn, so a change in the
                # machine's load hits all columns of a row alike.
                runners: dict[str, Callable[[], Timed]] = {}
                for engine, model in models.items():
                    runners[engine] = (lambda m=model, b=batch_size: time_pass(
                        lambda: sum(1 for r in m.predict(paths, batch_size=b) if r.ok)))
                if "onnxruntime" in models:
                    ort = models["onnxruntime"]
                    pixels = [decode_image(f, ort.preprocess.config.min_decode_side).rgb for f in files[:batch_size]]
                    raw = raw_runner(ort, ort.preprocess(pixels), len(files))
                    runners["raw"] = lambda run=raw: time_pass(run)
                workers = []
                if args.paddlex:
                    for name, pin in (("paddlex", False), ("paddlex_pinned", True)):
                        worker = PaddleXWorker(args.paddlex, args.paddlex_models, "classify", folder, model=model_name,
                                               threads=threads, batch=batch_size, count=len(files), pin=pin)
                        workers.append(worker)
                        runners[name] = lambda w=worker: w.timed("run")
                samples: dict[str, list[Timed]] = {name: [] for name in runners}
                for run in runners.values():
                    run()  # warm-up: allocations, thread pools, first-call costs
                for _ in range(args.repeats):
                    for name, run in runners.items():
                        samples[name].append(run())
                for worker in workers:
                    worker.close()
                print(_row(model_name, threads, batch_size, samples), flush=True)
            for model in models.values():
                model.close()
    print(f"\nload average at end: {_load()}\n")
    for note in notes:
        print(f"- {note}")


def _row(model_name: str, threads: int, batch_size: int, samples: dict[str, list[Timed]]) -> str:
    """A table row: medians [cores busy], the best run in brackets (what the machine does when others pause)."""
    ms, cores = medians(samples)

    def cell(name: str) -> str:
        if name not in ms:
            return "-"
        return f"{ms[name]:.1f} ({min(t.ms for t in samples[name]):.1f}) [{cores[name]:.1f}]"

    def speedup(reference: float | None) -> str:
        ort_ms = ms.get("onnxruntime")  # what engine="auto" runs on CPU
        if not reference or not ort_ms:
            return "-"
        return f"{reference / ort_ms:.2f}x " + ("✓" if reference / ort_ms >= SPEEDUP_TARGET else "✗")

    ort_ms, raw_ms = ms.get("onnxruntime"), ms.get("raw")
    over = ort_ms / raw_ms - 1 if ort_ms and raw_ms else None
    over_text = "-" if over is None else f"{over * 100:+.0f} %" + (
        (" ✓" if over <= RAW_OVERHEAD_TARGET else " ✗") if batch_size == 8 else "")
    if "paddlex" in ms:
        paddlex, paddlex_text = ms["paddlex"], cell("paddlex")
    else:
        paddlex = PADDLEX_MS.get((model_name, threads, batch_size))
        paddlex_text = f"{paddlex:.1f} (issue 3)" if paddlex else "-"
    cpu_ratio = "-"
    if "paddlex_pinned" in ms and "onnxruntime" in ms:  # CPU seconds per image, both sides
        pinned_cpu = ms["paddlex_pinned"] * cores["paddlex_pinned"]
        cpu_ratio = f"{pinned_cpu / (ms['onnxruntime'] * cores['onnxruntime']):.2f}x"
    cells = [cell("torch"), cell("onnxruntime"), cell("raw"), over_text, paddlex_text, cell("paddlex_pinned"),
             speedup(paddlex), speedup(ms.get("paddlex_pinned")), cpu_ratio]
    return f"| {model_name} | {threads} | {batch_size} | {' | '.join(cells)} |"


def _load() -> str:
    try:
        return " / ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
