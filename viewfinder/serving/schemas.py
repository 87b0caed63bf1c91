"""Request and response bodies, field for field PaddleX's (``paddlex/inference/serving/schemas``).

Our additions are optional and off by default, so PaddleX clients see PaddleX's JSON:
``visualize`` per request (newer PaddleX has it too), ``changedOnly`` on index changes,
and the index listing/info bodies.
"""
from __future__ import annotations

from typing import Annotated, Generic, Literal, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .security import INDEX_KEY_PATTERN

R = TypeVar("R")

ImageField = Annotated[str, Field(min_length=1, description="http(s) URL, or Base64 of the image file "
                                                            "(a data:image/...;base64, prefix is accepted)")]
IndexKey = Annotated[str, StringConstraints(pattern=INDEX_KEY_PATTERN, max_length=128)]
Visualize = Optional[bool]
_VISUALIZE = Field(None, description="Return the result drawing (Base64 JPEG); default: Serving.visualize")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # like PaddleX: unknown fields are ignored


class Envelope(BaseModel):
    logId: str
    errorCode: int
    errorMsg: str


class ResultResponse(Envelope, Generic[R]):
    result: Optional[R] = None


# ----------------------------------------------------------------------- classification
class InferenceParams(_Body):
    topK: Optional[Annotated[int, Field(gt=0)]] = None


class ImageClassificationRequest(_Body):
    image: ImageField
    topk: Optional[Annotated[int, Field(gt=0)]] = None
    inferenceParams: Optional[InferenceParams] = Field(None, description="PaddleX 3.0-beta1 form of topk")
    visualize: Visualize = _VISUALIZE


class Category(BaseModel):
    id: int
    name: str
    score: float


class ClassificationResult(BaseModel):
    categories: list[Category]
    image: Optional[str] = None


Threshold = Union[float, dict[Union[Literal["default"], int], float], list[float]]


class MultiLabelRequest(_Body):
    image: ImageField
    threshold: Optional[Threshold] = Field(
        None, description="float, {default: float, <class id>: float} or one float per class; scores above it are kept")
    visualize: Visualize = _VISUALIZE


# ----------------------------------------------------------------------- PP-ShiTuV2
class ImageLabelPair(_Body):
    image: ImageField
    label: str


_CHANGED_ONLY = Field(False, description="Return only the changed ids (addedIds/removedIds, idMap of the "
                                         "changed entries, indexSize) instead of the whole idMap")


class BuildIndexRequest(_Body):
    imageLabelPairs: Annotated[list[ImageLabelPair], Field(min_length=1)]


class BuildIndexResult(BaseModel):
    indexKey: str
    idMap: dict[int, str]


class AddImagesToIndexRequest(_Body):
    imageLabelPairs: Annotated[list[ImageLabelPair], Field(min_length=1)]
    indexKey: IndexKey
    changedOnly: bool = _CHANGED_ONLY


class RemoveImagesFromIndexRequest(_Body):
    ids: Annotated[list[int], Field(min_length=1)]
    indexKey: IndexKey
    changedOnly: bool = _CHANGED_ONLY


class IndexChangeResult(BaseModel):
    idMap: dict[int, str]
    addedIds: Optional[list[int]] = None
    removedIds: Optional[list[int]] = None
    indexSize: Optional[int] = None


class ShiTuInferRequest(_Body):
    image: ImageField
    indexKey: Optional[IndexKey] = None
    detThreshold: Optional[float] = None
    recThreshold: Optional[float] = None
    hammingRadius: Optional[float] = None
    topk: Optional[Annotated[int, Field(gt=0)]] = None
    visualize: Visualize = _VISUALIZE


class RecResult(BaseModel):
    label: str
    score: float


class DetectedObject(BaseModel):
    bbox: list[float]
    recResults: list[RecResult]
    score: float


class ShiTuInferResult(BaseModel):
    detectedObjects: list[DetectedObject]
    image: Optional[str] = None


class IndexInfo(BaseModel):
    indexKey: str
    size: Optional[int] = None
    dim: Optional[int] = None
    indexType: Optional[str] = None
    metricType: Optional[str] = None
    nextId: Optional[int] = None
    labels: Optional[int] = None
    persistent: Optional[bool] = None
    idMap: Optional[dict[int, str]] = None
    error: Optional[str] = None


class IndexList(BaseModel):
    indexes: list[IndexInfo]


class DeleteIndexResult(BaseModel):
    indexKey: str
    deleted: bool
