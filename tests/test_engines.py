"""torch and ONNX Runtime give the same predictions; exports are cached, reused and chosen sensibly."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from viewfinder import create_model, create_pipeline
from viewfinder.engines import choose_engine, physical_cores
from viewfinder.engines import export as export_module
from viewfinder.engines.onnx_engine import OnnxRuntimeEngine, session_options
from viewfinder.engines.threads import resolve_cpu_threads
from viewfinder.errors import ConfigError
from viewfinder.io import decode_image

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="module")
def engines_home(tmp_path_factory, mobilenet_v2_weights):
    """One VIEWFINDER_HOME for this module, holding the real MobileNetV2 weights, so exports are shared."""
    home = tmp_path_factory.mktemp("engines-home")
    (home / "weights").mkdir()
    shutil.copyfile(mobilenet_v2_weights, home / "weights" / MOBILENET_V2_FILE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIEWFINDER_HOME", str(home))
        patch.delenv("VIEWFINDER_ENGINE", raising=False)
        yield home


def _lcnet(engine: str, **kwargs):
    torch.manual_seed(0)  # the same random weights for both engines (and the same cache key)
    return create_model("PP-LCNet_x1_0", pretrained=False, device="cpu", engine=engine, **kwargs)


def _assert_same_top5(first, second):
    assert first["class_ids"].tolist() == second["class_ids"].tolist()
    assert first["label_names"] == second["label_names"]
    np.testing.assert_allclose(first["scores"], second["scores"], atol=1e-3, rtol=0)


def test_mobilenet_v2_real_weights_same_top5(engines_home, photos):
    eager = create_model("MobileNetV2_x1_0", device="cpu", engine="torch")
    fast = create_model("MobileNetV2_x1_0", device="cpu", engine="onnxruntime")
    assert (eager.engine.name, fast.engine.name) == ("torch", "onnxruntime")
    ours = next(fast.predict(str(photos / "chelsea.png"), topk=5))
    reference = next(eager.predict(str(photos / "chelsea.png"), topk=5))
    _assert_same_top5(ours, reference)
    assert "cat" in ours["label_names"][0]  # chelsea is a tabby cat: a real-weights sanity check
    assert ours["scores"][0] > 0.5
    exports = list((engines_home / "onnx").glob("MobileNetV2_x1_0-*.onnx"))
    assert len(exports) == 1 and exports[0].with_suffix(".json").is_file()


def test_lcnet_random_weights_same_top5_and_outputs(engines_home, photos):
    eager, fast = _lcnet("torch"), _lcnet("onnxruntime")
    assert fast.engine.name == "onnxruntime"
    inputs = [str(photos / name) for name in ("chelsea.png", "coffee.png", "dog.jpg")]
    for ours, reference in zip(fast.predict(inputs, batch_size=3), eager.predict(inputs, batch_size=3)):
        _assert_same_top5(ours, reference)
    # Random-weight scores are all ~1/1000, so also hold the raw logits to the export tolerance.
    batch = fast.preprocess([decode_image(path).rgb for path in inputs])
    expected, got = eager.raw(batch), fast.raw(batch)
    assert np.max(np.abs(got - expected)) <= 1e-4 * np.max(np.abs(expected))


def test_cached_export_is_reused_without_exporting(engines_home, photos, monkeypatch):
    _lcnet("onnxruntime")  # exported by the test above, or now

    def no_export(*args, **kwargs):
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr("viewfinder.engines.onnx_cache.export_onnx", no_export)
    again = _lcnet("onnxruntime")
    assert again.engine.name == "onnxruntime"
    assert next(again.predict(str(photos / "dog.jpg"))).ok


def test_auto_engine_choice(engines_home, monkeypatch):
    assert create_model("MobileNetV2_x1_0", device="cpu").engine.name == "onnxruntime"
    # random weights would export anew on every run: auto keeps them on torch
    assert create_model("PP-LCNet_x0_25", pretrained=False, device="cpu").engine.name == "torch"
    monkeypatch.setenv("VIEWFINDER_ENGINE", "torch")
    assert create_model("MobileNetV2_x1_0", device="cpu").engine.name == "torch"
    # a GPU runs torch (no CUDA needed to decide)
    assert choose_engine("auto", torch.device("cuda", 0)) == "torch"
    assert choose_engine("ort", torch.device("cpu")) == "onnxruntime"
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'"):
        create_model("PP-LCNet_x0_25", pretrained=False, device="cpu", engine="tensorrt")


def test_use_hpip_runs_onnxruntime(engines_home, photos):
    torch.manual_seed(0)
    config = {"SubModules": {"ImageClassification": {"model_name": "PP-LCNet_x1_0"}}}
    pipeline = create_pipeline("image_classification", config=config, device="cpu", pretrained=False, use_hpip=True)
    assert pipeline.model.engine.name == "onnxruntime"
    eager = create_pipeline("image_classification", config=config, device="cpu", pretrained=False,
                            engine="torch")
    assert eager.model.engine.name == "torch"
    assert next(pipeline.predict(str(photos / "chelsea.png"))).ok


def test_thread_settings(engines_home, monkeypatch):
    engine = _lcnet("onnxruntime", cpu_threads=1).engine
    assert isinstance(engine, OnnxRuntimeEngine)
    options = engine.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    # idle workers sleep (measured faster than spinning during runs: issue 30, benchmarks/shitu.py --ab)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert physical_cores() >= 1
    monkeypatch.setenv("VIEWFINDER_ORT_SPINNING", "run")  # spin during runs only, for A/B timings
    run = session_options(2)
    assert run.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert run.get_session_config_entry("session.force_spinning_stop") == "1"
    assert run.intra_op_num_threads == 2
    monkeypatch.setenv("VIEWFINDER_ORT_SPINNING", "sometimes")
    with pytest.raises(ConfigError, match="VIEWFINDER_ORT_SPINNING"):
        session_options(2)
    assert resolve_cpu_threads(None) == physical_cores()
    with pytest.raises(ConfigError, match="cpu_threads must be a positive integer"):
        resolve_cpu_threads(0)


def test_reparameterised_export_matches_torch(tmp_path):
    """PP-LCNetV2's multi-branch depthwise blocks are folded before export; outputs still match."""
    import timm

    torch.manual_seed(0)
    module = timm.create_model("lcnetv2_small", pretrained=False, num_classes=10).eval()
    prepared = export_module.prepare_for_export(module)
    assert any(getattr(m, "dw_conv_list", None) is not None for m in module.modules())
    assert all(getattr(m, "dw_conv_list", None) is None for m in prepared.modules())
    settings = export_module.ExportSettings(input_size=(64, 64))
    layout = export_module.export_onnx(module, tmp_path / "lcnetv2.onnx", settings)
    report = export_module.validate_export(module, OnnxRuntimeEngine(tmp_path / "lcnetv2.onnx", cpu_threads=1),
                                           settings)
    assert layout.kind == "tensor" and report.ok, report
