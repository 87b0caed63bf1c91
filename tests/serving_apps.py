"""Small pipelines, inputs and test clients the serving protocol tests share.

The client fixtures are module-scoped: a test module that imports them gets its own clients.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import BaseModel, ConfigDict

from viewfinder import create_pipeline
from viewfinder.serving import ServingConfig, create_app


def classifier_pipeline(weights: Path) -> Any:
    """image_classification: MobileNetV2 with the real ImageNet weights, on torch."""
    return create_pipeline("image_classification", device="cpu", config={"SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": str(weights), "engine": "torch"}}})


def multilabel_pipeline() -> Any:
    """image_multilabel_classification: PP-LCNet_x1_0_ML, random weights (results do not matter here)."""
    return create_pipeline("multi_label_image_classification", device="cpu", pretrained=False, config={
        "SubModules": {"ImageMultiLabelClassification": {"model_name": "PP-LCNet_x1_0_ML", "engine": "torch"}}})


def shitu_submodules(weights: Path) -> dict[str, Any]:
    """PP-ShiTuV2 without a detector (whole images), MobileNetV2 features: fast and deterministic."""
    return {"Detection": None, "Recognition": {"model_name": "MobileNetV2_x1_0", "weights": str(weights),
                                               "engine": "torch", "batch_size": 8}}


def shitu_pipeline(weights: Path, **config: Any) -> Any:
    return create_pipeline("PP-ShiTuV2", device="cpu", config={"SubModules": shitu_submodules(weights), **config})


def small_jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> str:
    """Base64 of a one-colour JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


class ErrorEnvelope(BaseModel):
    """PaddleX's error answer, as a client sees it: these three fields and nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)
    logId: str
    errorCode: int
    errorMsg: str


# ------------------------------------------------------------------ clients (import them as fixtures)
@pytest.fixture(scope="module")
def classification(mobilenet_v2_weights):
    app = create_app(classifier_pipeline(mobilenet_v2_weights), ServingConfig(index_storage="memory"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def multilabel():
    with TestClient(create_app(multilabel_pipeline(), ServingConfig(index_storage="memory")),
                    raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def shitu(mobilenet_v2_weights, tmp_path_factory):
    app = create_app(shitu_pipeline(mobilenet_v2_weights), ServingConfig(data_dir=tmp_path_factory.mktemp("indexes")))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
