"""The gallery interface: what the pipeline, the CLI and the service use, whichever backend holds it.

Two implementations with the same semantics (tests/test_gallery_conformance.py runs one suite on both):

* :class:`~viewfinder.retrieval.index.IndexData` - faiss in this process; a folder on disk
  (``save``/``load``), PaddleX's layout;
* :class:`~viewfinder.retrieval.milvus_backend.MilvusGallery` - a Milvus collection (Milvus Lite
  in a file, or a server); every change is written through, so several processes share it.

Semantics both keep: ids are int64, handed out consecutively from ``next_id`` and never reused;
removing an unknown id (or a label no item has) is an error and removes nothing; scores are
inner products (IP, higher is better) or squared L2 distances (lower is better); empty result
slots have id -1, label None and the worst score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import numpy as np


@dataclass
class GalleryItems:
    """Every live item of a gallery (for copying one between backends), sorted by id."""

    ids: np.ndarray                     # int64 [n]
    vectors: np.ndarray                 # float32 [n, dim]
    labels: list[str]
    metadata: list[Any] = field(default_factory=list)  # one per item; None where there is none


class Gallery(Protocol):
    """A searchable gallery of labelled vectors (see the module docstring for the shared semantics).

    For type checks only: at run time use :func:`is_gallery` (``isinstance`` on a protocol would
    evaluate properties such as ``id_map``, a full scan on Milvus).
    """

    @property
    def dim(self) -> int: ...
    @property
    def index_type(self) -> str: ...      # Flat | IVF | HNSW32
    @property
    def metric_type(self) -> str: ...     # IP | L2
    @property
    def higher_is_better(self) -> bool: ...
    @property
    def worst_score(self) -> float: ...
    @property
    def next_id(self) -> int: ...
    @property
    def feature_model(self) -> dict[str, Any] | None: ...
    @property
    def id_map(self) -> dict[int, str]: ...

    def __len__(self) -> int: ...
    def append(self, features: Any, labels: Any, metadata: Any = None) -> np.ndarray: ...
    def remove(self, ids: Any, *, ignore_missing: bool = False) -> np.ndarray: ...
    def remove_labels(self, labels: Any, *, ignore_missing: bool = False) -> np.ndarray: ...
    def search(self, queries: Any, k: int = 5, *, ef_search: int | None = None,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray, list[list[str | None]]]: ...
    def passes(self, score: float | None, threshold: float) -> bool: ...
    def is_better(self, a: float, b: float) -> bool: ...
    def get_labels(self, ids: Iterable[int]) -> list[str | None]: ...
    def get_metadata(self, ids: Iterable[int]) -> list[Any]: ...
    def info(self) -> dict[str, Any]: ...
    def export_items(self) -> GalleryItems: ...


def is_gallery(obj: object) -> bool:
    """Whether ``obj`` is a gallery object (not a location), judged from its class's methods alone."""
    kind = type(obj)
    return all(callable(getattr(kind, name, None)) for name in ("search", "append", "remove", "get_labels", "passes"))


class ScoreRules:
    """Metric-aware comparisons, for a class with a ``metric_type`` attribute (IP or L2)."""

    metric_type: str

    @property
    def higher_is_better(self) -> bool:
        return self.metric_type == "IP"

    @property
    def worst_score(self) -> float:
        return -math.inf if self.higher_is_better else math.inf

    def passes(self, score: float | None, threshold: float) -> bool:
        """``score >= threshold`` for IP similarities, ``<=`` for L2 distances."""
        if score is None or math.isnan(score):
            return False
        return score >= threshold if self.higher_is_better else score <= threshold

    def is_better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


def score_meaning(metric_type: str) -> str:
    return "inner product, higher is better" if metric_type == "IP" else "squared L2 distance, lower is better"
