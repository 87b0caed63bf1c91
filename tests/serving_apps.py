"""Small pipelines and inputs the serving protocol tests share (no fixtures: each module scopes its own)."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict

from viewfinder import create_pipeline


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
