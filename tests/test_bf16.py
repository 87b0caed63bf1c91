"""bf16 precision (issue 30): OpenVINO runs a model's ONNX export in bfloat16 where the CPU has bf16
arithmetic, only after the same accuracy check as int8 passed; a model that fails runs fp32 with a
warning, and ``auto`` never tries bf16 on a CPU without it."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from test_int8 import TinyFeatures, cpu, tiny  # noqa: F401  (fixtures)

from viewfinder import create_model
from viewfinder.engines import cpu_features
from viewfinder.engines import openvino_engine as openvino_module
from viewfinder.engines.onnx_engine import OnnxRuntimeEngine
from viewfinder.engines.openvino_engine import OpenVinoEngine
from viewfinder.errors import ConfigError
from viewfinder.models import bf16 as bf16_module
from viewfinder.models import precision as precision_module
from viewfinder.models.precision import apply_precision, normalize_precision

BF16_CPU = frozenset({"sse4_2", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"})
VNNI_CPU = frozenset({"sse4_2", "avx2", "fma", "avx512f", "avx512_vnni"})
AVX2_CPU = frozenset({"sse4_2", "avx2", "fma"})


def test_bf16_flags_and_names(cpu):  # noqa: F811
    cpu(BF16_CPU)
    assert cpu_features.bf16_arithmetic() == "avx512_bf16" and cpu_features.bf16_kernel_class() == "avx512bf16"
    cpu(frozenset({"amx_bf16", "avx512_bf16"}))
    assert cpu_features.bf16_arithmetic() == "amx_bf16"
    cpu(VNNI_CPU)
    assert cpu_features.bf16_arithmetic() is None
    assert normalize_precision("BF16") == "bf16" and normalize_precision("bfloat16") == "bf16"


def test_openvino_engine_runs_the_export_like_onnx_runtime(tiny):  # noqa: F811
    predictor, _ = tiny
    ort_engine = predictor.engine
    batch = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    expected = ort_engine(batch)
    fp32 = OpenVinoEngine.like(ort_engine, "fp32")
    assert fp32.name == "openvino" and fp32.output_names == ort_engine.output_names
    np.testing.assert_allclose(fp32(batch), expected, rtol=1e-4, atol=1e-4)
    bf16 = OpenVinoEngine.like(ort_engine, "bf16")
    got = bf16(batch[:1])
    assert got.shape == (1, 64) and got.dtype == np.float32  # a batch size it has not seen yet
    assert np.abs(got - expected[:1]).max() < 0.05 * np.abs(expected).max() + 1e-3
    with pytest.raises(Exception, match="unknown precision 'int4'"):
        OpenVinoEngine.like(ort_engine, "int4")


def test_bf16_accepts_a_good_model_and_caches_the_check(tiny, photos, cpu, tmp_home, monkeypatch):  # noqa: F811
    predictor, build = tiny
    cpu(BF16_CPU)
    chosen = apply_precision(predictor, "bf16", photos, build)
    assert chosen.precision == "bf16" and isinstance(chosen.engine, OpenVinoEngine), chosen.int8_check
    check = chosen.int8_check
    assert check["ok"] and check["figures"]["cosine_min"] >= 0.99 and check["figures"]["top1_unchanged"] == \
        check["figures"]["photos"]
    features = chosen.embed([np.full((80, 90, 3), 120, np.uint8)])
    assert features.shape == (1, 64) and np.isclose(np.linalg.norm(features), 1.0, atol=1e-3)
    records = list((tmp_home / "onnx").glob("*-bf16-*.json")) or list(predictor.engine.path.parent.glob("*-bf16-*.json"))
    assert len(records) == 1
    # the second time the stored result decides: no second check
    monkeypatch.setattr(bf16_module, "check_for", lambda p: lambda *a, **k: pytest.fail("checked again"))
    assert apply_precision(predictor, "auto", photos, build).precision == "bf16"


def _noisy_twin(engine):
    """An OpenVINO engine that computes nonsense: the check must refuse it."""
    twin = OpenVinoEngine.like(engine, "bf16")
    real_call = twin.__call__
    rng = np.random.default_rng(1)

    class Noisy:
        name = "openvino"

        def __getattr__(self, key):
            return getattr(twin, key)

        def __call__(self, batch):
            out = real_call(batch)
            return out + rng.normal(0, 3 * np.abs(out).max(), out.shape).astype(np.float32)

    return Noisy()


def test_bf16_refuses_a_broken_model_and_runs_fp32(tiny, photos, cpu, tmp_home, monkeypatch, caplog):  # noqa: F811
    predictor, build = tiny
    cpu(BF16_CPU)
    monkeypatch.setattr(bf16_module, "openvino_twin", _noisy_twin)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        chosen = apply_precision(predictor, "bf16", photos, build)
    assert chosen.precision == "fp32" and chosen.engine is predictor.engine
    assert chosen.int8_check["ok"] is False
    assert "bf16 failed its accuracy check against fp32" in caplog.text and "running fp32" in caplog.text
    # auto: bf16 failed (stored), so it goes on to int8, which this model passes on a VNNI CPU
    monkeypatch.setattr(bf16_module, "check_for", lambda p: lambda *a, **k: pytest.fail("checked again"))
    assert apply_precision(predictor, "auto", photos, build).precision == "int8"
    monkeypatch.setenv("VIEWFINDER_INT8_UNVALIDATED", "1")  # speed runs may keep it, with a warning
    assert apply_precision(predictor, "bf16", photos, build).precision == "bf16"


def test_auto_never_tries_bf16_without_bf16_arithmetic(tiny, photos, cpu, tmp_home, monkeypatch, caplog):  # noqa: F811
    predictor, build = tiny
    monkeypatch.setattr(bf16_module, "openvino_twin", lambda e: pytest.fail("must not build an OpenVINO engine"))
    cpu(VNNI_CPU)
    assert apply_precision(predictor, "auto", photos, build).precision == "int8"
    cpu(AVX2_CPU)
    monkeypatch.setattr(precision_module, "load_or_quantize", lambda *a, **k: pytest.fail("must not quantise"))
    assert apply_precision(predictor, "auto", photos, build).precision == "fp32"
    # asked for explicitly on such a CPU: fp32, saying why
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        chosen = apply_precision(predictor, "bf16", photos, build)
    assert chosen is predictor and "no bf16 arithmetic" in caplog.text


def test_bf16_without_openvino_or_photos_is_a_clear_error(tiny, photos, cpu, tmp_path, monkeypatch):  # noqa: F811
    predictor, build = tiny
    cpu(BF16_CPU)
    monkeypatch.setenv("VIEWFINDER_CALIBRATION", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="too few"):
        apply_precision(predictor, "bf16", None, build)
    assert apply_precision(predictor, "auto", None, build).precision == "fp32"  # auto: quietly fp32
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    assert not openvino_module.openvino_available()
    with pytest.raises(ConfigError, match=r"pip install 'viewfinder\[openvino\]'"):
        apply_precision(predictor, "bf16", photos, build)


def test_bf16_refused_on_torch(photos):
    with pytest.raises(ConfigError, match="precision 'bf16' starts from the model's ONNX export"):
        create_model("MobileNetV2_x1_0", pretrained=False, engine="torch", precision="bf16", calibration=photos)


def test_a_users_onnx_detector_runs_bf16_with_its_own_feed(shared_dir, photos, cpu, tmp_home):
    """CenterNet (real COCO weights, NHWC input): the bf16 twin keeps the file's feed and passes the box check."""
    from viewfinder.models.onnx_detector import create_onnx_detector

    cpu(BF16_CPU)
    spec = {"decoding": "boxes_scores_classes", "input_name": "tower_0/images:0", "output": "tower_0/detections",
            "layout": "NHWC", "size": [512, 512], "channel_order": "RGB", "labels": "coco80",
            "class_agnostic": True, "keep_top_k": 10, "threshold": 0.3}
    path = shared_dir / "assets" / "centernet.onnx"
    fp32 = create_onnx_detector(path, spec, device="cpu")
    bf16 = create_onnx_detector(path, spec, device="cpu", precision="bf16", calibration=photos)
    assert bf16.precision == "bf16" and bf16.engine.name == "openvino", bf16.int8_check
    assert isinstance(bf16.engine.inner, OpenVinoEngine) and isinstance(fp32.engine.inner, OnnxRuntimeEngine)
    assert bf16.int8_check["figures"]["matched_share"] >= 0.98
    from viewfinder.io import decode_image

    image = decode_image(str(photos / "dog.jpg"))
    ref, got = fp32.predict_images([image])[0]["boxes"], bf16.predict_images([image])[0]["boxes"]
    assert ref and [b["label"] for b in got] == [b["label"] for b in ref]
