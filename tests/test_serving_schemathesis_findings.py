"""What schemathesis found against the specs (tests/test_serving_schemathesis.py), one test each,
so that each stays fixed whatever a later run draws."""
from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving_apps import shitu_pipeline
from viewfinder.serving import ServingConfig, create_app


def small_png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 60)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


IMAGE = small_png()


@pytest.fixture(scope="module")
def shitu(mobilenet_v2_weights, tmp_path_factory):
    app = create_app(shitu_pipeline(mobilenet_v2_weights), ServingConfig(data_dir=tmp_path_factory.mktemp("indexes")))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def index_key(shitu) -> str:
    response = shitu.post("/shitu-index-build", json={"imageLabelPairs": [{"image": IMAGE, "label": "green"}]})
    assert response.status_code == 200, response.text
    return response.json()["result"]["indexKey"]


def test_a_huge_topk_is_not_a_500(shitu, index_key):
    """``topk: 999999999999`` made the index search allocate a 3.6 TiB result array (500)."""
    response = shitu.post("/shitu-infer", json={"image": IMAGE, "indexKey": index_key, "topk": 999_999_999_999,
                                                "visualize": False})
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        objects = response.json()["result"]["detectedObjects"]
        assert all(len(o["recResults"]) <= 1 for o in objects)  # at most what the index holds


def test_det_threshold_out_of_range_is_a_schema_error(shitu, index_key):
    """The pipeline refuses a detThreshold outside 0..1 (400) while the spec allowed any number."""
    for value in (-0.5, 1.5, 2.2e16):
        response = shitu.post("/shitu-infer", json={"image": IMAGE, "indexKey": index_key, "detThreshold": value})
        assert response.status_code == 422 and "detThreshold" in response.json()["errorMsg"], response.text
    ok = shitu.post("/shitu-infer", json={"image": IMAGE, "indexKey": index_key, "detThreshold": 1, "visualize": False})
    assert ok.status_code == 200, ok.text


def test_a_blank_label_is_a_schema_error(shitu):
    """The pipeline refuses a label that is empty once stripped (400) while the spec allowed any string."""
    for label in ["", "   ", "\t\n", "\u3000"]:
        response = shitu.post("/shitu-index-build", json={"imageLabelPairs": [{"image": IMAGE, "label": label}]})
        assert response.status_code == 422 and "label" in response.json()["errorMsg"], (label, response.text)
    kept = shitu.post("/shitu-index-build", json={"imageLabelPairs": [{"image": IMAGE, "label": " café 猫 "}]})
    assert kept.status_code == 200 and kept.json()["result"]["idMap"] == {"0": "café 猫"}


class _UndrawableResult(dict):
    @property
    def img(self) -> dict:
        raise RuntimeError("raqm_layout() failed.")  # what Pillow said for a label with a control character


class _UndrawablePipeline:
    name = "image_classification"
    topk = 5

    def predict(self, input, topk=None, batch_size=None):
        return [_UndrawableResult(class_ids=np.array([7]), scores=np.array([0.9], dtype=np.float32),
                                  label_names=["x\x1c"]) for _ in input]


def test_a_drawing_failure_answers_without_the_image(caplog):
    """A result picture that cannot be drawn failed the whole request (500)."""
    with TestClient(create_app(_UndrawablePipeline(), ServingConfig(index_storage="memory")),
                    raise_server_exceptions=False) as client, caplog.at_level(logging.WARNING):
        response = client.post("/image-classification", json={"image": IMAGE, "visualize": True})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"categories": [{"id": 7, "name": "x\x1c", "score": pytest.approx(0.9)}]}
    assert any("drawing it failed" in r.getMessage() and "raqm_layout" in r.getMessage()
               for r in caplog.records)
