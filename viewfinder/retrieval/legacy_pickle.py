"""Reading PaddleClas-era index folders (``vector.index`` + ``id_map.pkl``) without trusting the pickle.

PaddleClas's ``build_gallery.py`` and PaddleX 3.0-beta's ``FaissBuilder`` saved the id map as
a pickle of ``{int id: str}``: the full gallery line (``path<TAB>label``, PaddleClas) or the
label alone (PaddleX 3.0-beta), with ids that may be numpy integers. ``pickle.load`` runs any
code a file asks for, so a shared or downloaded folder could take over the process; this
unpickler rebuilds only dicts, lists, ints, strings and numpy integer/float scalars, and
refuses every other global by name, before anything is called.

:func:`paddleclas_document` turns the map into the document ``IndexData`` loads, with the
index type and metric read from the faiss file itself (the pickle does not record them).
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval import faiss_factory as ff

PICKLE_FILE = "id_map.pkl"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_MAX_BYTES = 1 << 30  # an id map of tens of millions of entries; beyond, not a PaddleClas file


class _Refused(pickle.UnpicklingError):
    """A global or value this reader will not build (as opposed to a damaged file)."""


def _numpy_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.kind not in "biuf":  # objects, strings, structured types: none belongs in an id map
        raise _Refused(f"numpy dtype {dtype} is not allowed in an id map")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar`` for plain numbers only (how numpy pickles an np.int64)."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes) \
            or len(data) != dtype.itemsize:
        raise _Refused("only numpy integer and float scalars are allowed in an id map")
    return np.frombuffer(data, dtype=dtype)[0]


# module, name -> what the unpickler may call for it; nothing else resolves
_ALLOWED = {
    ("builtins", "dict"): dict, ("builtins", "list"): list, ("builtins", "int"): int, ("builtins", "str"): str,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED`` (no ``os.system``, no ``eval``)."""

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module  # protocol <= 2 spells it the Python 2 way
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise _Refused(f"global {module}.{name} is not allowed")
        return allowed


def safe_load_id_map(path: str | Path) -> dict[int, str]:
    """``{int id: str}`` from a PaddleClas / PaddleX 3.0-beta ``id_map.pkl``, refusing anything else."""
    file = Path(path)
    if file.stat().st_size > _MAX_BYTES:
        raise RetrievalIndexError(f"{file}: {file.stat().st_size} bytes is too large for an id map")
    try:
        raw = SafeUnpickler(io.BytesIO(file.read_bytes())).load()
    except _Refused as exc:
        raise RetrievalIndexError(f"{file} was refused: {exc}; viewfinder reads only a pickled dict of "
                                  "int ids to strings (PaddleClas's id map) and runs nothing from it") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise RetrievalIndexError(f"{file} is not a readable id map pickle: {exc}") from None
    if not isinstance(raw, dict):
        raise RetrievalIndexError(f"{file} holds a {type(raw).__name__}, not a dict of id -> label")
    out: dict[int, str] = {}
    for key, value in raw.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
            raise RetrievalIndexError(f"{file}: id {key!r} is not an integer")
        if not isinstance(value, str):
            raise RetrievalIndexError(f"{file}: the entry of id {int(key)} is a {type(value).__name__}, not a string")
        out[int(key)] = value
    return out


def split_entry(entry: str) -> tuple[str | None, str]:
    """(gallery path or None, label) of one id-map value.

    PaddleClas stored the whole gallery line (``path<TAB>label``; its search read the second
    whitespace field); PaddleX 3.0-beta stored the label.
    """
    if "\t" in entry:
        path, _, label = entry.partition("\t")
        return path.strip() or None, label.strip()
    fields = entry.split()
    if len(fields) == 2 and fields[0].lower().endswith(_IMAGE_SUFFIXES):
        return fields[0], fields[1]
    return None, entry.strip()


def paddleclas_document(index: faiss.Index, pickle_path: str | Path) -> dict[str, Any]:
    """The ``id_map.yaml``-shaped document of a PaddleClas-era folder (type and metric from the faiss file)."""
    try:
        kind = ff.describe(index)[0]
    except RetrievalIndexError as exc:
        raise RetrievalIndexError(f"{Path(pickle_path).parent}: {exc}") from None
    metric = {faiss.METRIC_INNER_PRODUCT: "IP", faiss.METRIC_L2: "L2"}.get(index.metric_type)
    if metric is None:
        raise RetrievalIndexError(f"{Path(pickle_path).parent}: vector.index uses faiss metric "
                                  f"{index.metric_type}; viewfinder reads IP and L2 indexes")
    labels: dict[int, str] = {}
    metadata: dict[int, str] = {}  # JSON, as IndexData saves non-string metadata
    for i, entry in safe_load_id_map(pickle_path).items():
        path, label = split_entry(entry)
        if not label:
            raise RetrievalIndexError(f"{pickle_path}: id {i} has an empty label")
        labels[i] = label
        if path:
            metadata[i] = json.dumps({"path": path}, ensure_ascii=False)
    return {"index_type": kind, "metric_type": metric, "id_map": labels, "metadata_json": metadata}
