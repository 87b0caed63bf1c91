"""Creating, filling, inspecting and taking apart faiss indexes of the three supported kinds.

Layouts (chosen so every kind supports stable int64 ids and removal):

* ``Flat``   -> ``IndexIDMap(IndexFlat)``: exact; faiss removes for real.
* ``HNSW32`` -> ``IndexIDMap(IndexHNSWFlat, M=32)``: faiss cannot remove from HNSW, so the
  caller keeps tombstones and rebuilds from the vectors the graph stores (no second copy).
* ``IVF``    -> ``IndexIVFFlat`` holding the external ids itself. PaddleX wraps IVF in
  ``IndexIDMap2``, which is broken after ``remove_ids`` (the IVF keeps its old positions while
  the map shifts, so results come back as -1); such files are converted on load.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import faiss
import numpy as np

from viewfinder.errors import RetrievalIndexError

INDEX_TYPES = ("Flat", "IVF", "HNSW32")
METRIC_TYPES = ("IP", "L2")

_INDEX_ALIASES = {
    "flat": "Flat", "idmap,flat": "Flat",
    "ivf": "IVF", "ivfflat": "IVF", "ivf,flat": "IVF",
    "hnsw": "HNSW32", "hnsw32": "HNSW32", "hnswflat": "HNSW32", "hnsw32,flat": "HNSW32",
}
_METRIC_ALIASES = {
    "ip": "IP", "inner_product": "IP", "innerproduct": "IP",
    "l2": "L2", "euclidean": "L2",
}
_FAISS_METRIC = {"IP": faiss.METRIC_INNER_PRODUCT, "L2": faiss.METRIC_L2}

HNSW_M = 32
# Tuned on clustered 512-d unit vectors at 100k (docs/retrieval.md): efConstruction 40 (faiss
# default) caps recall@1 near 0.97 whatever efSearch is; 80 reaches 0.999 at efSearch 128.
DEFAULT_EF_CONSTRUCTION = 80
DEFAULT_EF_SEARCH = 128
DEFAULT_COMPACT_THRESHOLD = 0.3
# k-means needs ~39 points per centroid (faiss warns below); 64 keeps training fast.
_IVF_MIN_POINTS_PER_LIST = 39
_IVF_TRAIN_POINTS_PER_LIST = 64


def normalize_index_type(value: Any) -> str:
    """Map PaddleX spellings ("HNSW32", "hnsw", "flat", "IVF", ...) to a canonical name."""
    key = str(value).strip().lower().replace(" ", "") if isinstance(value, str) else None
    if key in _INDEX_ALIASES:
        return _INDEX_ALIASES[key]
    hint = " (binary hamming indexes are not supported)" if key in ("binaryhash", "bflat") else ""
    raise RetrievalIndexError(
        f"index_type {value!r} is not supported; use one of {', '.join(INDEX_TYPES)}{hint}")


def normalize_metric_type(value: Any) -> str:
    key = str(value).strip().lower() if isinstance(value, str) else None
    if key in _METRIC_ALIASES:
        return _METRIC_ALIASES[key]
    hint = " (binary hamming indexes are not supported)" if key == "hamming" else ""
    raise RetrievalIndexError(
        f"metric_type {value!r} is not supported; use IP (inner product, higher is better) "
        f"or L2 (squared distance, lower is better){hint}")


def faiss_metric(metric_type: str) -> int:
    return _FAISS_METRIC[metric_type]


def auto_nlist(n: int) -> int:
    """IVF list count for ``n`` vectors: ~4*sqrt(n), but never fewer than 39 points per list.

    PaddleX uses n//8, which is 0 (a crash) below 8 vectors and far too many lists to
    train well; small galleries here degrade to one list, i.e. exact search.
    """
    if n <= 0:
        return 1
    return int(max(1, min(int(4 * math.sqrt(n)), n // _IVF_MIN_POINTS_PER_LIST, 65536)))


def auto_nprobe(nlist: int) -> int:
    """Lists visited per query: at least 16 (PaddleX leaves faiss's 1), ~1.5% of the lists."""
    return int(min(nlist, max(16, nlist // 64)))


@dataclass
class IndexParams:
    """Tunables persisted with the index. ``None`` for nlist/nprobe means "chosen from N"."""

    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    ef_search: int = DEFAULT_EF_SEARCH
    nlist: int | None = None
    nprobe: int | None = None
    compact_threshold: float = DEFAULT_COMPACT_THRESHOLD
    ivf_trained_size: int = 0  # vectors the IVF was last trained on (for "outgrown" checks)

    def __post_init__(self) -> None:
        for name in ("ef_construction", "ef_search", "nlist", "nprobe"):
            v = getattr(self, name)
            if v is None and name in ("nlist", "nprobe"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise RetrievalIndexError(f"{name} must be a positive integer, got {v!r}")
            setattr(self, name, int(v))
        t = self.compact_threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < float(t) <= 1.0:
            raise RetrievalIndexError(f"compact_threshold must be in (0, 1], got {t!r}")
        self.compact_threshold = float(t)
        if isinstance(self.ivf_trained_size, bool) or not isinstance(self.ivf_trained_size, (int, np.integer)) \
                or self.ivf_trained_size < 0:
            raise RetrievalIndexError(f"ivf_trained_size must be >= 0, got {self.ivf_trained_size!r}")
        self.ivf_trained_size = int(self.ivf_trained_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> "IndexParams":
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise RetrievalIndexError(f"params must be a mapping, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def new_empty(index_type: str, metric_type: str, dim: int, params: IndexParams,
              nlist: int = 1) -> faiss.Index:
    """An empty index; an IVF one is untrained (see :func:`train_ivf`)."""
    metric = faiss_metric(metric_type)
    if index_type == "Flat":
        return faiss.IndexIDMap(faiss.IndexFlat(dim, metric))
    if index_type == "HNSW32":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, metric)
        inner.hnsw.efConstruction = params.ef_construction
        inner.hnsw.efSearch = params.ef_search
        return faiss.IndexIDMap(inner)
    if index_type == "IVF":
        quantizer = faiss.IndexFlat(dim, metric)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        ivf.nprobe = params.nprobe or auto_nprobe(nlist)
        return ivf
    raise RetrievalIndexError(f"unknown index_type {index_type!r}")


def train_ivf(ivf: faiss.IndexIVFFlat, vectors: np.ndarray) -> None:
    nlist = ivf.nlist
    if nlist == 1:
        # One list needs no k-means (and faiss would warn about too few points).
        ivf.quantizer.add(vectors.mean(axis=0, keepdims=True).astype(np.float32))
        ivf.is_trained = True
        return
    limit = _IVF_TRAIN_POINTS_PER_LIST * nlist
    if len(vectors) > limit:
        rows = np.random.default_rng(1234).choice(len(vectors), limit, replace=False)
        vectors = vectors[np.sort(rows)]
    ivf.train(vectors)


def build_filled(index_type: str, metric_type: str, dim: int, params: IndexParams,
                 vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
    """A new index holding ``vectors`` under ``ids``; IVF is trained on them first."""
    if index_type == "IVF":
        nlist = params.nlist or auto_nlist(len(vectors))
        index = new_empty(index_type, metric_type, dim, params, nlist=nlist)
        train_ivf(index, vectors)
        params.ivf_trained_size = len(vectors)
    else:
        index = new_empty(index_type, metric_type, dim, params)
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index


def describe(index: faiss.Index) -> tuple[str, faiss.Index, np.ndarray | None]:
    """(kind, inner index, id map of an IDMap wrapper or None) of a loaded faiss index."""
    outer = faiss.downcast_index(index)
    id_map = None
    inner = outer
    if isinstance(outer, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        id_map = faiss.vector_to_array(outer.id_map).astype(np.int64, copy=False)
        inner = faiss.downcast_index(outer.index)
    if isinstance(inner, faiss.IndexHNSWFlat):
        return "HNSW32", inner, id_map
    if isinstance(inner, faiss.IndexIVFFlat):
        return "IVF", inner, id_map
    if type(inner) in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2):
        return "Flat", inner, id_map
    raise RetrievalIndexError(f"unsupported faiss index class {type(inner).__name__} "
                              f"(expected Flat, IVF,Flat or HNSW32)")


def _ivf_lists(ivf: faiss.IndexIVF, with_codes: bool) -> tuple[np.ndarray, np.ndarray | None]:
    invlists = ivf.invlists
    code_size = invlists.code_size
    all_ids, all_codes = [], []
    for lst in range(ivf.nlist):
        size = invlists.list_size(lst)
        if size == 0:
            continue
        ptr = invlists.get_ids(lst)
        all_ids.append(faiss.rev_swig_ptr(ptr, size).copy())
        invlists.release_ids(lst, ptr)
        if with_codes:
            cptr = invlists.get_codes(lst)
            all_codes.append(faiss.rev_swig_ptr(cptr, size * code_size).copy())
            invlists.release_codes(lst, cptr)
    ids = np.concatenate(all_ids).astype(np.int64) if all_ids else np.empty(0, np.int64)
    if not with_codes:
        return ids, None
    codes = np.concatenate(all_codes) if all_codes else np.empty(0, np.uint8)
    return ids, codes.view(np.float32).reshape(len(ids), ivf.d)


def stored_ids(index: faiss.Index) -> np.ndarray:
    """External ids of every vector stored in ``index`` (tombstoned ones included)."""
    kind, inner, id_map = describe(index)
    if id_map is not None:
        if kind == "IVF":
            return id_map[_ivf_lists(inner, with_codes=False)[0]]
        return id_map
    if kind == "IVF":
        return _ivf_lists(inner, with_codes=False)[0]
    raise RetrievalIndexError(f"a bare {kind} faiss index has no ids; expected an IndexIDMap wrapper")


def extract(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(vectors float32 [n, d], external ids int64 [n]) stored in ``index`` (a copy)."""
    kind, inner, id_map = describe(index)
    if kind == "IVF":
        inner_ids, vectors = _ivf_lists(inner, with_codes=True)
        if id_map is None:
            return vectors, inner_ids
        if inner_ids.size and (inner_ids.min() < 0 or inner_ids.max() >= len(id_map)):
            raise RetrievalIndexError(
                "vector.index is an IndexIDMap over IVF whose inner ids no longer match its id map "
                "(PaddleX's IVF remove corrupts it this way); rebuild the index from the gallery")
        return vectors, id_map[inner_ids]
    if id_map is None:
        raise RetrievalIndexError(f"a bare {kind} faiss index has no ids; expected an IndexIDMap wrapper")
    if index.ntotal == 0:
        return np.empty((0, index.d), np.float32), np.empty(0, np.int64)
    storage = inner.storage if kind == "HNSW32" else inner
    vectors = faiss.downcast_index(storage).reconstruct_n(0, index.ntotal)
    return np.ascontiguousarray(vectors, dtype=np.float32), id_map.copy()


def search_params(kind: str, *, ef_search: int | None = None, nprobe: int | None = None,
                  selector: Any = None) -> Any:
    """Per-call faiss SearchParameters, so concurrent readers never mutate shared state."""
    kwargs: dict[str, Any] = {}
    if selector is not None:
        kwargs["sel"] = selector
    if kind == "HNSW32":
        return faiss.SearchParametersHNSW(efSearch=int(ef_search), **kwargs)
    if kind == "IVF":
        return faiss.SearchParametersIVF(nprobe=int(nprobe), **kwargs)
    return faiss.SearchParameters(**kwargs) if kwargs else None
