"""PaddleX's runtime options (enable_hpi, pp_option, hpi_config): honoured or refused, never dropped."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from viewfinder import create_model, create_pipeline
from viewfinder.engines.paddle_options import RuntimeOptions, resolve_runtime
from viewfinder.engines.torch_engine import TorchEngine
from viewfinder.errors import ConfigError


# ------------------------------------------------------------------ the mapping itself
@pytest.mark.parametrize("kwargs, expected", [
    ({"use_hpip": True}, RuntimeOptions(engine="onnxruntime", use_hpip=True)),
    ({"enable_hpi": True}, RuntimeOptions(engine="onnxruntime", use_hpip=True)),
    ({"enable_hpi": True, "hpi_config": {"backend": "paddle"}}, RuntimeOptions(engine="torch", use_hpip=True)),
    ({"use_hpip": True, "hpi_config": {"backend": "onnxruntime", "backend_config": {"cpu_num_threads": 2}}},
     RuntimeOptions(engine="onnxruntime", cpu_threads=2, use_hpip=True)),
    ({"pp_option": {"run_mode": "paddle", "cpu_threads": 3, "device": "cpu"}},
     RuntimeOptions(device="cpu", engine="torch", cpu_threads=3)),
    ({"pp_option": {"run_mode": "mkldnn", "device_type": "cpu"}}, RuntimeOptions(device="cpu")),
    ({"pp_option": SimpleNamespace(run_mode="paddle_fp32", cpu_threads=1, device_type="cpu", device_id=None)},
     RuntimeOptions(device="cpu", engine="torch", cpu_threads=1)),
    ({"device": "cpu", "pp_option": {"device": "gpu:0"}}, RuntimeOptions(device="cpu")),  # the argument wins
    ({"engine": "onnx", "use_hpip": True}, RuntimeOptions(engine="onnxruntime", use_hpip=True)),
])
def test_honoured(kwargs, expected):
    assert resolve_runtime(**kwargs) == expected


@pytest.mark.parametrize("kwargs, message", [
    ({"pp_option": {"run_mode": "trt_fp16"}}, "no TensorRT engine"),
    ({"pp_option": {"run_mode": "trt_int8"}}, "no TensorRT engine"),
    ({"pp_option": {"run_mode": "mkldnn_bf16"}}, "precision='bf16'"),
    ({"pp_option": {"run_mode": "paddle_fp16", "device": "cpu"}}, "needs a CUDA device"),
    ({"pp_option": {"run_mode": "mkldnn", "device": "gpu:0"}}, "CPU mode"),
    ({"pp_option": {"run_mode": "turbo"}}, "not a PaddleX run mode"),
    ({"pp_option": {"cpu_thread": 2}}, r"unknown key\(s\) \['cpu_thread'\]"),
    ({"pp_option": {"trt_dynamic_shapes": {"x": [[1, 3, 224, 224]] * 3}}}, "TensorRT"),
    ({"pp_option": {"cpu_threads": 0}}, "positive integer"),
    ({"hpi_config": {"backend": "onnxruntime"}}, "only applies with high-performance inference"),
    ({"use_hpip": True, "hpi_config": {"backend": "tensorrt"}}, "not available in viewfinder"),
    ({"use_hpip": True, "hpi_config": {"backend": "openvino"}}, "not available in viewfinder"),
    ({"use_hpip": True, "hpi_config": {"backend": "onnxruntime", "backend_config": {"graph_opt": 1}}},
     "no counterpart"),
    ({"use_hpip": True, "hpi_config": {"auto_config": False}}, "a backend is needed"),
    ({"use_hpip": True, "hpi_config": {"turbo": True}}, r"unknown key\(s\) \['turbo'\]"),
    ({"use_hpip": True, "enable_hpi": False}, "disagree"),
    ({"use_hpip": True, "engine": "torch"}, "disagree"),
    ({"use_hpip": True, "pp_option": {"run_mode": "paddle"}}, "give one"),
])
def test_refused_with_a_reason(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve_runtime(**kwargs)


def test_hpi_licence_keys_of_paddlex_3_0_are_accepted_and_logged(caplog):
    options = resolve_runtime(use_hpip=True, hpi_config={"serial_number": "XXXX", "update_license": False})
    assert options.engine == "onnxruntime"
    assert "needs none" in caplog.text


# ------------------------------------------------------------------ create_model
def test_create_model_honours_pp_option():
    model = create_model("PP-LCNet_x0_25", pretrained=False, pp_option={"run_mode": "paddle", "device": "cpu"})
    assert isinstance(model.engine, TorchEngine) and str(model.device) == "cpu"
    assert "pp_option" not in model.params  # used, not carried along as an inference parameter


def test_create_model_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="TensorRT"):
        create_model("PP-LCNet_x0_25", pretrained=False, pp_option={"run_mode": "trt_fp32"})
    with pytest.raises(ConfigError, match="only applies with high-performance inference"):
        create_model("PP-LCNet_x0_25", pretrained=False, hpi_config={"backend": "onnxruntime"})


# ------------------------------------------------------------------ create_pipeline (arguments and YAML)
@pytest.fixture()
def recorded(monkeypatch):
    """create_model as the pipelines call it, recorded instead of run (no model is built)."""
    calls: list[dict] = []

    def fake_create_model(**kwargs):
        calls.append(kwargs)
        return SimpleNamespace(model_name=kwargs.get("model_name"))

    monkeypatch.setattr("viewfinder.pipelines.base.create_model", fake_create_model)
    return calls


def test_enable_hpi_argument_is_use_hpip(recorded):
    pipeline = create_pipeline("image_classification", enable_hpi=True, device="cpu")
    assert pipeline.use_hpip and recorded[-1]["engine"] == "onnxruntime"


def test_pp_option_argument_reaches_the_model(recorded):
    create_pipeline("image_classification", pp_option={"run_mode": "paddle", "cpu_threads": 2, "device": "cpu"})
    assert recorded[-1]["engine"] == "torch" and recorded[-1]["cpu_threads"] == 2 and recorded[-1]["device"] == "cpu"


def test_runtime_options_from_the_yaml(recorded, tmp_path):
    config = tmp_path / "ic.yaml"
    config.write_text(yaml.safe_dump({
        "pipeline_name": "image_classification", "device": "cpu", "enable_hpi": True,
        "hpi_config": {"backend": "paddle"},
        "SubModules": {"ImageClassification": {"model_name": "PP-LCNet_x0_25"}}}))
    pipeline = create_pipeline(str(config))
    assert pipeline.use_hpip and recorded[-1]["engine"] == "torch" and recorded[-1]["device"] == "cpu"
    # the argument wins over the YAML, so the YAML's hpi_config would be unused: refused, not dropped
    with pytest.raises(ConfigError, match="only applies with high-performance inference"):
        create_pipeline(str(config), use_hpip=False)


def test_pipeline_refuses_unsupported_options(recorded):
    with pytest.raises(ConfigError, match="TensorRT"):
        create_pipeline("image_classification", pp_option={"run_mode": "trt_fp16"})
    with pytest.raises(ConfigError, match=r"unknown parameter 'batch_sise'"):
        create_pipeline("image_classification", batch_sise=2)  # a typo is not silently dropped
    with pytest.raises(ConfigError, match=r"unknown parameter 'index_dir'"):
        create_pipeline("image_classification", index_dir="idx")  # only PP-ShiTuV2 takes it
    assert recorded == []
