"""JSON request bodies whatever their Content-Type, on every JSON endpoint of every pipeline.

PaddleX's published Node.js client sends its JSON as application/x-www-form-urlencoded (axios
with a string body), curl -d does too, other clients send text/plain or no Content-Type; the
service parsed only JSON media types and answered them 422 (tests/test_paddlex_node_client.py
runs the Node.js client itself).
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving_apps import (  # noqa: F401 (classification, multilabel, shitu: client fixtures)
    ErrorEnvelope, classification, multilabel, shitu, small_jpeg)

#: what clients in the wild send a JSON body as: axios with a string (PaddleX's Node.js client) and
#: curl -d send form-urlencoded; others text/plain or no Content-Type at all (None)
CONTENT_TYPES = ["application/x-www-form-urlencoded", "text/plain", "text/plain; charset=utf-8", None]
RED, BLUE = small_jpeg((200, 30, 30)), small_jpeg((30, 30, 200))


def post_raw(client: TestClient, path: str, body: str | bytes, content_type: str | None) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(path, content=body if isinstance(body, bytes) else body.encode(), headers=headers)
    assert response.request.headers.get("content-type") == content_type  # what went over the wire
    return response

@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_classification_endpoints_parse_json_whatever_the_content_type(classification, multilabel, content_type):
    for client, path, body in [
            (classification, "/image-classification", {"image": RED, "topk": 2, "visualize": False}),
            (multilabel, "/multilabel-image-classification", {"image": RED, "threshold": 0.0, "visualize": False})]:
        response = post_raw(client, path, json.dumps(body), content_type)
        assert response.status_code == 200, (path, content_type, response.text)
        assert response.json()["errorCode"] == 0 and response.json()["result"]["categories"]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_shitu_endpoints_parse_json_whatever_the_content_type(shitu, content_type):
    def call(path: str, body: dict) -> dict:
        response = post_raw(shitu, path, json.dumps(body), content_type)
        assert response.status_code == 200, (path, content_type, response.text)
        return response.json()["result"]

    built = call("/shitu-index-build", {"imageLabelPairs": [{"image": RED, "label": "red"}]})
    key = built["indexKey"]
    assert built["idMap"] == {"0": "red"}
    assert call("/shitu-index-add", {"indexKey": key, "imageLabelPairs": [{"image": BLUE, "label": "blue"}]}
                )["idMap"] == {"0": "red", "1": "blue"}
    found = call("/shitu-infer", {"image": BLUE, "indexKey": key, "visualize": False})["detectedObjects"]
    assert found[0]["recResults"][0]["label"] == "blue"
    assert call("/shitu-index-remove", {"indexKey": key, "ids": [0]})["idMap"] == {"1": "blue"}


def test_no_content_type_is_200_not_422(classification):
    """Before: FastAPI parsed only JSON media types, so a body without a Content-Type was a 422."""
    response = post_raw(classification, "/image-classification", json.dumps({"image": RED}), None)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body, content_type", [
    ("image=abc&topk=1", "application/x-www-form-urlencoded"),  # a real form: not JSON
    ("just words", "text/plain"),
    ('{"image": "abc",', None),                                  # cut short
    ("{not json", "application/json"),
])
def test_a_body_that_is_not_json_is_a_clear_422_envelope(classification, shitu, body, content_type):
    for client, path in [(classification, "/image-classification"), (shitu, "/shitu-index-build"),
                         (shitu, "/shitu-infer"), (shitu, "/shitu-index-add"), (shitu, "/shitu-index-remove")]:
        response = post_raw(client, path, body, content_type)
        assert response.status_code == 422, (path, body, response.text)
        payload = response.json()
        assert payload["errorCode"] == 422 and "not valid JSON" in payload["errorMsg"], payload
        ErrorEnvelope.model_validate(payload)


def test_bytes_that_are_not_text_are_a_4xx_envelope(classification):
    response = post_raw(classification, "/image-classification", b"\xff\xfe\x00\x81binary", "application/octet-stream")
    assert 400 <= response.status_code < 500, response.text
    ErrorEnvelope.model_validate(response.json())
