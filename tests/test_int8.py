"""int8 precision (issue 30): the CPU check, quantisation + cache, the accuracy check that accepts a good
int8 model and refuses a broken one (fp32 then, with a warning), and where int8 is refused."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from viewfinder import create_model
from viewfinder.engines import cpu_features
from viewfinder.engines import quantize as quantize_module
from viewfinder.engines.onnx_engine import OnnxRuntimeEngine
from viewfinder.errors import ConfigError
from viewfinder.models import precision as precision_module
from viewfinder.models.feature import FeaturePredictor
from viewfinder.models.int8_check import check_detector, iou_matrix, match_boxes
from viewfinder.models.precision import apply_precision, normalize_precision, split_photos
from viewfinder.models.preprocess import Preprocessor, PreprocessConfig
from viewfinder.models.registry import ModelSpec

VNNI_CPU = frozenset({"sse4_2", "avx2", "fma", "avx512f", "avx512_vnni"})
AVX2_CPU = frozenset({"sse4_2", "avx2", "fma"})


@pytest.fixture()
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given /proc/cpuinfo flags."""

    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(cpu_features, "cpu_flags", lambda: flags)

    return use


class TinyFeatures(nn.Module):
    """A small conv feature network: quick to export and quantise, and int8-friendly (ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        # the default recipe keeps the first two (early) and the last convolution float; the middle two are int8
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Conv2d(64, 64, 1), nn.ReLU(),
                                  nn.Conv2d(64, 64, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture()
def tiny(tmp_home, tmp_path):
    """A FeaturePredictor over a tiny exported network, and the ``rebuild`` apply_precision needs."""
    torch.manual_seed(0)
    path = tmp_path / "tiny-0123456789abcdef-0123456789.onnx"  # named like our exports
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as engines/export.py uses
        torch.onnx.export(TinyFeatures().eval(), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["x"],
                          output_names=["features"], dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    config = PreprocessConfig(resize_short=None, crop=None, resize=(64, 64), backend="cv2")
    spec = ModelSpec(name="tiny", task="image_feature", builder=TinyFeatures, preprocess=config, num_classes=64)

    def build(engine, precision="fp32", int8_check=None):
        return FeaturePredictor(spec, engine, Preprocessor(config), None, batch_size=4, precision=precision,
                                int8_check=int8_check)

    return build(OnnxRuntimeEngine(path, cpu_threads=1)), build


def test_cpu_flags_from_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n\n"
                    "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    monkeypatch.setattr(cpu_features, "CPUINFO", info)
    cpu_features._cpuinfo.cache_clear()
    try:
        assert "avx512_vnni" in cpu_features.cpu_flags()
        assert cpu_features.int8_dot_product() == "avx512_vnni"
        assert cpu_features.int8_kernel_class() == "vnni"
        assert cpu_features.describe() == ("Test CPU 9000; int8 dot product: avx512_vnni; "
                                           "bf16: none (no AVX512-BF16/AMX)")
        info.write_text("processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse avx2\n")
        cpu_features._cpuinfo.cache_clear()
        assert cpu_features.int8_dot_product() is None and cpu_features.int8_kernel_class() == "avx2"
        assert "no VNNI/AMX" in cpu_features.describe()
    finally:
        cpu_features._cpuinfo.cache_clear()


def test_precision_names_and_photo_split(photos, monkeypatch):
    assert normalize_precision(None) == "fp32"
    monkeypatch.setenv("VIEWFINDER_PRECISION", "auto")
    assert normalize_precision(None) == "auto" and normalize_precision("INT8") == "int8"
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        normalize_precision("int4")
    split = split_photos(photos)
    assert len(split.calibration) >= 4 and len(split.validation) >= 2
    assert not set(split.calibration) & set(split.validation)  # the check never sees calibration photos
    assert split_photos([photos / "dog.jpg", photos / "kite.jpg"]) is None  # too few
    with pytest.raises(ConfigError, match="does not exist"):
        split_photos(photos / "nowhere")


def test_auto_stays_fp32_without_vnni(tiny, photos, cpu, monkeypatch):
    predictor, build = tiny
    cpu(AVX2_CPU)
    monkeypatch.setattr(precision_module, "load_or_quantize", lambda *a, **k: pytest.fail("must not quantise"))
    chosen = apply_precision(predictor, "auto", photos, build)
    assert chosen is predictor and chosen.precision == "fp32" and chosen.int8_check is None


def test_int8_accepts_a_good_model_and_caches_it(tiny, photos, cpu, tmp_home, monkeypatch):
    predictor, build = tiny
    cpu(VNNI_CPU)
    chosen = apply_precision(predictor, "auto", photos, build)
    assert chosen.precision == "int8", chosen.int8_check
    check = chosen.int8_check
    assert check["ok"] and check["figures"]["cosine_min"] >= 0.99, check
    assert check["figures"]["top1_unchanged"] == check["figures"]["photos"]
    assert isinstance(chosen.engine, OnnxRuntimeEngine) and "-int8-" in chosen.engine.path.name
    assert chosen.engine.path.parent == tmp_home / "onnx"
    # the QDQ file quantises the convolutions
    ops = {node.op_type for node in onnx.load(str(chosen.engine.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    features = chosen.embed([np.full((80, 90, 3), 120, np.uint8)])
    assert features.shape == (1, 64) and np.isclose(np.linalg.norm(features), 1.0, atol=1e-4)
    # second time: the cached file and its stored check, neither quantised nor checked again
    monkeypatch.setattr(quantize_module, "quantize_file", lambda *a, **k: pytest.fail("quantised again"))
    monkeypatch.setattr(precision_module, "check_for", lambda p: lambda *a, **k: pytest.fail("checked again"))
    again = apply_precision(predictor, "int8", photos, build)
    assert again.precision == "int8" and again.engine.path == chosen.engine.path


def test_another_recipe_makes_another_int8_file(tiny, photos, cpu, tmp_home, monkeypatch):
    """A changed quantisation recipe never reuses the int8 file (or stored check) of the old one."""
    predictor, build = tiny
    cpu(VNNI_CPU)
    first = apply_precision(predictor, "int8", photos, build)
    calls = []
    real = quantize_module.quantize_file
    monkeypatch.setattr(quantize_module, "quantize_file", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    other = quantize_module.QuantSettings(keep_float=("first", "last"))
    monkeypatch.setattr(precision_module, "DEFAULT_QUANT", other)
    second = apply_precision(predictor, "int8", photos, build)
    assert calls == [other] and second.engine.path != first.engine.path
    assert first.engine.path.exists() and second.engine.path.exists()  # both kept (two per source)


def _break_weights(path: Path) -> None:
    """Negate every int8 weight tensor: a quantised file that runs but computes nonsense."""
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.INT8 and tensor.dims:
            values = onnx.numpy_helper.to_array(tensor)
            tensor.CopyFrom(onnx.numpy_helper.from_array((-values.astype(np.int16)).clip(-127, 127).astype(np.int8),
                                                         tensor.name))
    onnx.save(model, str(path))


def test_int8_refuses_a_broken_model_and_runs_fp32(tiny, photos, cpu, monkeypatch, caplog):
    predictor, build = tiny
    cpu(VNNI_CPU)
    real = quantize_module.quantize_file

    def broken(source, destination, calibration, settings):
        used = real(source, destination, calibration, settings)
        _break_weights(destination)
        return used

    monkeypatch.setattr(quantize_module, "quantize_file", broken)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        chosen = apply_precision(predictor, "int8", photos, build)
    assert chosen.precision == "fp32" and chosen.engine is predictor.engine
    assert chosen.int8_check["ok"] is False
    assert "failed its accuracy check against fp32" in caplog.text and "running fp32" in caplog.text
    # the failed result is stored with the int8 file: not checked again, still fp32
    monkeypatch.setattr(precision_module, "check_for", lambda p: lambda *a, **k: pytest.fail("checked again"))
    assert apply_precision(predictor, "auto", photos, build).precision == "fp32"
    # a speed run may keep the unvalidated int8 model, with a warning
    monkeypatch.setenv("VIEWFINDER_INT8_UNVALIDATED", "1")
    assert apply_precision(predictor, "int8", photos, build).precision == "int8"


def test_int8_needs_calibration_photos(tiny, cpu, tmp_path, monkeypatch):
    predictor, build = tiny
    cpu(VNNI_CPU)
    monkeypatch.setenv("VIEWFINDER_CALIBRATION", str(tmp_path / "none"))
    assert apply_precision(predictor, "auto", None, build).precision == "fp32"  # auto: quietly fp32
    with pytest.raises(ConfigError, match="int8 needs calibration photos"):
        apply_precision(predictor, "int8", None, build)


def test_int8_refused_on_torch_and_for_tasks_without_a_check(photos, tmp_home):
    with pytest.raises(ConfigError, match="precision 'int8' starts from the model's ONNX export"):
        create_model("PP-LCNet_x1_0", pretrained=False, device="cpu", engine="torch", precision="int8")
    with pytest.raises(ConfigError, match="no accuracy check"):
        create_model("PP-LCNet_x1_0", pretrained=False, device="cpu", engine="onnxruntime", precision="int8",
                     calibration=photos)
    # auto on torch: fp32, nothing refused
    model = create_model("PP-LCNet_x1_0", pretrained=False, device="cpu", engine="torch", precision="auto")
    assert model.precision == "fp32"


class _FakeDetector:
    """Stands in for a DetectionPredictor in check_detector: fixed boxes per image."""

    def __init__(self, boxes: list[list[dict]]) -> None:
        self.boxes = boxes

    def predict_images(self, images):
        return [{"boxes": b} for b in self.boxes]

    def resolve_params(self, given):
        return {"threshold": 0.5}


def _box(x1, y1, x2, y2, cls_id=0):
    return {"cls_id": cls_id, "coordinate": [x1, y1, x2, y2], "score": 0.9}


def test_box_matching_rules():
    assert iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10]])).round(3).tolist() == \
        [[1.0, 0.333]]
    ref = [_box(0, 0, 100, 100), _box(200, 200, 300, 300)]
    assert match_boxes(ref, [_box(1, 1, 100, 100), _box(200, 200, 300, 300)]) == 2
    assert match_boxes(ref, [_box(0, 0, 100, 100, cls_id=1), _box(200, 200, 300, 300)]) == 1  # label differs
    assert match_boxes(ref, [_box(10, 10, 100, 100), _box(200, 200, 300, 300)]) == 1  # IoU 0.81 < 0.9
    assert match_boxes(ref, [_box(0, 0, 100, 100)] * 2) == 1  # one int8 box cannot match twice
    images = [None] * 50
    fp32 = _FakeDetector([[_box(0, 0, 100, 100)] for _ in images])
    same = check_detector(fp32, _FakeDetector([[_box(0, 0, 100, 101)] for _ in images]), images)
    assert same.ok and same.figures["matched_share"] == 1.0
    one_missing = check_detector(fp32, _FakeDetector([[]] + [[_box(0, 0, 100, 100)]] * 49), images)
    assert one_missing.ok and one_missing.figures["matched_share"] == 0.98  # 49 of 50
    extra = check_detector(fp32, _FakeDetector([[_box(0, 0, 100, 100), _box(300, 300, 400, 400)]] * 2 +
                                               [[_box(0, 0, 100, 100)]] * 48), images)
    assert not extra.ok and "96.2 % (50 of 52" in extra.summary  # extra int8 boxes count too
