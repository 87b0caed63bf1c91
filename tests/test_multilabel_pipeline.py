"""The multi-label pipeline: names, YAML, CLI, bring-your-own ONNX model on real photos, bad input."""
from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from viewfinder import create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError, ViewfinderError, WeightsNotFoundError
from viewfinder.pipelines import PIPELINE_NAMES, default_config_text


@pytest.fixture(scope="module")
def centernet_spec(shared_dir) -> dict:
    """CenterNet's per-class heat-map maximum as an 80-way multi-label score (see ../shared/reference/assets.md)."""
    return {
        "onnx": str(shared_dir / "assets" / "centernet.onnx"),
        "name": "CenterNet-heatmap",
        "labels": "coco80",
        "input": {"layout": "NHWC", "color": "RGB", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]},
        "output": {"name": "tower_0/keypoints", "class_axis": -1, "reduce": "max", "activation": "none"},
    }


def _onnx_config(spec) -> dict:
    return {"SubModules": {"ImageMultiLabelClassification": {"model_name": "ONNXMultiLabel", "spec": spec,
                                                             "threshold": 0.3}}}


@pytest.fixture(scope="module")
def onnx_pipeline(centernet_spec):
    return create_pipeline("image_multilabel_classification", config=_onnx_config(centernet_spec))


@pytest.fixture(scope="module")
def zoo_pipeline():
    # random weights: the plumbing is under test here; accuracy is the ONNX tests' job
    return create_pipeline("multi_label_image_classification", device="cpu", pretrained=False)


def test_real_photos_through_onnx_model(onnx_pipeline, photos):
    dog, person = list(onnx_pipeline.predict([str(photos / "dog.jpg"), str(photos / "person.jpg")]))
    assert {"dog", "bicycle", "car"} <= set(dog["label_names"])
    scores = dict(zip(dog["label_names"], dog["scores"].tolist()))
    # ../shared/reference/assets.md: dog.jpg -> car .56, bicycle .51, dog .42
    assert scores["car"] == pytest.approx(0.56, abs=0.02)
    assert scores["bicycle"] == pytest.approx(0.51, abs=0.02)
    assert scores["dog"] == pytest.approx(0.42, abs=0.02)
    assert min(dog["scores"]) > 0.3
    assert {"person", "dog"} <= set(person["label_names"])
    assert onnx_pipeline.model.model_name == "CenterNet-heatmap"


def test_onnx_threshold_overrides_and_batches(onnx_pipeline, photos):
    inputs = [str(photos / "dog.jpg")] * 3
    strict = list(onnx_pipeline.predict(inputs, threshold={"default": 0.5, 16: 0.4}, batch_size=2))
    assert len(strict) == 3
    assert all(r["label_names"] == ["car", "bicycle", "dog"] for r in strict)
    assert list(onnx_pipeline.predict(inputs[:1], threshold=0.9))[0]["label_names"] == []


def test_onnx_spec_from_yaml_file_with_relative_path(tmp_path, shared_dir, centernet_spec, photos):
    (tmp_path / "model.onnx").symlink_to(shared_dir / "assets" / "centernet.onnx")
    (tmp_path / "labels.txt").write_text("\n".join(f"class{i}" for i in range(80)) + "\n")
    spec = {**centernet_spec, "onnx": "model.onnx", "labels": "labels.txt"}
    spec_file = tmp_path / "tagger.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    config = {"pipeline_name": "multi_label_image_classification",
              "SubModules": {"ImageMultiLabelClassification": {"model_name": "ONNXMultiLabel",
                                                               "spec": str(spec_file), "threshold": 0.4}}}
    pipeline_file = tmp_path / "pipeline.yaml"
    pipeline_file.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["--pipeline", str(pipeline_file), "--input", str(photos / "dog.jpg"),
                                      "--save_path", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "dog_res.json").read_text())
    assert saved["label_names"] == ["class2", "class1", "class16"]  # car, bicycle, dog by COCO index
    assert (tmp_path / "out" / "dog_res.jpg").is_file()


def test_both_pipeline_names_and_default_config():
    assert PIPELINE_NAMES["multi_label_image_classification"] == "image_multilabel_classification"
    assert PIPELINE_NAMES["image_multilabel_classification"] == "image_multilabel_classification"
    config = yaml.safe_load(default_config_text("image_multilabel_classification"))
    entry = config["SubModules"]["ImageMultiLabelClassification"]
    assert config["pipeline_name"] == "image_multilabel_classification"
    assert entry["model_name"] == "PP-LCNet_x1_0_ML" and entry["threshold"] == 0.5 and entry["batch_size"] == 4


def test_zoo_pipeline_results_and_per_item_errors(zoo_pipeline, photos, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    results = list(zoo_pipeline.predict([str(photos / "dog.jpg"), str(tmp_path / "missing.jpg"), str(corrupt)],
                                        threshold=0.0))
    good, missing, bad = results
    assert good.ok and len(good["class_ids"]) == 80  # threshold 0: every class with a positive score
    assert list(good["scores"]) == sorted(good["scores"], reverse=True)
    assert good["label_names"][0] in good.json["res"]["label_names"]
    assert not missing.ok and "missing.jpg" in missing["error"]
    assert not bad.ok and "corrupt" in bad["error"]
    empty = list(zoo_pipeline.predict(str(photos / "dog.jpg"), threshold=1))[0]
    assert empty.ok and empty["class_ids"].tolist() == []


def test_missing_single_input_is_a_clear_error(zoo_pipeline, tmp_path):
    with pytest.raises(ViewfinderError, match="no such file"):
        list(zoo_pipeline.predict(str(tmp_path / "nothing.jpg")))


def test_bad_yaml_threshold_fails_at_creation():
    config = {"SubModules": {"ImageMultiLabelClassification": {"threshold": {"3": 0.7}}}}
    with pytest.raises(ConfigError, match="'default'"):
        create_pipeline("image_multilabel_classification", config=config, pretrained=False)
    config = {"SubModules": {"ImageMultiLabelClassification": {"threshold": [0.5] * 79}}}
    with pytest.raises(ConfigError, match="80 values, got 79"):
        create_pipeline("image_multilabel_classification", config=config, pretrained=False)


def test_cli_run_saves_json_and_image(photos, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["--pipeline", "multi_label_image_classification", "--input",
                                      str(photos / "dog.jpg"), "--threshold", "0.5", "--random_init",
                                      "--save_path", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "dog_res.json").read_text())
    assert set(saved) == {"input_path", "page_index", "class_ids", "scores", "label_names"}
    assert all(score > 0.5 for score in saved["scores"])
    assert (out / "dog_res.jpg").is_file()


@pytest.mark.parametrize("threshold, message", [
    ("2", "between 0 and 1"),
    ('{"3": 0.7}', "'default'"),
    ("[0.5, 0.5]", "80 values, got 2"),
    ("lots", "number or JSON"),
])
def test_cli_bad_threshold_is_one_line(photos, threshold, message):
    result = CliRunner().invoke(cli, ["--pipeline", "image_multilabel_classification", "--input",
                                      str(photos / "dog.jpg"), "--threshold", threshold, "--random_init"])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cli_missing_input_exits_non_zero(photos, tmp_path):
    result = CliRunner().invoke(cli, ["--pipeline", "image_multilabel_classification", "--input",
                                      str(photos / "dog.jpg"), "--input", str(tmp_path / "gone.jpg"),
                                      "--random_init"])
    assert result.exit_code == 1
    assert "gone.jpg" in result.output and "class_ids" in result.output


@pytest.mark.parametrize("change, error, message", [
    ({"onnx": "/nowhere/model.onnx"}, WeightsNotFoundError, "does not exist"),
    ({"onnx": None}, ConfigError, "needs 'onnx'"),
    ({"labels": "no_such_list"}, ConfigError, "neither a label file nor a shipped list"),
    ({"labels": None}, ConfigError, "needs 'labels'"),
    ({"output": {"name": "scores"}}, ConfigError, "no output 'scores'; outputs: tower_0/wh"),
    ({"output": {"reduce": "median"}}, ConfigError, "one of max, mean, none"),
    ({"input": {"size": [320, 320]}}, ConfigError, "takes 512x512 images"),
    ({"input": {"layout": "CHW"}}, ConfigError, "one of NCHW, NHWC"),
    ({"colour": "RGB"}, ConfigError, "unknown keys ['colour']"),
    ({"input": {"resize_backend": "opencv"}}, ConfigError, "backend 'opencv'"),
])
def test_bad_onnx_specs_are_clear_errors(centernet_spec, change, error, message):
    spec = {**centernet_spec, **change}
    with pytest.raises(error) as caught:
        create_pipeline("image_multilabel_classification", config=_onnx_config(spec))
    assert message in str(caught.value)


def test_onnx_label_count_must_match_outputs(centernet_spec, photos):
    spec = {**centernet_spec, "labels": ["a", "b"]}
    pipeline = create_pipeline("image_multilabel_classification",
                               config={"SubModules": {"ImageMultiLabelClassification": {
                                   "model_name": "ONNXMultiLabel", "spec": spec}}})
    with pytest.raises(ConfigError, match="80 scores per image, expected 2"):
        list(pipeline.predict(str(photos / "dog.jpg")))


def test_spec_needs_the_onnx_model_name(centernet_spec):
    config = {"SubModules": {"ImageMultiLabelClassification": {"model_name": "PP-LCNet_x1_0_ML",
                                                               "spec": centernet_spec}}}
    with pytest.raises(ConfigError, match="only read with model_name: ONNXMultiLabel"):
        create_pipeline("image_multilabel_classification", config=config, pretrained=False)


def test_single_label_model_is_refused():
    config = {"SubModules": {"ImageMultiLabelClassification": {"model_name": "PP-LCNet_x0_25"}}}
    with pytest.raises(ConfigError, match="PP-LCNet_x0_25 is not a multi-label model .* PP-LCNet_x1_0_ML"):
        create_pipeline("image_multilabel_classification", config=config, pretrained=False)


@pytest.fixture()
def pretend_gpu(monkeypatch):
    """A CUDA GPU for torch (so device "gpu" resolves); whether ONNX Runtime can use it is each test's choice."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_onnx_model_on_a_gpu_without_onnxruntime_gpu_runs_on_the_cpu(centernet_spec, pretend_gpu, monkeypatch,
                                                                     caplog):
    import torch

    from viewfinder.engines import onnx_engine

    monkeypatch.setattr(onnx_engine, "cuda_provider_available", lambda: False)
    with caplog.at_level("WARNING"):
        pipeline = create_pipeline("image_multilabel_classification", config=_onnx_config(centernet_spec),
                                   device="gpu")
    assert pipeline.model.device == torch.device("cpu")
    assert pipeline.model.engine.inner.session.get_providers() == ["CPUExecutionProvider"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "centernet.onnx runs on the CPU" in warnings[0] and "onnxruntime-gpu" in warnings[0]


def test_onnx_model_on_a_gpu_asks_onnxruntime_for_cuda(centernet_spec, pretend_gpu, monkeypatch, photos):
    import onnxruntime
    import torch

    from viewfinder.engines import onnx_engine

    monkeypatch.setattr(onnx_engine, "cuda_provider_available", lambda: True)
    asked = []
    cpu_session = onnxruntime.InferenceSession

    def record_providers(path, sess_options=None, providers=None, **kwargs):
        asked.append(providers)  # what a machine with onnxruntime-gpu would be asked; this one runs the CPU
        return cpu_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"], **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", record_providers)
    pipeline = create_pipeline("image_multilabel_classification", config=_onnx_config(centernet_spec),
                               device="gpu")
    assert pipeline.model.device == torch.device("cuda", 0)
    (providers,) = asked
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == ["CUDAExecutionProvider",
                                                                        "CPUExecutionProvider"]
    (result,) = pipeline.predict(str(photos / "dog.jpg"))
    assert {"dog", "bicycle", "car"} <= set(result["label_names"])
