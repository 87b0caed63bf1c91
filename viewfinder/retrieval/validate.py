"""Input checks shared by build/append/remove/search: fail early, say exactly what is wrong."""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import numpy as np

from viewfinder.errors import RetrievalIndexError

_SHOW = 10  # how many offending rows/ids an error message lists


def _preview(values: Iterable[Any]) -> str:
    values = list(values)
    more = f" ... ({len(values)} in total)" if len(values) > _SHOW else ""
    return "[" + ", ".join(str(v) for v in values[:_SHOW]) + "]" + more


def as_matrix(x: Any, dim: int | None, what: str = "features") -> np.ndarray:
    """Coerce to a C-contiguous float32 [n, d] array; a 1-D vector is one row.

    Rejects empty input, a dimension other than ``dim`` and NaN/inf values (faiss would
    silently index or return garbage for those).
    """
    if (type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous
            and x.ndim in (1, 2) and x.size and (dim is None or x.shape[-1] == dim)
            and np.isfinite(x).all()):
        return x if x.ndim == 2 else x[None, :]  # the common case, checked cheaply
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise RetrievalIndexError(f"{what} cannot be read as a numeric array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise RetrievalIndexError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise RetrievalIndexError(f"{what} is empty (0 vectors), shape {arr.shape}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise RetrievalIndexError(f"{what} must be a 1-D vector or a 2-D [n, dim] array, "
                                  f"got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise RetrievalIndexError(f"{what} have dimension {arr.shape[1]}, the index has dimension {dim}")
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf, reported below
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise RetrievalIndexError(f"{what} contain NaN or inf (or values beyond float32 range) "
                                  f"in rows {_preview(bad.tolist())}")
    return arr


def as_labels(labels: Any, n: int) -> list[str]:
    """Labels as a list of ``n`` strings; ints are accepted and turned into strings."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (Sequence, np.ndarray)):
        raise RetrievalIndexError(f"labels must be a list of strings, got {type(labels).__name__}")
    if len(labels) != n:
        raise RetrievalIndexError(f"got {n} vectors but {len(labels)} labels; they must match")
    out: list[str] = []
    for i, lab in enumerate(labels):
        if isinstance(lab, np.generic):
            lab = lab.item()
        if isinstance(lab, bool) or not isinstance(lab, (str, int)):
            raise RetrievalIndexError(f"label {i} must be a string, got {type(lab).__name__}: {lab!r}")
        out.append(str(lab))
    return out


def as_label_list(labels: Any) -> list[str]:
    """Labels to remove: one string or a list of them (de-duplicated, in order)."""
    if isinstance(labels, (str, int)) and not isinstance(labels, bool):
        labels = [labels]
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, Sequence) or isinstance(labels, bytes):
        raise RetrievalIndexError(f"labels must be a string or a list of strings, got {type(labels).__name__}")
    return list(dict.fromkeys(as_labels(list(labels), len(labels))))


def as_metadata(metadata: Any, n: int) -> list[Any] | None:
    """Optional per-item metadata: None, a string (e.g. source path) or a JSON-able value."""
    if metadata is None:
        return None
    if isinstance(metadata, (str, bytes)) or not isinstance(metadata, (Sequence, np.ndarray)):
        raise RetrievalIndexError("metadata must be a list with one entry per vector")
    if len(metadata) != n:
        raise RetrievalIndexError(f"got {n} vectors but {len(metadata)} metadata entries; they must match")
    out = list(metadata)
    for i, item in enumerate(out):
        if item is None or isinstance(item, str):
            continue
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RetrievalIndexError(f"metadata entry {i} is not JSON-serialisable: {exc}") from None
    return out


def as_ids(ids: Any) -> np.ndarray:
    """Ids as a sorted, de-duplicated int64 array (a single int is one id)."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise RetrievalIndexError(f"ids must be an int or a 1-D list of ints, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        return np.unique(arr.astype(np.int64))
    if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return np.unique(arr.astype(np.int64))
    raise RetrievalIndexError(f"ids must be integers, got {_preview(arr.tolist())}")


def as_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise RetrievalIndexError(f"k must be a positive integer, got {k!r}")
    return int(k)
