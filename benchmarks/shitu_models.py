#!/usr/bin/env python3
"""PP-ShiTuV2 model speed: mainbody detection (640x640) and image features (224x224), ms/img.

Uses the parity fixtures' random weights (same architecture and cost as the official
ones, and a stable weights hash so the ONNX export is made once and cached). Prints, per
CPU thread count and engine: the detector's preprocess / network / NMS split and its
end-to-end predict() ms/img over 640x480 JPEGs, and the feature model's ms per crop at
batch 1 and 4, next to the network's FLOPs.

    .venv/bin/python benchmarks/shitu_models.py [--engines torch,onnxruntime] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description, median_ms_per_image  # noqa: E402

PARITY = Path(os.environ.get("VIEWFINDER_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "parity"


def _ms(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return samples[len(samples) // 2]


def _gflops(name: str) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from viewfinder.models import get_spec

    spec = get_spec(name)
    module = spec.builder(num_classes=spec.num_classes).eval()
    height, width = spec.preprocess.input_size
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(1, 3, height, width))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="torch,onnxruntime")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from viewfinder.io import decode_image
    from viewfinder.models.factory import create_model

    folder = jpeg_folder(args.images)
    print(f"machine: {machine_description()}")
    print(f"PP-ShiTuV2_det {_gflops('PP-ShiTuV2_det'):.1f} GFLOP/img at 640x640; "
          f"PP-ShiTuV2_rec {_gflops('PP-ShiTuV2_rec'):.2f} GFLOP/crop at 224x224\n")
    print("| threads | engine | det preprocess | det network | det NMS+boxes | det predict() ms/img "
          "| rec ms/crop (batch 1) | rec ms/crop (batch 4) |")
    print("|---|---|---|---|---|---|---|---|")
    image = decode_image(str(folder / "000.jpg"), min_short_side=640)
    crops = [image.rgb[60:420, 100:400]] * 4
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for engine in args.engines.split(","):
            det = create_model("PP-ShiTuV2_det", weights=PARITY / "PP-ShiTuV2_det" / "model.pdparams",
                               engine=engine, cpu_threads=threads)
            rec = create_model("PP-ShiTuV2_rec", weights=PARITY / "PP-ShiTuV2_rec" / "model.pdparams",
                               engine=engine, cpu_threads=threads)
            batch = det.preprocess([image.rgb])
            outputs = det.engine(batch)
            params = dict(det.params)
            pre = _ms(lambda: det.preprocess([image.rgb]), args.repeats)
            net = _ms(lambda: det.engine(batch), args.repeats)
            post = _ms(lambda: det._postprocess(outputs, [image], params), args.repeats)

            def run() -> int:
                return sum(1 for r in det.predict(str(folder)) if r.ok)

            run()
            end_to_end = median_ms_per_image(run, max(1, args.repeats // 2))
            rec_1 = _ms(lambda: rec.embed(crops[:1]), args.repeats)
            rec_4 = _ms(lambda: rec.embed(crops, batch_size=4), args.repeats) / 4
            print(f"| {threads} | {det.engine.name} | {pre:.1f} | {net:.1f} | {post:.1f} | {end_to_end:.1f} "
                  f"| {rec_1:.1f} | {rec_4:.1f} |", flush=True)


if __name__ == "__main__":
    main()
