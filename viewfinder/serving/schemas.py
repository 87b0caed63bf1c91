"""Request and response bodies, field for field PaddleX's (``paddlex/inference/serving/schemas``).

Our additions are optional and off by default, so PaddleX clients see PaddleX's JSON:
``visualize`` per request (newer PaddleX has it too), ``changedOnly`` on index changes,
and the index listing/info bodies.
"""
from __future__ import annotations

from typing import Annotated, Generic, Literal, Optional, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StringConstraints
from pydantic_core import PydanticCustomError

from .security import INDEX_KEY_PATTERN

R = TypeVar("R")

#: ``format: image`` (not a JSON Schema format; tools that do not know it treat it as a string) tells
#: test generators that a valid value is an image, not any string (tests/schemathesis_hooks.py).
ImageField = Annotated[str, Field(min_length=1, json_schema_extra={"format": "image"},
                                  description="http(s) URL, or Base64 of the image file "
                                              "(a data:image/...;base64, prefix is accepted)")]
IndexKey = Annotated[str, StringConstraints(pattern=INDEX_KEY_PATTERN, max_length=128)]


def _json_number(value: object) -> object:
    if isinstance(value, (bool, str)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


#: Request numbers and flags are strict, as the spec says: ``"5"`` or ``true`` is no integer, ``0`` or
#: ``"yes"`` no boolean, ``"0.5"`` no number (422) instead of being coerced. An integer is a JSON number
#: without a fraction (``5`` or ``5.0``, as in JSON Schema).
JsonInt = Annotated[int, BeforeValidator(_json_number)]
TopK = Optional[Annotated[int, Field(gt=0), BeforeValidator(_json_number)]]  # constraint first: a JSON Schema bound
Visualize = Optional[StrictBool]
#: Python's whitespace (``str.isspace``), spelled out so that the spec's pattern and the check agree
_SPACE = r"\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: what the pipeline keeps of a label is ``label.strip()``, which must not be empty
Label = Annotated[str, StringConstraints(pattern=f"[^{_SPACE}]"),
                  Field(description="the item's label; at least one character that is not whitespace")]
_VISUALIZE = Field(None, description="Return the result drawing (Base64 JPEG); default: Serving.visualize")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # like PaddleX: unknown fields are ignored


class Envelope(BaseModel):
    logId: str
    errorCode: int
    errorMsg: str


class ErrorEnvelope(BaseModel):
    """Every error answer, whatever its source (schema check, handler, middleware): no ``result``."""

    model_config = ConfigDict(extra="forbid")

    logId: str
    errorCode: Annotated[int, Field(ge=400, le=599, description="the HTTP status code")]
    errorMsg: str = Field(description="what was wrong; a 500 names only its logId (the details are in the server log)")


class ResultResponse(Envelope, Generic[R]):
    result: Optional[R] = None


# ----------------------------------------------------------------------- classification
class InferenceParams(_Body):
    topK: TopK = None


class ImageClassificationRequest(_Body):
    image: ImageField
    topk: TopK = None
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
    label: Label


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
    changedOnly: StrictBool = _CHANGED_ONLY


class RemoveImagesFromIndexRequest(_Body):
    ids: Annotated[list[JsonInt], Field(min_length=1)]
    indexKey: IndexKey
    changedOnly: StrictBool = _CHANGED_ONLY


class IndexChangeResult(BaseModel):
    idMap: dict[int, str]
    addedIds: Optional[list[int]] = None
    removedIds: Optional[list[int]] = None
    indexSize: Optional[int] = None


class ShiTuInferRequest(_Body):
    """For a pipeline whose config names a default index (used when ``indexKey`` is left out)."""

    image: ImageField
    indexKey: Optional[IndexKey] = None
    detThreshold: Optional[Annotated[StrictFloat, Field(ge=0, le=1)]] = None
    recThreshold: Optional[StrictFloat] = None
    hammingRadius: Optional[StrictFloat] = None
    topk: TopK = None
    visualize: Visualize = _VISUALIZE


class ShiTuInferKeyedRequest(ShiTuInferRequest):
    """For a pipeline without a default index: ``indexKey`` is required."""

    indexKey: IndexKey


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
