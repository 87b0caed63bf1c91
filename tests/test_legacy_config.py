"""PaddleX 3.0-beta's pipeline YAMLs (Global + Pipeline), written as its docs show them, load and predict."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from viewfinder import create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError
from viewfinder.pipelines import PIPELINE_NAMES
from viewfinder.pipelines.config import load_config

# As PaddleX 3.0-beta shipped them (paddlex/pipelines/*.yaml), the models swapped for ones seeded here.
CLASSIFICATION_YAML = """\
Global:
  pipeline_name: image_classification
  input: {input}

######################################## Setting ########################################
# Please select the model from bellow `Support`

Pipeline:
  model: MobileNetV2_x1_0
  batch_size: 2
  device: "cpu"
  # enable_hpi: False

######################################## Support ########################################
NOTE:
  model:
    - PP-LCNet_x0_5
    - MobileNetV2_x1_0
"""

MULTILABEL_YAML = """\
Global:
  pipeline_name: multi_label_image_classification
  input: https://paddle-model-ecology.bj.bcebos.com/paddlex/imgs/demo_image/general_image_classification_001.jpg

Pipeline:
  model: PP-LCNet_x1_0_ML
  batch_size: 1
  threshold: 0.7
"""

SHITU_YAML = """\
Global:
  pipeline_name: PP-ShiTuV2
  input: ./drink_dataset_v2.0/test_images/100.jpeg

Pipeline:
  det_model: PP-ShiTuV2_det
  rec_model: MobileNetV2_x1_0
  det_batch_size: 1
  rec_batch_size: 4
  device: cpu
  index_dir: "./index/"
  score_thres: 0.0
  return_k: 2
"""


@pytest.fixture()
def classification_yaml(tmp_path, photos) -> Path:
    path = tmp_path / "image_classification.yaml"
    path.write_text(CLASSIFICATION_YAML.format(input=photos / "chelsea.png"), encoding="utf-8")
    return path


def test_classification_yaml_loads_and_predicts(seeded_home, classification_yaml, photos):
    pipeline = create_pipeline(str(classification_yaml))
    assert pipeline.model.model_name == "MobileNetV2_x1_0" and pipeline.model.batch_size == 2
    assert str(pipeline.model.device) == "cpu" and pipeline.device == "cpu"
    result = next(pipeline.predict(str(photos / "chelsea.png"), topk=3))
    assert result["label_names"][0] in {"Egyptian cat", "tabby, tabby cat", "tiger cat"}


def test_multilabel_yaml_loads_and_predicts(tmp_path, photos):
    path = tmp_path / "multi_label_image_classification.yaml"
    path.write_text(MULTILABEL_YAML, encoding="utf-8")
    pipeline = create_pipeline(str(path), pretrained=False, device="cpu")
    assert pipeline.name == "image_multilabel_classification"
    assert pipeline.model.model_name == "PP-LCNet_x1_0_ML" and pipeline.threshold == 0.7
    assert next(pipeline.predict(str(photos / "dog.jpg"))).ok


def test_shitu_yaml_maps_every_key(tmp_path):
    path = tmp_path / "PP-ShiTuV2.yaml"
    path.write_text(SHITU_YAML, encoding="utf-8")
    config = load_config(str(path), None, PIPELINE_NAMES)
    assert config["pipeline_name"] == "PP-ShiTuV2" and config["device"] == "cpu"
    assert (config["index"], config["rec_threshold"], config["rec_topk"]) == ("./index/", 0.0, 2)
    assert config["det_threshold"] == 0.5  # not in the file: the shipped YAML's
    assert config["SubModules"]["Detection"]["model_name"] == "PP-ShiTuV2_det"
    assert config["SubModules"]["Detection"]["batch_size"] == 1
    assert config["SubModules"]["Recognition"]["model_name"] == "MobileNetV2_x1_0"
    assert config["SubModules"]["Recognition"]["batch_size"] == 4
    assert config["input"] == "./drink_dataset_v2.0/test_images/100.jpeg"


def test_shitu_yaml_with_detector_loads_and_predicts(tmp_path, opencv_gallery):
    path = tmp_path / "PP-ShiTuV2.yaml"
    path.write_text(SHITU_YAML, encoding="utf-8")
    pipeline = create_pipeline(str(path), pretrained=False)
    assert pipeline.detector.model_name == "PP-ShiTuV2_det" and pipeline.detector.batch_size == 1
    assert pipeline.recognizer.batch_size == 4 and pipeline.rec_topk == 2
    pipeline.build_index(data_root=str(opencv_gallery), index_dir=str(tmp_path / "index"), show_progress=False)
    result = next(pipeline.predict(str(opencv_gallery / "box.png")))  # the YAML's index_dir, relative to it
    assert result.ok and result["boxes"]


def test_shitu_yaml_recognises(seeded_home, tmp_path, opencv_gallery):
    path = tmp_path / "PP-ShiTuV2.yaml"
    path.write_text(SHITU_YAML, encoding="utf-8")
    # the 3.x form as an override on top of an old file: no detector, whole images
    pipeline = create_pipeline(str(path), config={"SubModules": {"Detection": None}})
    pipeline.build_index(data_root=str(opencv_gallery), index_dir=str(tmp_path / "index"), show_progress=False)
    result = next(pipeline.predict(str(opencv_gallery / "aloeL.jpg")))
    assert result["boxes"][0]["labels"][0] == "aloe" and len(result["boxes"][0]["labels"]) == 2


@pytest.mark.parametrize("text, message", [
    ("Global: {pipeline_name: image_classification}\nPipeline: {model: PP-LCNet_x0_25, batch_sise: 2}\n",
     r"unknown Pipeline key\(s\) \['batch_sise'\] for image_classification"),
    ("Global: {pipeline_name: image_classification}\nPipeline: {model: PP-LCNet_x0_25, threshold: 0.5}\n",
     r"unknown Pipeline key\(s\) \['threshold'\]"),
    ("Global: {pipeline_name: PP-ShiTuV2}\nPipeline: {rec_model: PP-ShiTuV2_rec, model: x}\n",
     r"unknown Pipeline key\(s\) \['model'\] for PP-ShiTuV2"),
    ("Global: {pipeline_name: image_classification, output: ./out}\nPipeline: {model: PP-LCNet_x0_25}\n",
     r"unknown Global key\(s\) \['output'\]"),
    ("Global: {pipeline_name: image_classification}\nPipeline: {model: x}\nPredict: {batch_size: 2}\n",
     r"unknown top-level key\(s\) \['Predict'\]"),
    ("pipeline_name: image_classification\nPipeline: {model: PP-LCNet_x0_25}\n",
     "use one form per file"),
    ("Global: {pipeline_name: object_detection}\nPipeline: {model: PicoDet-S}\n",
     "Global.pipeline_name 'object_detection' is not one of"),
    ("Pipeline: {model: PP-LCNet_x0_25}\n", "needs Global.pipeline_name"),
    ("Global: {pipeline_name: PP-ShiTuV2}\nPipeline: {index: a, index_dir: b}\n", "the same setting"),
    ("Global: {pipeline_name: image_classification}\nPipeline: {model: ./no/such/model_dir}\n",
     "no such folder exists"),
])
def test_unknown_or_conflicting_keys_are_refused_by_name(tmp_path, text, message):
    path = tmp_path / "old.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        create_pipeline(str(path), pretrained=False)


def test_runtime_keys_of_the_old_form(tmp_path, monkeypatch):
    recorded: list[dict] = []
    monkeypatch.setattr("viewfinder.pipelines.base.create_model", lambda **kwargs: recorded.append(kwargs))
    path = tmp_path / "old.yaml"
    path.write_text("Global: {pipeline_name: image_classification}\n"
                    "Pipeline:\n  model: PP-LCNet_x0_25\n  device: cpu\n  enable_hpi: true\n"
                    "  hpi_params: {serial_number: XXXX, update_license: false}\n", encoding="utf-8")
    pipeline = create_pipeline(str(path))
    assert pipeline.use_hpip and recorded[-1]["engine"] == "onnxruntime" and recorded[-1]["device"] == "cpu"
    path.write_text("Global: {pipeline_name: image_classification}\n"
                    "Pipeline: {model: PP-LCNet_x0_25, pp_option: {run_mode: trt_fp16}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="TensorRT"):
        create_pipeline(str(path))


def test_model_folder_in_the_old_form(tmp_path):
    (tmp_path / "models" / "my_model").mkdir(parents=True)
    path = tmp_path / "old.yaml"
    path.write_text("Global: {pipeline_name: image_classification}\nPipeline: {model: models/my_model}\n")
    entry = load_config(str(path), None, PIPELINE_NAMES)["SubModules"]["ImageClassification"]
    assert entry["model_dir"] == str((tmp_path / "models" / "my_model").resolve()) and entry["model_name"] is None


def test_old_form_as_a_config_dict(photos):
    pipeline = create_pipeline(config={"Global": {"pipeline_name": "image_classification"},
                                       "Pipeline": {"model": "PP-LCNet_x0_25", "topk": 2, "device": "cpu"}},
                               pretrained=False)
    assert len(next(pipeline.predict(str(photos / "coffee.png")))["class_ids"]) == 2
    override = create_pipeline("image_classification", config={"Pipeline": {"model": "PP-LCNet_x0_25", "topk": 3}},
                               pretrained=False, device="cpu")
    assert override.model.model_name == "PP-LCNet_x0_25" and override.topk == 3


def test_cli_runs_the_old_form_with_its_global_input(seeded_home, classification_yaml, tmp_path):
    result = CliRunner().invoke(cli, ["--pipeline", str(classification_yaml), "--topk", "2",
                                      "--save_path", str(tmp_path / "out")])  # no --input: Global.input
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "chelsea_res.json").read_text())
    assert len(saved["label_names"]) == 2
    assert json.loads(result.stdout[:result.stdout.rindex("}") + 1])["res"]["input_path"].endswith("chelsea.png")


def test_service_loads_the_old_form(seeded_home, classification_yaml, photos):
    import base64

    from viewfinder.serving import create_app
    from viewfinder.serving.server import build_config, load_pipeline

    text = classification_yaml.read_text() + "Serving:\n  visualize: false\n"
    classification_yaml.write_text(text)
    # what `viewfinder serve --pipeline old.yaml` does before uvicorn starts
    config = build_config(load_config(str(classification_yaml), None, PIPELINE_NAMES))
    assert config.visualize is False
    runner = load_pipeline(str(classification_yaml), config)
    with TestClient(create_app(runner, config)) as client:
        image = base64.b64encode((photos / "chelsea.png").read_bytes()).decode()
        answer = client.post("/image-classification", json={"image": image, "topk": 2}).json()
    assert answer["errorCode"] == 0 and len(answer["result"]["categories"]) == 2
    assert "image" not in answer["result"]


@pytest.fixture()
def opencv_gallery(tmp_path) -> Path:
    source = Path(__file__).resolve().parent.parent / ".assets" / "opencv"
    root = tmp_path / "gallery"
    root.mkdir()
    for name in ("aloeL.jpg", "box.png", "graf1.png"):
        (root / name).write_bytes((source / name).read_bytes())
    (root / "gallery.txt").write_text("aloeL.jpg aloe\nbox.png box\ngraf1.png graf\n", encoding="utf-8")
    return root


def test_yaml_dump_of_the_mapping_is_plain(tmp_path):
    """The mapped config holds plain values (the service passes it to worker processes as JSON)."""
    path = tmp_path / "PP-ShiTuV2.yaml"
    path.write_text(SHITU_YAML, encoding="utf-8")
    config = load_config(str(path), None, PIPELINE_NAMES)
    assert yaml.safe_load(yaml.safe_dump(config)) == config
