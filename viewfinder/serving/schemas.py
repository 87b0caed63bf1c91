"""Request and response bodies, field for field PaddleX's (``paddlex/inference/serving/schemas``).

Our additions are optional and off by default, so PaddleX clients see PaddleX's JSON:
``visualize`` per request (newer PaddleX has it too), ``changedOnly`` on index changes,
and the index listing/info bodies.

Request fields are strict where lax coercion would change what a client asked for: ``topk``
and ``ids`` are JSON integers (not ``true``, ``2.0`` or ``"2"``), flags are JSON booleans,
thresholds are finite numbers in their range, ids fit faiss's int64. The limits that are
settings (``Serving.max_topk``, ``Serving.max_label_length``) are part of the request models,
so the OpenAPI spec states them: :func:`request_models` builds the models for one app's
settings; the module-level names are the models for the default settings.
"""
import re
from functools import cache
from types import SimpleNamespace
from typing import Annotated, Any, Generic, Literal, Optional, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from .config import ServingConfig
from .security import INDEX_KEY_PATTERN

R = TypeVar("R")

#: ``format: image`` (not a JSON Schema format; tools that do not know it treat it as a string) tells
#: test generators that a valid value is an image, not any string (tests/schemathesis_hooks.py).
ImageField = Annotated[str, Field(min_length=1, json_schema_extra={"format": "image"},
                                  description="http(s) URL, or Base64 of the image file "
                                              "(a data:image/...;base64, prefix is accepted)")]
IndexKey = Annotated[str, StringConstraints(pattern=INDEX_KEY_PATTERN, max_length=128)]
Visualize = Optional[StrictBool]


def _json_number(value: object) -> object:
    if isinstance(value, (bool, str)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


#: An integer is a JSON number without a fraction (``5`` or ``5.0``, as JSON Schema says), never
#: ``true`` or ``"5"`` (422 instead of a coerced value).
JsonInt = Annotated[int, BeforeValidator(_json_number)]
_VISUALIZE = Field(None, description="Return the result drawing (Base64 JPEG); default: Serving.visualize")

#: The largest id a request may name: 2**53 - 1, JSON's largest safe integer. faiss ids are int64, but
#: ours start at 0 and count up, so no index comes near it; beyond it a JavaScript client cannot hold an
#: id exactly, and tools that check a request against the spec compare numbers as floats (2**63 - 1 and
#: its neighbours all round to 2**63), so a larger bound would not mean what it says.
ID_MAX = 2 ** 53 - 1
#: characters a gallery label may not hold: Unicode's control characters (Cc: C0, DEL, C1 such as
#: U+0085) and its line and paragraph separators (Zl, Zp). ``str.splitlines`` breaks at several of
#: them and text layout refuses them, so such a label cannot be drawn.
LABEL_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
#: Python's whitespace (``str.isspace``) spelled out, so that the spec's pattern and the check agree:
#: what the pipeline keeps of a label is ``label.strip()``, which must not be empty
_SPACE = r"\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
LABEL_PATTERN = f"^[^{LABEL_FORBIDDEN}]*[^{LABEL_FORBIDDEN}{_SPACE}][^{LABEL_FORBIDDEN}]*$"
_LABEL_FORBIDDEN_RE = re.compile(f"[{LABEL_FORBIDDEN}]")


def check_label(label: str) -> str:
    """``label`` if it holds no control character or line separator and is not blank, else a ValueError
    saying why (and where)."""
    found = _LABEL_FORBIDDEN_RE.search(label)
    if found:
        raise ValueError(f"a label may not contain control characters or line separators; found "
                         f"U+{ord(found.group()):04X} at position {found.start()}")
    if not label.strip():
        raise ValueError("a label needs at least one character that is not whitespace")
    return label


def _finite(ge: float, le: Optional[float] = None, description: str = "") -> Any:
    return Field(None, ge=ge, le=le, allow_inf_nan=False, description=description)


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


class Category(BaseModel):
    id: int
    name: str
    score: float


class ClassificationResult(BaseModel):
    categories: list[Category]
    image: Optional[str] = None


Score = Annotated[StrictFloat, Field(ge=0, le=1, allow_inf_nan=False)]
Threshold = Union[Score, dict[Union[Literal["default"], int], Score], list[Score]]


# ----------------------------------------------------------------------- PP-ShiTuV2
_CHANGED_ONLY = Field(False, description="Return only the changed ids (addedIds/removedIds, idMap of the "
                                         "changed entries, indexSize) instead of the whole idMap")


class BuildIndexResult(BaseModel):
    indexKey: str
    idMap: dict[int, str]


class IndexChangeResult(BaseModel):
    idMap: dict[int, str]
    addedIds: Optional[list[int]] = None
    removedIds: Optional[list[int]] = None
    indexSize: Optional[int] = None


class RecResult(BaseModel):
    label: str
    score: float


class DetectedObject(BaseModel):
    bbox: list[float]
    recResults: list[RecResult] = Field(description="gallery matches, best first (IP: cosine similarity, higher "
                                                    "is better; L2: squared distance, lower is better); empty when "
                                                    "the box is rejected")
    score: float = Field(description="detection score; 0.0 for the whole-image box")
    rejected: bool = Field(description="true when the best match failed recThreshold (recResults is then empty)")


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


class IndexItem(BaseModel):
    id: int
    label: str
    source: Optional[str] = Field(None, description="where the image came from, when recorded: the URL an "
                                                    "add or build fetched it from, or the file the CLI read")


class IndexItems(BaseModel):
    indexKey: str
    total: int = Field(description="items that match the label filter (all items without one)")
    offset: int
    items: list[IndexItem] = Field(description="by id, at most `limit` of them from `offset` on")


class DeleteIndexResult(BaseModel):
    indexKey: str
    deleted: bool


# ----------------------------------------------------------------------- requests
GALLERY_CROPS = ("none", "best", "all")
_CROP_HELP = ("How gallery images are cut before embedding: none (the whole image), best (the best detected box; "
              "the whole image when nothing is detected) or all (every detected box, each an item of its own); "
              "a pipeline without a detector offers none only.")

@cache
def request_models(max_topk: int = ServingConfig.max_topk,
                   max_label_length: int = ServingConfig.max_label_length,
                   gallery_crops: tuple[str, ...] = GALLERY_CROPS) -> SimpleNamespace:
    """The request models for a service whose ``Serving.max_topk`` and ``Serving.max_label_length``
    are these, and whose pipeline can cut gallery images these ways (one set per distinct
    combination, made once)."""
    GalleryCrop = Literal[gallery_crops]  # type: ignore[valid-type]  # what this pipeline can do
    TopK = Optional[Annotated[int, Field(gt=0, le=max_topk), BeforeValidator(_json_number)]]
    Label = Annotated[str, Field(max_length=max_label_length, json_schema_extra={"pattern": LABEL_PATTERN},
                                 description="the class or item name (no control characters or line "
                                             "separators)"),
                      AfterValidator(check_label)]

    class InferenceParams(_Body):
        topK: TopK = None

    class ImageClassificationRequest(_Body):
        image: ImageField
        topk: TopK = None
        inferenceParams: Optional[InferenceParams] = Field(None, description="PaddleX 3.0-beta1 form of topk")
        visualize: Visualize = _VISUALIZE

    class MultiLabelRequest(_Body):
        image: ImageField
        threshold: Optional[Threshold] = Field(
            None, description="float, {default: float, <class id>: float} or one float per class, each within "
                              "0..1; scores above it are kept")
        visualize: Visualize = _VISUALIZE

    class ImageLabelPair(_Body):
        image: ImageField
        label: Label

    class BuildIndexRequest(_Body):
        center: Optional[StrictBool] = Field(
            None, description="Centre the features on this gallery's mean (learned here, kept for later additions "
                              "and applied to queries; docs/recognition.md). Default: the pipeline config's "
                              "index_options")
        whiten: Optional[StrictBool] = Field(
            None, description="Also whiten them (shrinkage PCA learned from this gallery; implies centring). "
                              "Default: the pipeline config's index_options")
        queryExpansion: Optional[Annotated[int, Field(ge=0, le=20), BeforeValidator(_json_number)]] = Field(
            None, description="Query expansion: each query is averaged with this many nearest gallery items "
                              "(weights score**3) and searched again; 0 = off. Default: the config's index_options")
        imageLabelPairs: Annotated[list[ImageLabelPair], Field(min_length=1)]
        crop: Optional[GalleryCrop] = Field(None, description=_CROP_HELP + " Default: the pipeline's gallery_crop "
                                                                          "(none, as PaddleX).")

    class AddImagesToIndexRequest(_Body):
        imageLabelPairs: Annotated[list[ImageLabelPair], Field(min_length=1)]
        indexKey: IndexKey
        changedOnly: StrictBool = _CHANGED_ONLY
        crop: Optional[GalleryCrop] = Field(None, description=_CROP_HELP + " Default: the index's own; another "
                                                                          "mode than the index's is refused (400).")

    class RemoveImagesFromIndexRequest(_Body):
        ids: Annotated[list[Annotated[int, Field(ge=0, le=ID_MAX), BeforeValidator(_json_number)]],
                       Field(min_length=1)]
        indexKey: IndexKey
        changedOnly: StrictBool = _CHANGED_ONLY

    class ShiTuInferRequest(_Body):
        """For a pipeline whose config names a default index (used when ``indexKey`` is left out)."""

        image: ImageField
        indexKey: Optional[IndexKey] = None
        detThreshold: Optional[StrictFloat] = _finite(0, 1, "detector score threshold, 0..1")
        recThreshold: Optional[StrictFloat] = _finite(
            -1, 4, "recognition threshold: a cosine similarity (-1..1) on inner-product indexes, a squared L2 "
                   "distance (0..4) on L2 ones (features are L2-normalised)")
        hammingRadius: Optional[StrictFloat] = _finite(0, None, "PaddleX's, for binary indexes (>= 0)")
        topk: TopK = None
        singleMainbody: Optional[StrictBool] = Field(None, description="true: only the best detected box of the "
                                                                       "image is recognised (one answer per photo)")
        maxDetResults: Optional[Annotated[int, Field(ge=1, le=1000), BeforeValidator(_json_number)]] = Field(
            None, description="recognise at most this many detected boxes, the best by mainbodyOrder")
        mainbodyOrder: Optional[Literal["score", "area"]] = Field(
            None, description="what the best box is for singleMainbody/maxDetResults: by detection score or area")
        visualize: Visualize = _VISUALIZE

    class ShiTuInferKeyedRequest(ShiTuInferRequest):
        """For a pipeline without a default index: ``indexKey`` is required."""

        indexKey: IndexKey

    return SimpleNamespace(**{model.__name__: model for model in (
        InferenceParams, ImageClassificationRequest, MultiLabelRequest, ImageLabelPair, BuildIndexRequest,
        AddImagesToIndexRequest, RemoveImagesFromIndexRequest, ShiTuInferRequest, ShiTuInferKeyedRequest)})


_DEFAULT = request_models()
InferenceParams = _DEFAULT.InferenceParams
ImageClassificationRequest = _DEFAULT.ImageClassificationRequest
MultiLabelRequest = _DEFAULT.MultiLabelRequest
ImageLabelPair = _DEFAULT.ImageLabelPair
BuildIndexRequest = _DEFAULT.BuildIndexRequest
AddImagesToIndexRequest = _DEFAULT.AddImagesToIndexRequest
RemoveImagesFromIndexRequest = _DEFAULT.RemoveImagesFromIndexRequest
ShiTuInferRequest = _DEFAULT.ShiTuInferRequest
ShiTuInferKeyedRequest = _DEFAULT.ShiTuInferKeyedRequest
