#!/usr/bin/env python3
"""int8 by OpenVINO's own quantiser (NNCF), judged by viewfinder's accuracy check: does a better
quantiser than ours (``precision="int8"``, ONNX Runtime) get a real model past issue 30's bar?

For each model (the same four as ``benchmarks/int8_accuracy.py``) the fp32 ONNX export is
quantised by ``nncf.quantize`` (post-training, per preset, calibrated on the same photos as
``precision="int8"``), run by OpenVINO with its float parts in bf16 (fp32 on a CPU without
bf16), and checked against fp32 by ``viewfinder.models.int8_check`` (the check ``int8`` and
``bf16`` must pass), plus the network's time against plain bf16 (median ms, ``--threads``).
``--accuracy-control N`` also runs ``nncf.quantize_with_accuracy_control`` for CenterNet: int8
layers put back to float, most harmful first, for at most N rounds, until its share of boxes
matched is within 2 points of fp32.

NNCF is not a viewfinder dependency (this is a probe of whether adopting it would pay):

    .venv/bin/python -m venv /tmp/nncf-env && /tmp/nncf-env/bin/pip install nncf==3.4.0
    echo $PWD/.venv/lib/python3.11/site-packages > /tmp/nncf-env/lib/python3.11/site-packages/vf.pth
    /tmp/nncf-env/bin/python benchmarks/int8_nncf.py [--presets PERFORMANCE MIXED] [--accuracy-control 3]
"""
from __future__ import annotations

import argparse
import copy
import logging
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import infer_median_ms  # noqa: E402

BOX_DROP = 0.02  # accuracy control: the share of boxes matched may drop by this much (the check's bar)


def makers() -> dict:
    import int8_accuracy as ia
    from viewfinder import create_model
    from viewfinder.models.onnx_detector import create_onnx_detector

    parity = ia.SHARED / "parity"
    return {
        "CenterNet (real, COCO)": lambda: create_onnx_detector(
            ia.SHARED / "assets" / "centernet.onnx", ia.CENTERNET_SPEC, device="cpu", precision="fp32"),
        "PP-ShiTuV2_det (parity weights)": lambda: create_model(
            "PP-ShiTuV2_det", weights=parity / "PP-ShiTuV2_det" / "model.pdparams", engine="onnxruntime", device="cpu"),
        "MobileNetV2_x1_0 features (real, ImageNet)": lambda: create_model(
            "MobileNetV2_x1_0", weights=ia.WEIGHTS / "mobilenet_v2-b0353104.pth", task="image_feature",
            engine="onnxruntime", device="cpu"),
        "PP-ShiTuV2_rec (parity weights)": lambda: create_model(
            "PP-ShiTuV2_rec", weights=parity / "PP-ShiTuV2_rec" / "model.pdparams", engine="onnxruntime", device="cpu"),
    }


def engine_over(compiled, like):
    """An OpenVINO engine over an already compiled model, fed and read like ``like`` (ONNX Runtime's)."""
    from viewfinder.engines.openvino_engine import OpenVinoEngine

    engine = OpenVinoEngine.__new__(OpenVinoEngine)
    engine.compiled, engine.path, engine.module, engine.device = compiled, Path(like.path), None, None
    engine.cpu_threads, engine.precision = like.cpu_threads, "bf16"
    engine.input_name, engine.input_dtype = like.input_name, like.input_dtype
    engine.output_names, engine.output_kind = list(like.output_names), like.output_kind
    engine._ports = {name: port for port in compiled.outputs for name in port.get_names()}
    engine._local = threading.local()
    return engine


def with_engine(fp32, engine):
    """``fp32`` over another (int8) engine; a user's ONNX detector keeps its feed wrapper."""
    candidate = copy.copy(fp32)
    candidate.precision = "int8"  # how the check's summary names it
    if hasattr(fp32.engine, "inner"):
        wrapper = copy.copy(fp32.engine)
        wrapper.inner = engine
        candidate.engine = wrapper
    else:
        candidate.engine = engine
    return candidate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["PERFORMANCE", "MIXED"], choices=["PERFORMANCE", "MIXED"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accuracy-control", type=int, default=0, metavar="ROUNDS",
                        help="also try NNCF's accuracy-controlled int8 on CenterNet, at most ROUNDS rounds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise SystemExit(f"needs nncf and openvino ({exc}); see this script's docstring") from None
    nncf.set_log_level(logging.ERROR)  # its progress lines would interleave with the table
    import int8_accuracy as ia

    from viewfinder.engines import cpu_features
    from viewfinder.models.bf16 import onnx_runtime_engine
    from viewfinder.models.int8_check import check_detector_anchors, check_for
    from viewfinder.models.precision import _decode, calibration_for, split_photos

    split = split_photos(ia.calibration_photos())
    hint = "bf16" if cpu_features.bf16_arithmetic() else "f32"
    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": args.threads,
              "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    print(f"CPU: {cpu_features.describe()}; NNCF {nncf.__version__}, OpenVINO {ov.__version__}; float parts in {hint}; "
          f"{len(split.calibration)} calibration photos, {len(split.validation)} kept back for the check; "
          f"network ms: median of 15, {args.threads} thread(s)\n")
    print(f"| model | NNCF preset | the check | network ms, int8 / {hint} |\n|---|---|---|---|")
    core = ov.Core()
    for label, make in makers().items():
        fp32 = make()
        source = onnx_runtime_engine(fp32.engine)
        feeds = [next(iter(f.values())) for f in calibration_for(fp32, split.calibration).feeds()]
        model = core.read_model(str(source.path))
        plain = core.compile_model(model, "CPU", config)
        validation, gallery = list(_decode(fp32, split.validation)), list(_decode(fp32, split.calibration))
        check = check_for(fp32)
        for preset in args.presets:
            quantized = nncf.quantize(model, nncf.Dataset(feeds), preset=getattr(nncf.QuantizationPreset, preset),
                                      subset_size=len(feeds))
            compiled = core.compile_model(quantized, "CPU", config)
            candidate = with_engine(fp32, engine_over(compiled, source))
            result = check(fp32, candidate, validation, gallery)
            extra = ""
            if label.startswith("PP-ShiTuV2_det"):
                extra = f"; {check_detector_anchors(fp32, candidate, validation).summary}"
            elif "features" in label or "_rec" in label:
                extra = f"; {ia.demo_pairs(fp32, candidate)[0]}"
            print(f"| {label} | {preset} | {'passes' if result.ok else 'fails'}: {result.summary}{extra} | "
                  f"{infer_median_ms(compiled, feeds[0]):.1f} / {infer_median_ms(plain, feeds[0]):.1f} |", flush=True)
        if args.accuracy_control and label.startswith("CenterNet"):
            reference = [r["boxes"] for r in fp32.predict_images(validation)]
            frozen = copy.copy(fp32)
            frozen.predict_images = lambda images, **_: [{"boxes": b} for b in reference]  # fp32 once, not per round

            def matched_share(compiled_model, _data) -> float:
                found = check(frozen, with_engine(fp32, engine_over(compiled_model, source)), validation, gallery)
                return float(found.figures.get("matched_share", 0.0))

            from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

            start = time.time()
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(feeds), nncf.Dataset([0]), validation_fn=matched_share, max_drop=BOX_DROP,
                drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.MIXED, subset_size=len(feeds),
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    max_num_iterations=args.accuracy_control))
            compiled = core.compile_model(quantized, "CPU", config)
            result = check(fp32, with_engine(fp32, engine_over(compiled, source)), validation, gallery)
            print(f"| {label} | accuracy control, <= {args.accuracy_control} rounds ({time.time() - start:.0f} s) | "
                  f"{'passes' if result.ok else 'fails'}: {result.summary} | "
                  f"{infer_median_ms(compiled, feeds[0]):.1f} / {infer_median_ms(plain, feeds[0]):.1f} |", flush=True)


if __name__ == "__main__":
    main()
