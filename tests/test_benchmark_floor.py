"""benchmarks/shitu_floor.py's arithmetic: the MACs it counts from an ONNX graph and the probe
networks it times (the floor it prints is only as right as these counts)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.shitu_floor import PROBE_DEPTH, graph_macs, probe_model  # noqa: E402


def _small_network(path: Path) -> Path:
    """3x3 stem (3 -> 8, 10x10), a depthwise 3x3, a pointwise 8 -> 16, pooling, a 16 -> 4 MatMul.
    Batch left dynamic, as exports have it."""
    rng = np.random.default_rng(0)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "stem"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "dw"], ["b"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "pw"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["d"]),
        helper.make_node("Flatten", ["d"], ["e"]),
        helper.make_node("MatMul", ["e", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight("stem", (8, 3, 3, 3)), weight("dw", (8, 1, 3, 3)), weight("pw", (16, 8, 1, 1)), weight("fc", (16, 4))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_graph_macs_counts_each_kind_at_batch_one(tmp_path: Path) -> None:
    macs = graph_macs(_small_network(tmp_path / "small.onnx"))
    assert macs == {
        "other conv": 8 * 100 * 3 * 3 * 3,  # outputs x (input channels x kernel) each
        "depthwise": 8 * 100 * 1 * 3 * 3,
        "pointwise": 16 * 100 * 8,
        "matmul": 4 * 16,
    }


def test_probe_networks_run_and_count_what_graph_macs_counts(tmp_path: Path) -> None:
    float_path, macs = probe_model(tmp_path, channels=16, side=4, quantized=False)
    int8_path, int8_macs = probe_model(tmp_path, channels=16, side=4, quantized=True)
    assert macs == int8_macs == 16 * 16 * 4 * 4 * PROBE_DEPTH
    assert sum(graph_macs(float_path).values()) == macs
    int8_ops = {node.op_type for node in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= int8_ops  # a QDQ graph, as an int8 export is
    feed = np.random.default_rng(1).random((1, 16, 4, 4), dtype=np.float32)
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": feed})[0]
               for p in (float_path, int8_path)]
    assert outputs[0].shape == outputs[1].shape == (1, 16, 4, 4)
    assert np.isfinite(outputs[0]).all() and np.abs(outputs[0]).max() > 0
