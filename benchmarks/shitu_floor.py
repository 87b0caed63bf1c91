#!/usr/bin/env python3
"""How fast PP-ShiTuV2's predict could be on this CPU at all: the networks' arithmetic against
the fastest rate this CPU multiplies at, per precision (issue 30's 3x target).

For the one-crop workload's two networks (PP-ShiTuV2_det at 640x640, PP-ShiTuV2_rec at 224x224,
the exports ``benchmarks/shitu.py`` runs) it prints:

* multiply-accumulates per image, counted from the ONNX graphs (convolutions and matrix products);
* the CPU's practical peak rate: a large pointwise convolution (the operation that is ~95 % of
  both networks' arithmetic) compiled by OpenVINO, in fp32, bf16 (where the CPU has AVX512-BF16
  or AMX) and int8 (a QDQ graph, as an int8 export is), at ``--threads`` threads;
* each network's own rate in OpenVINO bf16 (or fp32) and its share of that peak;
* the floor: the two networks' arithmetic at the peak rate, i.e. predict's ms/img if nothing but
  perfectly efficient arithmetic ran, and with ``--paddlex-ms`` (PaddleX's predict ms/img from
  ``benchmarks/shitu.py --paddlex``, same machine) the largest speed-up each precision allows.

    .venv/bin/python benchmarks/shitu_floor.py --threads 2 --paddlex-ms 174.0

Needs OpenVINO (``pip install 'viewfinder[openvino]'``) and the seeded photos (``make seed``).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import infer_median_ms  # noqa: E402

#: the probes: chains of 8 pointwise convolutions, (channels, map side); small maps and many channels
#: keep the data in cache, so they run at the arithmetic's rate, not memory's (a 256-channel
#: 160x160 map ran at half the rate). The fastest probe is the peak.
PROBES = ((512, 40), (1024, 20))
PROBE_DEPTH = 8


def graph_macs(path: Path) -> dict[str, float]:
    """Multiply-accumulates of one run at batch 1, by kind: pointwise, depthwise, other conv, matmul."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)}
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    macs = {"pointwise": 0.0, "depthwise": 0.0, "other conv": 0.0, "matmul": 0.0}
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or not all(out):
            continue
        if node.op_type == "Conv" and node.input[1] in weights:
            kernel = weights[node.input[1]]
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            kind = "depthwise" if group > 1 else "pointwise" if kernel[2:] == [1, 1] else "other conv"
            macs[kind] += float(np.prod(out)) * float(np.prod(kernel[1:]))
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in weights:
            macs["matmul"] += float(np.prod(out)) * float(weights[node.input[1]][0])
    return macs


def probe_model(folder: Path, channels: int, side: int, quantized: bool) -> tuple[Path, float]:
    """An ONNX file with a chain of pointwise convolutions (QDQ int8, as an int8 export has them,
    when ``quantized``) and its MACs per run."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, source = [], [], "x"
    if quantized:
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
                  numpy_helper.from_array(np.full(channels, 0.001, np.float32), "w_scale"),
                  numpy_helper.from_array(np.zeros(channels, np.int8), "w_zero")]
    for layer in range(PROBE_DEPTH):
        weight = (rng.standard_normal((channels, channels, 1, 1)) / np.sqrt(channels)).astype(np.float32)
        if quantized:
            inits.append(numpy_helper.from_array(np.clip(weight / 0.001, -127, 127).astype(np.int8), f"w{layer}_q"))
            nodes += [helper.make_node("QuantizeLinear", [source, "x_scale", "x_zero"], [f"x{layer}_q"]),
                      helper.make_node("DequantizeLinear", [f"x{layer}_q", "x_scale", "x_zero"], [f"x{layer}_dq"]),
                      helper.make_node("DequantizeLinear", [f"w{layer}_q", "w_scale", "w_zero"], [f"w{layer}"],
                                       axis=0)]
            source = f"x{layer}_dq"
        else:
            inits.append(numpy_helper.from_array(weight, f"w{layer}"))
        nodes.append(helper.make_node("Conv", [source, f"w{layer}"], [f"y{layer}"]))
        source = f"y{layer}"
    shape = [1, channels, side, side]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(source, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = folder / f"probe-{channels}x{side}-{'int8' if quantized else 'float'}.onnx"
    onnx.save(model, str(path))
    return path, float(channels * channels * side * side * PROBE_DEPTH)


def median_ms(core, path: Path, precision: str, threads: int, repeats: int) -> float:
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})
    shape = [d if d > 0 else 1 for d in compiled.inputs[0].get_partial_shape().get_min_shape()]
    return infer_median_ms(compiled, np.random.default_rng(1).random(shape, dtype=np.float32), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--paddlex-ms", type=float, default=None,
                        help="PaddleX's predict ms/img on this machine (benchmarks/shitu.py --paddlex)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    try:
        import openvino as ov
    except ImportError:
        raise SystemExit("needs OpenVINO: pip install 'viewfinder[openvino]'") from None

    from benchmarks.common import machine_description
    from benchmarks.shitu import ONE_CROP, calibration_photos, make_pipeline, workloads
    from viewfinder.engines import cpu_features

    pipeline = make_pipeline(ONE_CROP, workloads("onnxruntime")[ONE_CROP], args.threads, "fp32", calibration_photos())
    networks = {"PP-ShiTuV2_det (640x640)": Path(pipeline.detector.engine.path),
                "PP-ShiTuV2_rec (224x224)": Path(pipeline.recognizer.engine.path)}
    bf16 = cpu_features.bf16_arithmetic() is not None
    int8 = cpu_features.int8_dot_product()
    print(f"machine: {machine_description()}\nCPU: {cpu_features.describe()}; OpenVINO {ov.__version__}; "
          f"{args.threads} thread(s); median of {args.repeats} runs\n")
    core = ov.Core()
    # (precision, file kind, OpenVINO's inference precision): int8's float parts in bf16 where the CPU has it
    runs = [("fp32", False, "f32")] + [("bf16", False, "bf16")] * bf16 + [("int8", True, "bf16" if bf16 else "f32")] * bool(int8)
    peaks: dict[str, float] = {}
    print(f"peak rate: chains of {PROBE_DEPTH} pointwise convolutions, GMAC/s")
    print("| channels x map | " + " | ".join(name for name, _, _ in runs) + " |")
    print("|---" * (len(runs) + 1) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for channels, side in PROBES:
            rates = []
            for name, quantized, hint in runs:
                path, macs = probe_model(Path(tmp), channels, side, quantized)
                rates.append(macs / median_ms(core, path, hint, args.threads, args.repeats) / 1e6)
                peaks[name] = max(peaks.get(name, 0.0), rates[-1])
            print(f"| {channels} x {side}x{side} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    print("peak: " + ", ".join(f"{name} {rate:.0f} GMAC/s ({rate / peaks['fp32']:.2f}x fp32)"
                                for name, rate in peaks.items()))

    own = "bf16" if bf16 else "fp32"
    print(f"\n| network | GMAC per image (pointwise / all) | OpenVINO {own} ms | GMAC/s | share of the {own} peak |")
    print("|---|---|---|---|---|")
    total = measured = 0.0
    for name, path in networks.items():
        macs = graph_macs(path)
        all_macs = sum(macs.values())
        total += all_macs
        ms = median_ms(core, path, "bf16" if bf16 else "f32", args.threads, args.repeats)
        measured += ms
        rate = all_macs / ms / 1e6
        print(f"| {name} | {macs['pointwise'] / 1e9:.2f} / {all_macs / 1e9:.2f} | {ms:.1f} | {rate:.0f} | "
              f"{100 * rate / peaks[own]:.0f} % |")

    print(f"\nfloor: both networks' {total / 1e9:.2f} GMAC per image at the peak rate (decoding, resizing, "
          "crops, NMS and the search not counted)")
    print("| precision | floor ms/img | largest speed-up over PaddleX |\n|---|---|---|")

    def ceiling(ms: float) -> str:
        return f"{args.paddlex_ms / ms:.2f}x (PaddleX {args.paddlex_ms:.1f} ms/img)" if args.paddlex_ms else "-"

    for name, rate in peaks.items():
        floor = total / rate / 1e6
        print(f"| {name}, at the peak rate | {floor:.1f} | {ceiling(floor)} |")
    print(f"| {own}, at the networks' own rate (the two networks alone, one after the other) | {measured:.1f} | "
          f"{ceiling(measured)} |")


if __name__ == "__main__":
    main()
