#!/usr/bin/env python3
"""Does ONNX Runtime use the cores it is given? PP-ShiTuV2_det (640x640) alone, per spinning mode.

For each ``$VIEWFINDER_ORT_SPINNING`` mode (``off``: worker threads always sleep, the setting
before issue 30; ``run``: they spin while a run is in progress and sleep between runs, the
default now; ``always``: ONNX Runtime's own default) and thread count: ms per image, cores busy
(process CPU s / wall s) and the share of the CPU time spent by the calling thread (1/threads
when the work is split evenly). Modes alternate within each repeat, so machine load hits all
alike. Random weights (seeded; the network's cost does not depend on them); fp32, or int8 with
``--int8`` (the same int8 file the benchmarks use, calibrated on the sample photos).

    .venv/bin/python benchmarks/ort_threads.py [--threads 1 2] [--repeats 5] [--images 8] [--int8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description  # noqa: E402

MODES = ("off", "run", "always")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of each thread of this process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[tid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args()

    import torch

    from viewfinder import create_model
    from viewfinder.engines import cpu_features
    from viewfinder.engines.onnx_engine import OnnxRuntimeEngine
    from viewfinder.io import decode_image

    torch.manual_seed(0)
    calibration = sorted(str(p) for p in (Path(__file__).resolve().parent.parent / ".assets" / "photos").iterdir())
    if args.int8:
        os.environ["VIEWFINDER_INT8_UNVALIDATED"] = "1"  # random weights: time it whatever its check says
    detector = create_model("PP-ShiTuV2_det", pretrained=False, device="cpu", engine="onnxruntime",
                            precision="int8" if args.int8 else "fp32", calibration=calibration)
    paths = sorted(jpeg_folder(max(16, args.images)).glob("*.jpg"))[: args.images]
    batches = [detector.preprocess([decode_image(str(p)).rgb]) for p in paths]
    print(f"machine: {machine_description()}; load average at start {os.getloadavg()[0]:.1f}")
    print(f"CPU: {cpu_features.describe()}; PP-ShiTuV2_det {detector.precision}, {len(batches)} images per pass, "
          f"median of {args.repeats} passes\n")
    print("| threads | spinning | ms/img | cores busy | calling thread's share of the CPU time |")
    print("|---|---|---|---|---|")
    me = str(threading.get_native_id())
    for threads in args.threads:
        engines = {}
        for mode in MODES if threads > 1 else ("run",):
            os.environ["VIEWFINDER_ORT_SPINNING"] = mode  # read when the session is created
            engines[mode] = OnnxRuntimeEngine(detector.engine.path, cpu_threads=threads,
                                              output_kind=detector.engine.output_kind)
        os.environ.pop("VIEWFINDER_ORT_SPINNING", None)
        samples: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in engines}
        for engine in engines.values():
            engine(batches[0])  # warm-up
        for _ in range(args.repeats):
            for mode, engine in engines.items():
                before, start, cpu = thread_cpu_seconds(), time.perf_counter(), time.process_time()
                for batch in batches:
                    engine(batch)
                wall, used = time.perf_counter() - start, time.process_time() - cpu
                after = thread_cpu_seconds()
                mine = after.get(me, 0.0) - before.get(me, 0.0)
                samples[mode].append((wall * 1000 / len(batches), used / wall, mine / used if used else 1.0))
        for mode, rows in samples.items():
            ms, cores, share = (statistics.median(r[i] for r in rows) for i in range(3))
            label = mode if threads > 1 else "- (one thread)"
            print(f"| {threads} | {label} | {ms:.1f} | {cores:.2f} | {100 * share:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
