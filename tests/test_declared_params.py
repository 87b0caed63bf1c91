"""Declared inference parameters: predict() refuses an undeclared keyword, the CLI an inapplicable flag.

Random weights throughout: only parameter handling is under test.
"""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from viewfinder import create_model, create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError
from viewfinder.models import registry

IMAGE = np.full((48, 64, 3), 120, dtype=np.uint8)


@pytest.fixture(scope="module")
def classifier():
    return create_pipeline("image_classification", device="cpu", pretrained=False,
                           config={"SubModules": {"ImageClassification": {"model_name": "PP-LCNet_x0_25"}}})


@pytest.fixture(scope="module")
def tagger():
    return create_pipeline("image_multilabel_classification", device="cpu", pretrained=False)


@pytest.fixture(scope="module")
def shitu_yaml(tmp_path_factory):
    """A PP-ShiTuV2 YAML file that leaves every threshold out (whole images, no detector)."""
    path = tmp_path_factory.mktemp("shitu") / "shitu.yaml"
    path.write_text(yaml.safe_dump({"pipeline_name": "PP-ShiTuV2", "SubModules": {
        "Detection": None, "Recognition": {"model_name": "PP-LCNet_x0_25"}}}))
    return path


@pytest.fixture(scope="module")
def recogniser(shitu_yaml):
    return create_pipeline(str(shitu_yaml), device="cpu", pretrained=False)


# ------------------------------------------------------------------ pipelines
@pytest.mark.parametrize("fixture, bogus, message", [
    ("classifier", {"index": "idx"},
     r"image_classification\.predict\(\) got unknown parameter 'index'; accepted: batch_size, topk$"),
    ("tagger", {"topk": 3},
     r"image_multilabel_classification\.predict\(\) got unknown parameter 'topk'; accepted: batch_size, threshold$"),
    ("recogniser", {"threshold": 0.5, "batch_size": 2},
     (r"PP-ShiTuV2\.predict\(\) got unknown parameters 'threshold', 'batch_size'; "
      r"accepted: det_threshold, hamming_radius, index, index_dir, mainbody_order, max_det_results, "
      r"rec_threshold, rec_topk, single_mainbody, topk$")),
])
def test_pipeline_refuses_unknown_keyword(request, fixture, bogus, message):
    pipeline = request.getfixturevalue(fixture)
    with pytest.raises(ConfigError, match=message):
        pipeline.predict(IMAGE, **bogus)  # at the call, before any result is asked for
    with pytest.raises(ConfigError, match=message):
        pipeline(IMAGE, **bogus)


def test_declared_keywords_still_work(classifier, tagger):
    assert len(next(classifier.predict(IMAGE, topk=2, batch_size=2))["class_ids"]) == 2
    assert len(next(classifier.predict(IMAGE, topk=None))["class_ids"]) == 5  # None: the YAML's topk
    assert next(tagger.predict(IMAGE, threshold=1.0, batch_size=1))["class_ids"].tolist() == []


def test_recogniser_takes_missing_thresholds_from_the_shipped_yaml(recogniser):
    assert (recogniser.det_threshold, recogniser.rec_threshold, recogniser.rec_topk) == (0.5, 0.5, 5)
    assert recogniser.always_add_whole_image is False
    with pytest.raises(ConfigError, match="needs an index"):  # every declared keyword passes the check
        recogniser.predict(IMAGE, det_threshold=0.3, rec_threshold=0.2, rec_topk=2, topk=2, hamming_radius=1)


def test_classification_pipeline_topk_is_the_yaml_value():
    pipeline = create_pipeline("image_classification", device="cpu", pretrained=False, config={
        "SubModules": {"ImageClassification": {"model_name": "PP-LCNet_x0_25", "topk": 3}}})
    assert pipeline.topk == 3
    assert len(next(pipeline.predict(IMAGE))["class_ids"]) == 3


# ------------------------------------------------------------------ model predictors
def test_model_refuses_unknown_keyword():
    model = create_model("PP-LCNet_x0_25", device="cpu", pretrained=False)
    with pytest.raises(ConfigError, match=r"PP-LCNet_x0_25\.predict\(\) got unknown parameter 'threshold'; "
                                          r"accepted: batch_size, topk$"):
        model.predict(IMAGE, threshold=0.5)
    assert len(next(model.predict(IMAGE, topk=1, batch_size=1))["class_ids"]) == 1


def test_feature_model_takes_batch_size_only():
    features = create_model("PP-LCNet_x0_25", task="image_feature", device="cpu", pretrained=False)
    with pytest.raises(ConfigError, match=r"got unknown parameter 'topk'; accepted: batch_size$"):
        features.predict(IMAGE, topk=5)
    assert next(features.predict(IMAGE, batch_size=1))["feature"].ndim == 1


def test_detector_declares_threshold_and_nms_settings():
    detector = create_model("PP-ShiTuV2_det", device="cpu", pretrained=False)
    with pytest.raises(ConfigError, match=r"predict\(\) got unknown parameter 'topk'; accepted: batch_size, "
                                          r"class_agnostic, keep_top_k, nms_threshold, nms_top_k, "
                                          r"score_threshold, threshold$"):
        detector.predict(IMAGE, topk=5)
    with pytest.raises(ConfigError, match=r"predict_images\(\) got unknown parameter 'batch_size'"):
        detector.predict_images([IMAGE], batch_size=2)
    boxes = detector.predict_images([IMAGE], threshold=0.0, keep_top_k=3, class_agnostic=True)[0]["boxes"]
    assert len(boxes) <= 3


def test_task_default_applies_when_the_spec_has_none(monkeypatch):
    """A model registered without ModelSpec.defaults still gets the task's topk (5), as before."""
    from dataclasses import replace

    bare = replace(registry.get_spec("PP-LCNet_x0_25"), name="Bare-LCNet", defaults={})
    monkeypatch.setitem(registry._REGISTRY, bare.name, bare)
    model = create_model(bare.name, device="cpu", pretrained=False)
    assert len(next(model.predict(IMAGE))["class_ids"]) == 5


# ------------------------------------------------------------------ command line
SHITU_FLAGS = ("--det_threshold, --index, --mainbody_order, --max_det_results, --rec_threshold, --rec_topk, "
               "--single_mainbody, --topk")


@pytest.mark.parametrize("pipeline, flag, value, its_flags", [
    ("image_classification", "--index", "idx", "--batch_size, --topk"),
    ("image_classification", "--threshold", "0.5", "--batch_size, --topk"),
    ("multi_label_image_classification", "--topk", "3", "--batch_size, --threshold"),
    ("PP-ShiTuV2", "--threshold", "0.5", SHITU_FLAGS),
    ("PP-ShiTuV2", "--batch_size", "4", SHITU_FLAGS),
])
def test_cli_refuses_flag_the_pipeline_does_not_take(photos, pipeline, flag, value, its_flags):
    result = CliRunner().invoke(cli, ["--pipeline", pipeline, "--input", str(photos / "dog.jpg"), flag, value,
                                      "--random_init"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    canonical = {"multi_label_image_classification": "image_multilabel_classification"}.get(pipeline, pipeline)
    assert lines == [f"viewfinder: error: {flag} does not apply to pipeline {canonical} (its flags: {its_flags})"]


def test_cli_refuses_flags_of_a_pipeline_yaml(photos, shitu_yaml):
    result = CliRunner().invoke(cli, ["--pipeline", str(shitu_yaml), "--input", str(photos / "dog.jpg"),
                                      "--topk", "2", "--batch_size", "2", "--threshold", "lots"])
    assert result.exit_code == 2
    assert "--threshold, --batch_size do not apply to pipeline PP-ShiTuV2" in result.output  # before parsing lots


def test_cli_passes_flags_that_apply(photos, tmp_path):
    result = CliRunner().invoke(cli, ["--pipeline", "image_classification", "--input", str(photos / "dog.jpg"),
                                      "--topk", "2", "--batch_size", "1", "--random_init", "--device", "cpu",
                                      "--save_path", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "dog_res.json").read_text())["class_ids"]) == 2


# ------------------------------------------------------------------ service
def test_service_ignores_unknown_fields_and_passes_declared_params(classifier, photos, monkeypatch):
    from fastapi.testclient import TestClient

    from viewfinder.serving import ServingConfig, create_app

    seen: list[set[str]] = []
    predict = classifier.predict

    def recording_predict(input, **params):
        seen.append(set(params))
        return predict(input, **params)

    monkeypatch.setattr(classifier, "predict", recording_predict)
    image = base64.b64encode((photos / "dog.jpg").read_bytes()).decode()
    with TestClient(create_app(classifier, ServingConfig(index_storage="memory"))) as client:
        seen.clear()  # the warm-up's call
        body = client.post("/image-classification", json={
            "image": image, "topk": 2, "index": "idx", "threshold": 0.3, "detThreshold": 0.1, "somethingNew": 1}).json()
    assert body["errorCode"] == 0 and len(body["result"]["categories"]) == 2
    assert seen == [{"batch_size", "topk"}]
