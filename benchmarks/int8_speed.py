#!/usr/bin/env python3
"""int8 against fp32 for one model's network alone (no decoding, NMS or crops): ONNX Runtime
sessions over the fp32 export and its int8 file (the recipe ``precision="int8"`` uses), run
alternately in one process at 1 and 2 threads, median ms per run. On a shared machine only the
ratio within one run means anything.

    .venv/bin/python benchmarks/int8_speed.py                 # PP-ShiTuV2_det, random weights
    .venv/bin/python benchmarks/int8_speed.py MobileNetV2_x1_0 --repeats 30
    .venv/bin/python benchmarks/int8_speed.py centernet
    .venv/bin/python benchmarks/int8_speed.py --recipe all-convs     # every convolution int8
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build(name: str, precision: str):
    import int8_accuracy as ia
    from viewfinder import create_model
    from viewfinder.models.onnx_detector import create_onnx_detector

    photos = ia.calibration_photos()
    if name == "centernet":
        return create_onnx_detector(ia.SHARED / "assets" / "centernet.onnx", ia.CENTERNET_SPEC, device="cpu",
                                    precision=precision, calibration=photos)
    if name == "MobileNetV2_x1_0":
        return create_model(name, weights=ia.WEIGHTS / "mobilenet_v2-b0353104.pth", task="image_feature",
                            engine="onnxruntime", device="cpu", precision=precision, calibration=photos)
    parity = ia.SHARED / "parity" / name / "model.pdparams"
    weights = {"weights": parity} if parity.exists() else {"pretrained": False}
    return create_model(name, engine="onnxruntime", device="cpu", precision=precision, calibration=photos, **weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="PP-ShiTuV2_det")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--all-convs", action="store_true",
                        help="also time every convolution in int8 with MinMax ranges (the recipe before this one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ["VIEWFINDER_INT8_UNVALIDATED"] = "1"  # time the int8 file even where its check fails
    import onnxruntime as ort

    from viewfinder.engines import cpu_features
    from viewfinder.engines.onnx_engine import session_options
    from viewfinder.io import decode_image

    from viewfinder.engines.quantize import QuantSettings
    from viewfinder.models import precision

    fp32, int8 = build(args.model, "fp32"), build(args.model, "int8")
    variants = {"fp32": fp32, "int8": int8}
    if args.all_convs:
        default, precision.DEFAULT_QUANT = precision.DEFAULT_QUANT, QuantSettings()
        variants["int8 all convs"] = build(args.model, "int8")
        precision.DEFAULT_QUANT = default
    import int8_accuracy as ia

    photo = ia.calibration_photos()[0]
    image = decode_image(photo, min_short_side=fp32.preprocess.config.min_decode_side)
    feed = fp32.engine.feeds(fp32.preprocess([image.held_pixels]))
    print(f"CPU: {cpu_features.describe()}; onnxruntime {ort.__version__}; {args.model}; "
          f"int8 file {Path(int8.engine.path).name} (check: {(int8.int8_check or {}).get('summary')})")
    for threads in (int(t) for t in args.threads.split(",")):
        sessions = {name: ort.InferenceSession(str(model.engine.path), session_options(threads),
                                               providers=["CPUExecutionProvider"])
                    for name, model in variants.items()}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for session in sessions.values():  # warm-up
            session.run(None, feed)
        for _ in range(args.repeats):
            for name, session in sessions.items():  # alternating: both see the same machine load
                started = time.perf_counter()
                session.run(None, feed)
                times[name].append(1000 * (time.perf_counter() - started))
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"{threads} thread(s), median of {args.repeats}: " + ", ".join(
            f"{name} {ms:.1f} ms" + ("" if name == "fp32" else f" ({ms / median['fp32']:.2f}x fp32)")
            for name, ms in median.items()))


if __name__ == "__main__":
    main()
