"""The OpenAPI spec tells the truth: every endpoint's real error statuses with our envelope (not
FastAPI's HTTPValidationError), the 401 when there is a key, request types as strict as the spec
says, ``indexKey`` required where it is; and ``Allow`` on a 405 lists every method of the path."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving_apps import (  # noqa: F401 (classification, multilabel, shitu: client fixtures)
    ErrorEnvelope, classification, classifier_pipeline, multilabel, shitu, shitu_pipeline, small_jpeg)
from viewfinder.serving import ServingConfig, create_app

RED, BLUE = small_jpeg((200, 30, 30)), small_jpeg((30, 30, 200))

ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
INFER = {400, 413, 422, 500, 503, 504}  # 503: the work queue is full; 504: the request time limit
EXPECTED_ERRORS = {  # (path, method): the error statuses each endpoint really answers with
    ("/health", "get"): {413, 500},
    ("/health/live", "get"): {413, 500},
    ("/health/ready", "get"): {413, 500, 503},
    ("/metrics", "get"): {413, 500},
    ("/image-classification", "post"): INFER,
    ("/multilabel-image-classification", "post"): INFER,
    ("/shitu-index-build", "post"): INFER,
    ("/shitu-index-add", "post"): INFER | {404},
    ("/shitu-index-remove", "post"): {400, 404, 413, 422, 500, 504},
    ("/shitu-infer", "post"): INFER | {404},
    ("/shitu-indexes", "get"): {413, 500, 504},
    ("/shitu-index/{indexKey}", "get"): {404, 413, 422, 500, 504},
    ("/shitu-index/{indexKey}", "delete"): {404, 413, 422, 500, 504},
    ("/shitu-index/{indexKey}/items", "get"): {404, 413, 422, 500, 504},
}


def error_statuses(operation: dict) -> dict[int, dict]:
    return {int(status): entry for status, entry in operation["responses"].items() if not status.startswith("2")}


def test_every_endpoint_documents_its_errors_with_our_envelope(classification, multilabel, shitu):
    seen = set()
    for client in (classification, multilabel, shitu):
        spec = client.get("/openapi.json").json()
        assert "HTTPValidationError" not in json.dumps(spec)  # before: FastAPI's 422 body, which we never send
        assert spec["components"]["schemas"]["ErrorEnvelope"]["required"] == ["logId", "errorCode", "errorMsg"]
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                errors = error_statuses(operation)
                assert set(errors) == EXPECTED_ERRORS[(path, method)], (path, method, sorted(errors))
                for status, entry in errors.items():
                    assert entry["content"]["application/json"]["schema"] == ENVELOPE, (path, method, status)
                    assert entry["description"]
                seen.add((path, method))
    assert seen == set(EXPECTED_ERRORS)


def test_real_error_bodies_match_the_documented_envelope(shitu, classification):
    answers = [
        shitu.post("/shitu-index-add", json={"indexKey": "no-such-index", "imageLabelPairs": [
            {"image": RED, "label": "x"}]}),                                                        # 404
        shitu.post("/shitu-infer", json={"image": "not base64!", "indexKey": "no-such-index"}),     # 404 first
        shitu.get("/shitu-index/bad.key"),                                                          # 422 (pattern)
        shitu.post("/shitu-index-build", json={"imageLabelPairs": [{"image": "###", "label": "x"}]}),  # 400
        classification.post("/image-classification", json={"image": RED, "topk": "5"}),            # 422 (strict)
    ]
    assert [a.status_code for a in answers] == [404, 404, 422, 400, 422], [a.text for a in answers]
    for answer in answers:
        ErrorEnvelope.model_validate(answer.json())


def test_without_a_default_index_the_spec_requires_indexKey(shitu):
    spec = shitu.get("/openapi.json").json()
    body = spec["paths"]["/shitu-infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert "indexKey" in schema["required"]
    response = shitu.post("/shitu-infer", json={"image": RED})
    assert response.status_code == 422 and "indexKey: Field required" in response.json()["errorMsg"]


def test_with_a_default_index_indexKey_stays_optional(mobilenet_v2_weights, tmp_path):
    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(BLUE))).convert("RGB"))
    index = shitu_pipeline(mobilenet_v2_weights).build_index([rgb[:, :, ::-1]], ["blue"], metric_type="IP",
                                                             index_type="Flat")
    index.save(tmp_path / "gallery")
    pipeline = shitu_pipeline(mobilenet_v2_weights, index=str(tmp_path / "gallery"))
    with TestClient(create_app(pipeline, ServingConfig(data_dir=tmp_path / "indexes")),
                    raise_server_exceptions=False) as client:
        spec = client.get("/openapi.json").json()
        response = client.post("/shitu-infer", json={"image": BLUE, "visualize": False})
    body = spec["paths"]["/shitu-infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert spec["components"]["schemas"][body.rsplit("/", 1)[1]]["required"] == ["image"]
    assert response.status_code == 200, response.text
    assert response.json()["result"]["detectedObjects"][0]["recResults"][0]["label"] == "blue"


def test_with_an_api_key_the_spec_documents_the_401(mobilenet_v2_weights):
    app = create_app(classifier_pipeline(mobilenet_v2_weights), ServingConfig(index_storage="memory", api_key="k"))
    with TestClient(app, raise_server_exceptions=False) as client:
        spec = client.get("/openapi.json", headers={"X-API-Key": "k"}).json()
        refused = client.post("/image-classification", json={"image": RED})
    assert set(spec["components"]["securitySchemes"]) == {"bearerKey", "apiKeyHeader"}
    infer = spec["paths"]["/image-classification"]["post"]
    assert infer["responses"]["401"]["content"]["application/json"]["schema"] == ENVELOPE
    assert {"bearerKey": []} in infer["security"] and {"apiKeyHeader": []} in infer["security"]
    health = spec["paths"]["/health"]["get"]
    assert "401" not in health["responses"] and "security" not in health  # /health needs no key
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    ErrorEnvelope.model_validate(refused.json())


def test_strict_types_refuse_what_the_spec_refuses(classification):
    """Lax coercion used to accept what the spec calls invalid (a 200 to schema-violating data)."""
    for body in [{"topk": "5"}, {"topk": True}, {"topk": 2.5}, {"visualize": 0}, {"visualize": "yes"}]:
        response = classification.post("/image-classification", json={"image": RED, **body})
        assert response.status_code == 422, (body, response.text)
    assert classification.post("/image-classification", json={"image": RED, "topk": 2.0}).status_code == 200


# ------------------------------------------------------------------ Allow lists every method of the path
@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "PATCH", "POST"])
def test_allow_lists_every_method_of_the_path(shitu, method):
    response = shitu.request(method, "/shitu-index/some-key")
    assert response.status_code == 405 and response.json()["errorCode"] == 405
    assert response.headers["allow"] == "DELETE, GET"  # before: "GET" (the first route's methods only)


def test_allow_on_single_method_paths(classification, shitu):
    for client, path, allowed in [(classification, "/image-classification", "POST"),
                                  (shitu, "/shitu-index-build", "POST"), (shitu, "/shitu-indexes", "GET")]:
        response = client.request("OPTIONS", path)
        assert response.status_code == 405 and response.headers["allow"] == allowed, (path, response.headers)
