"""``IndexData``: a faiss vector index with stable ids, labels, removal and safe persistence.

Keeps PaddleX's name, file layout and vocabulary (index_type Flat/IVF/HNSW32, metric_type
IP/L2, ``id_map``), and fixes its defects: removal works on HNSW32, IVF is sized and probed
sensibly, L2 scores are treated as distances, saves are crash-safe and loads are checked.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from typing import Any, Iterable

import faiss
import numpy as np

from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval import faiss_factory as ff
from viewfinder.retrieval import storage
from viewfinder.retrieval.backend import GalleryItems
from viewfinder.retrieval.locks import RWLock
from viewfinder.retrieval.threads import apply_thread_cap
from viewfinder.retrieval.transform import FeatureTransform, check_query_expansion, expand_queries
from viewfinder.retrieval.validate import _preview, as_ids, as_k, as_label_list, as_labels, as_matrix, as_metadata

log = logging.getLogger(__name__)

FORMAT_NAME = "viewfinder-index"
FORMAT_VERSION = 2
#: version 2 adds feature_transform / query_expansion; an index without them is still written as
#: version 1, so builds that predate them read it, and refuse (not mis-search) one that has them
PLAIN_FORMAT_VERSION = 1
# IVF is retrained once the list count chosen for the current size is this many times the
# trained one (nlist ~ sqrt(N), so roughly when N has grown 4x).
_IVF_REGROW_FACTOR = 2


class IndexData:
    """A searchable gallery of float32 vectors with int64 ids and string labels.

    Scores: with ``metric_type="IP"`` the inner product (cosine for unit vectors), higher is
    better; with ``"L2"`` the *squared* Euclidean distance (what faiss and PaddleX report),
    lower is better. Use :meth:`passes` / :meth:`is_better` instead of comparing by hand.
    Empty result slots have id -1, label None and score -inf (IP) / +inf (L2).

    Thread safety: searches, saves and reads run in parallel; append/remove/compact take an
    exclusive lock. faiss's OpenMP threads are capped (see ``viewfinder.retrieval.threads``).
    """

    # ------------------------------------------------------------------ construction
    def __init__(self, dim: int, index_type: str = "HNSW32", metric_type: str = "IP", *,
                 ef_construction: int | None = None, ef_search: int | None = None,
                 nlist: int | None = None, nprobe: int | None = None,
                 compact_threshold: float | None = None) -> None:
        """An empty index of dimension ``dim``; most callers want :meth:`build` or :meth:`load`."""
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise RetrievalIndexError(f"dim must be a positive integer, got {dim!r}")
        params = ff.IndexParams(**{k: v for k, v in dict(
            ef_construction=ef_construction, ef_search=ef_search, nlist=nlist, nprobe=nprobe,
            compact_threshold=compact_threshold).items() if v is not None})
        self._lock = RWLock()
        self._index_type = ff.normalize_index_type(index_type)
        self._metric_type = ff.normalize_metric_type(metric_type)
        self._dim = int(dim)
        self._params = params
        self._labels: dict[int, str] = {}
        self._metadata: dict[int, Any] = {}
        self._deleted: set[int] = set()
        self._selector: tuple[Any, Any] | None = None  # (IDSelectorNot, IDSelectorBatch it refers to)
        self._next_id = 0
        self._feature_model: dict[str, Any] | None = None
        # training-free remedies (retrieval/transform.py): learned at build, recorded next to feature_model
        self._feature_transform: FeatureTransform | None = None
        self._query_expansion: dict[str, Any] | None = None
        self._qe_cache: tuple[tuple[int, int], dict[int, int], np.ndarray] | None = None
        apply_thread_cap()
        self._set_faiss(ff.new_empty(self._index_type, self._metric_type, self._dim, params))

    @classmethod
    def build(cls, features: Any, labels: Any, index_type: str = "HNSW32", metric_type: str = "IP",
              metadata: Any = None, **params: Any) -> "IndexData":
        """A new index over ``features`` [n, dim] with ``labels`` (ids 0..n-1).

        ``params``: ef_construction, ef_search (HNSW32), nlist, nprobe (IVF; default chosen
        from n), compact_threshold (deleted fraction that triggers an HNSW rebuild); ``center``,
        ``whiten`` (learned from these features, then applied to appended vectors and queries alike)
        and ``query_expansion`` (``{"k": 2, "alpha": 3.0}``), see ``viewfinder.retrieval.transform``.
        """
        center, whiten = params.pop("center", False), params.pop("whiten", False)
        query_expansion = params.pop("query_expansion", None)
        for name, flag in (("center", center), ("whiten", whiten)):
            if not isinstance(flag, (bool, np.bool_)):
                raise RetrievalIndexError(f"{name} must be true or false, got {flag!r}")
        x = as_matrix(features, None)
        self = cls(x.shape[1], index_type, metric_type, **params)
        if (center or whiten) and (len(x) < 2 or float(np.ptp(x, axis=0).max()) == 0.0):
            # nothing to learn a mean or a spread from: centring would zero the only vector. Built
            # plain (the index records no transform, `info()` shows it), not refused.
            log.warning("center/whiten skipped: learned from the gallery, they need at least 2 different "
                        "vectors, got %d item(s)", len(x))
        elif center or whiten:
            self._feature_transform = FeatureTransform.learn(x, center=bool(center), whiten=bool(whiten))
        self.query_expansion = query_expansion
        self.append(x, labels, metadata=metadata)
        return self

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric_type(self) -> str:
        return self._metric_type

    @property
    def index_type(self) -> str:
        return self._index_type

    @property
    def higher_is_better(self) -> bool:
        """True for IP (similarity), False for L2 (distance)."""
        return self._metric_type == "IP"

    @property
    def worst_score(self) -> float:
        """The score of an empty result slot: -inf for IP, +inf for L2."""
        return -math.inf if self.higher_is_better else math.inf

    @property
    def id_map(self) -> dict[int, str]:
        """A copy of id -> label for the live (not removed) items."""
        with self._lock.read():
            return dict(self._labels)

    @property
    def metadata(self) -> dict[int, Any]:
        """A copy of id -> metadata for live items that have metadata."""
        with self._lock.read():
            return dict(self._metadata)

    @property
    def ntotal(self) -> int:
        """Vectors held by faiss, including removed-but-not-yet-compacted HNSW ones."""
        return int(self._index.ntotal)

    @property
    def deleted_count(self) -> int:
        return len(self._deleted)

    @property
    def next_id(self) -> int:
        return self._next_id

    @property
    def ef_search(self) -> int:
        return self._params.ef_search

    @property
    def nprobe(self) -> int | None:
        """Lists probed per IVF query (None for other index types)."""
        return int(self._inner.nprobe) if self._index_type == "IVF" else None

    @property
    def nlist(self) -> int | None:
        return int(self._inner.nlist) if self._index_type == "IVF" else None

    @property
    def index(self) -> faiss.Index:
        """The underlying faiss index (PaddleX compatibility; do not mutate it)."""
        return self._index

    @property
    def feature_model(self) -> dict[str, Any] | None:
        """What made the vectors (e.g. ``{"model_name": ..., "feature_dim": ...}``), saved with
        the index; None for indexes built from raw vectors or by PaddleX."""
        with self._lock.read():
            return dict(self._feature_model) if self._feature_model is not None else None

    @feature_model.setter
    def feature_model(self, value: dict[str, Any] | None) -> None:
        if value is not None:
            if not isinstance(value, dict):
                raise RetrievalIndexError(f"feature_model must be a dict or None, got {type(value).__name__}")
            try:
                json.dumps(value, allow_nan=False)  # it is saved as JSON/YAML
            except (TypeError, ValueError) as exc:
                raise RetrievalIndexError(f"feature_model must be JSON-serialisable: {exc}") from None
        with self._lock.write():
            self._feature_model = dict(value) if value is not None else None

    # -- training-free remedies (retrieval/transform.py), recorded in the index like feature_model
    @property
    def feature_transform(self) -> dict[str, Any] | None:
        """``{"center": bool, "whiten": bool, ...}`` learned at build and applied to every vector added
        and every query (None: vectors are stored as given)."""
        return self._feature_transform.describe() if self._feature_transform is not None else None

    @property
    def query_expansion(self) -> dict[str, Any] | None:
        """``{"k", "alpha"}`` of alpha query expansion applied at search, or None."""
        return dict(self._query_expansion) if self._query_expansion else None

    @query_expansion.setter
    def query_expansion(self, value: Any) -> None:
        checked = check_query_expansion(value)
        with self._lock.write():
            self._query_expansion = checked

    def _format_version(self) -> int:
        return FORMAT_VERSION if self._feature_transform is not None or self._query_expansion else PLAIN_FORMAT_VERSION

    def transform_queries(self, queries: Any) -> np.ndarray:
        """Queries as the index compares them (centred/whitened when the index is); no expansion."""
        q = as_matrix(queries, self._dim, what="queries")
        return self._feature_transform.apply(q) if self._feature_transform is not None else q

    def _expanded_locked(self, q: np.ndarray, ef_search: int | None, nprobe: int | None) -> np.ndarray:
        """alpha-QE: each query plus its k nearest gallery vectors, weighted by their scores."""
        qe = self._query_expansion
        if not qe or not self._labels:
            return q
        scores, ids = self._search_locked(q, qe["k"], ef_search, nprobe)
        key = (self._next_id, len(self._labels))
        if self._qe_cache is None or self._qe_cache[0] != key:
            vectors, stored = ff.extract(self._index)
            self._qe_cache = (key, {i: row for row, i in enumerate(stored.tolist())}, vectors)
        _, rows, vectors = self._qe_cache
        neighbours = np.zeros((len(q), qe["k"], self._dim), dtype=np.float32)
        for n, row_ids in enumerate(ids.tolist()):
            for j, i in enumerate(row_ids):
                if i >= 0 and i in rows:
                    neighbours[n, j] = vectors[rows[i]]
        return expand_queries(q, scores, neighbours, qe["alpha"], self.higher_is_better)

    @property
    def index_info(self) -> dict[str, Any]:
        """PaddleX's ``index_info`` dict: index_type, metric_type, id_map."""
        with self._lock.read():
            return {"index_type": self._index_type, "metric_type": self._metric_type,
                    "id_map": dict(self._labels)}

    @property
    def index_bytes(self) -> np.ndarray:
        """``faiss.serialize_index`` of the underlying index (PaddleX compatibility)."""
        with self._lock.read():
            apply_thread_cap()
            return faiss.serialize_index(self._index)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, (int, np.integer)) and int(item_id) in self._labels

    def __repr__(self) -> str:
        return (f"IndexData(index_type={self._index_type!r}, metric_type={self._metric_type!r}, "
                f"dim={self._dim}, size={len(self)}, deleted={self.deleted_count})")

    # ------------------------------------------------------------------ scores
    def passes(self, score: float | None, threshold: float) -> bool:
        """Whether ``score`` meets ``threshold``: ``>=`` for IP, ``<=`` for L2 distances.

        PaddleX applies ``score >= threshold`` to L2 distances too, which rejects good
        matches and accepts bad ones; use this instead.
        """
        if score is None or math.isnan(score):
            return False
        return score >= threshold if self.higher_is_better else score <= threshold

    def is_better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is a strictly better match than ``b`` under this metric."""
        return a > b if self.higher_is_better else a < b

    # ------------------------------------------------------------------ mutation
    def append(self, features: Any, labels: Any, metadata: Any = None) -> np.ndarray:
        """Add vectors; returns their new ids (int64, consecutive, never reused)."""
        x = as_matrix(features, self._dim)
        labs = as_labels(labels, len(x))
        meta = as_metadata(metadata, len(x))
        if self._feature_transform is not None:  # the build's transform, kept fixed (transform.py)
            x = self._feature_transform.apply(x)
        with self._lock.write():
            apply_thread_cap()
            ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
            if self._index_type == "IVF" and self._ivf_needs_training(len(self._labels) + len(x)):
                old_x, old_ids = ff.extract(self._index)
                self._rebuild(np.concatenate([old_x, x]), np.concatenate([old_ids, ids]))
            else:
                self._index.add_with_ids(x, ids)
            self._next_id += len(x)
            for i, lab in zip(ids.tolist(), labs):
                self._labels[i] = lab
            if meta is not None:
                for i, m in zip(ids.tolist(), meta):
                    if m is not None:
                        self._metadata[i] = m
            return ids

    def remove(self, ids: Any, *, ignore_missing: bool = False) -> np.ndarray:
        """Remove items by id; returns the removed ids (sorted).

        Unknown ids (never added, or already removed) raise :class:`RetrievalIndexError`
        listing them, and nothing is removed; with ``ignore_missing=True`` they are skipped.
        On HNSW32 removed ids are filtered at search time and the graph is rebuilt once the
        removed fraction exceeds ``compact_threshold``.
        """
        wanted = as_ids(ids)
        with self._lock.write():
            apply_thread_cap()
            known = np.fromiter((i in self._labels for i in wanted.tolist()), bool, len(wanted))
            if not known.all() and not ignore_missing:
                raise RetrievalIndexError(
                    f"cannot remove ids that are not in the index (never added or already removed): "
                    f"{_preview(wanted[~known].tolist())}; nothing was removed")
            gone = wanted[known]
            if len(gone) == 0:
                return gone
            if self._index_type == "HNSW32":
                self._deleted.update(gone.tolist())
                self._refresh_selector()
            else:
                removed = self._index.remove_ids(gone)
                if removed != len(gone):  # pragma: no cover - would mean faiss and id_map disagree
                    raise RetrievalIndexError(f"faiss removed {removed} of {len(gone)} vectors; "
                                              "the index is inconsistent")
            for i in gone.tolist():
                del self._labels[i]
                self._metadata.pop(i, None)
            # Consistent already (tombstones); compacting is an optimisation that may fail safely.
            if len(self._deleted) > self._params.compact_threshold * self._index.ntotal:
                self._compact_locked()
            return gone

    def remove_labels(self, labels: Any, *, ignore_missing: bool = False) -> np.ndarray:
        """Remove every item whose label is one of ``labels``; returns the removed ids (sorted).

        A label no live item has raises :class:`RetrievalIndexError` listing it, and nothing is
        removed (``ignore_missing=True`` skips it), as :meth:`remove` does for ids.
        """
        wanted = set(as_label_list(labels))
        with self._lock.read():
            ids = [i for i, lab in self._labels.items() if lab in wanted]
            found = {self._labels[i] for i in ids}
        missing = sorted(wanted - found)
        if missing and not ignore_missing:
            raise RetrievalIndexError(f"no item has the label(s) {_preview(missing)}; nothing was removed")
        return self.remove(np.asarray(ids, dtype=np.int64), ignore_missing=ignore_missing)

    def compact(self) -> None:
        """Rebuild now: drops HNSW tombstones; retrains an IVF for its current size."""
        with self._lock.write():
            apply_thread_cap()
            self._compact_locked()

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Trade speed for recall: HNSW ``ef_search`` (default 128), IVF ``nprobe``."""
        with self._lock.write():
            if ef_search is not None:
                self._params.ef_search = ff.IndexParams(ef_search=ef_search).ef_search
                if self._index_type == "HNSW32":
                    self._inner.hnsw.efSearch = self._params.ef_search
            if nprobe is not None:
                self._params.nprobe = ff.IndexParams(nprobe=nprobe).nprobe
                if self._index_type == "IVF":
                    self._inner.nprobe = min(self._params.nprobe, self._inner.nlist)

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int = 5, *, ef_search: int | None = None,
               nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray, list[list[str | None]]]:
        """Top-``k`` per query: (scores [n, k] float32, ids [n, k] int64, labels).

        Rows are best-first. Fewer than ``k`` live items leave empty slots (id -1, label
        None, score -inf for IP / +inf for L2). Removed ids are never returned.
        """
        k = as_k(k)
        q = self.transform_queries(queries)
        if ef_search is not None:
            ef_search = ff.IndexParams(ef_search=ef_search).ef_search
        if nprobe is not None:
            nprobe = ff.IndexParams(nprobe=nprobe).nprobe
        with self._lock.read():
            apply_thread_cap()
            if self._query_expansion:
                q = self._expanded_locked(q, ef_search, nprobe)
            scores, ids = self._search_locked(q, k, ef_search, nprobe)
            labels = [[self._labels.get(i) if i >= 0 else None for i in row] for row in ids.tolist()]
        return scores, ids, labels

    def _search_locked(self, q: np.ndarray, k: int, ef_search: int | None,
                       nprobe: int | None) -> tuple[np.ndarray, np.ndarray]:
        n, live, ntotal = len(q), len(self._labels), int(self._index.ntotal)
        if live == 0:
            return np.full((n, k), self.worst_score, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        kk, need = min(k, ntotal), min(k, live)
        sel = self._selector[0] if self._selector else None
        if self._index_type == "HNSW32":
            default = self._params.ef_search  # also stored in the index: no params needed
            level = ef_search or default
            if sel is not None:  # expect ntotal/live candidates per live hit
                level = max(level, math.ceil(kk * ntotal / live))
            top = max(level, ntotal)
        elif self._index_type == "IVF":
            default = int(self._inner.nprobe)
            top = int(self._inner.nlist)
            level = min(nprobe or default, top)
        else:
            default = level = top = 0

        def run(rows: np.ndarray | slice, lvl: int) -> tuple[np.ndarray, np.ndarray]:
            params = None
            if sel is not None or lvl != default:
                params = ff.search_params(self._index_type, ef_search=lvl, nprobe=lvl, selector=sel)
            return self._index.search(q[rows], kk, params=params)

        dist, found = run(slice(None), level)
        valid = found >= 0
        if need == kk == k and not self._deleted and valid.all():
            return dist, found  # the common case: full rows, nothing to filter or pad
        # HNSW with tombstones, or IVF whose probed lists hold < k vectors, can come back
        # short: search those rows again, wider, until they are full or the search is exhaustive.
        short = valid.sum(axis=1) < need
        while short.any() and level < top:
            level = min(top, level * 4)
            rows = np.flatnonzero(short)
            dist[rows], found[rows] = run(rows, level)
            short[rows] = (found[rows] >= 0).sum(axis=1) < need
        valid = found >= 0
        if self._deleted:  # belt and braces: never leak a tombstone (set lookups, ~n*k of them)
            deleted = self._deleted
            valid &= ~np.fromiter((i in deleted for i in found.ravel().tolist()), bool, found.size
                                  ).reshape(found.shape)
        if not valid.all():
            # Push empty slots to the end of each row, keeping best-first order.
            order = np.argsort(~valid, axis=1, kind="stable")
            found = np.take_along_axis(np.where(valid, found, -1), order, axis=1)
            dist = np.take_along_axis(np.where(valid, dist, self.worst_score), order, axis=1)
        if kk == k:
            return dist, found
        scores = np.full((n, k), self.worst_score, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        ids[:, :kk] = found
        scores[:, :kk] = dist
        return scores, ids

    # ------------------------------------------------------------------ lookups
    def get_labels(self, ids: Iterable[int]) -> list[str | None]:
        """Label per id (None for unknown or removed ids)."""
        with self._lock.read():
            return [self._labels.get(int(i)) for i in ids]

    def get_metadata(self, ids: Iterable[int]) -> list[Any]:
        """Metadata per id (None when absent, unknown or removed)."""
        with self._lock.read():
            return [self._metadata.get(int(i)) for i in ids]

    def info(self) -> dict[str, Any]:
        """A JSON-able summary (what ``viewfinder index info`` prints)."""
        with self._lock.read():
            if self._index_type == "HNSW32":
                params: dict[str, Any] = {"M": ff.HNSW_M, "ef_construction": self._params.ef_construction,
                                          "ef_search": self._params.ef_search,
                                          "compact_threshold": self._params.compact_threshold}
            elif self._index_type == "IVF":
                params = {"nlist": int(self._inner.nlist), "nprobe": int(self._inner.nprobe),
                          "nlist_auto": self._params.nlist is None, "nprobe_auto": self._params.nprobe is None,
                          "trained_on": self._params.ivf_trained_size}
            else:
                params = {}
            return {
                "format": FORMAT_NAME, "format_version": self._format_version(),
                "index_type": self._index_type, "metric_type": self._metric_type,
                "score": "inner product, higher is better" if self.higher_is_better
                         else "squared L2 distance, lower is better",
                "dim": self._dim, "size": len(self._labels), "ntotal": int(self._index.ntotal),
                "deleted": len(self._deleted), "next_id": self._next_id,
                "labels": len(set(self._labels.values())), "with_metadata": len(self._metadata),
                "vector_bytes": int(self._index.ntotal) * self._dim * 4,
                "faiss_class": type(self._inner).__name__, "params": params,
                "feature_model": dict(self._feature_model) if self._feature_model is not None else None,
                "feature_transform": self.feature_transform, "query_expansion": self.query_expansion,
            }

    def export_items(self) -> GalleryItems:
        """Every live item (ids sorted), e.g. to copy the gallery to another backend."""
        with self._lock.read():
            apply_thread_cap()
            vectors, ids = ff.extract(self._index)
            keep = np.fromiter((i in self._labels for i in ids.tolist()), bool, len(ids))
            vectors, ids = vectors[keep], ids[keep]
            order = np.argsort(ids, kind="stable")
            vectors, ids = np.ascontiguousarray(vectors[order], dtype=np.float32), ids[order].astype(np.int64)
            labels = [self._labels[i] for i in ids.tolist()]
            metadata = [copy.deepcopy(self._metadata.get(i)) for i in ids.tolist()]
        return GalleryItems(ids, vectors, labels, metadata)

    @classmethod
    def from_items(cls, items: GalleryItems, *, dim: int, index_type: str = "HNSW32", metric_type: str = "IP",
                   next_id: int | None = None, feature_model: dict[str, Any] | None = None,
                   transform_from: "IndexData | None" = None, **params: Any) -> "IndexData":
        """An index holding ``items`` under their own ids (a copy from another backend).

        ``transform_from``: the index the items were exported from, whose feature transform and
        query expansion the copy keeps (its vectors are already transformed).
        """
        self = cls(dim, index_type, metric_type, **params)
        if transform_from is not None:
            self._feature_transform = copy.deepcopy(transform_from._feature_transform)
            self._query_expansion = copy.deepcopy(transform_from._query_expansion)
        ids = as_ids(items.ids) if len(items.ids) else np.empty(0, np.int64)
        if len(ids) != len(items.ids):
            raise RetrievalIndexError("duplicate ids in the items to copy")
        top = int(ids.max()) + 1 if len(ids) else 0
        if next_id is not None and next_id < top:
            raise RetrievalIndexError(f"next_id {next_id} would reuse ids (largest id is {top - 1})")
        labs = as_labels(items.labels, len(items.ids))
        meta = as_metadata(items.metadata or None, len(items.ids))
        if len(items.ids):
            order = np.argsort(np.asarray(items.ids, dtype=np.int64), kind="stable")
            x = as_matrix(np.asarray(items.vectors)[order], dim)
            with self._lock.write():
                apply_thread_cap()
                self._set_faiss(ff.build_filled(self._index_type, self._metric_type, self._dim, self._params, x, ids))
                for i, j in zip(ids.tolist(), order.tolist()):
                    self._labels[i] = labs[j]
                    if meta is not None and meta[j] is not None:
                        self._metadata[i] = meta[j]
        self._next_id = max(top, next_id or 0)
        self.feature_model = feature_model
        return self

    def copy(self) -> "IndexData":
        """An independent copy (``faiss.clone_index``: no serialising, no checksums).

        What a writer changes while readers keep searching the original (the service does).
        """
        with self._lock.read():
            apply_thread_cap()
            twin = type(self).__new__(type(self))
            twin._lock = RWLock()
            twin._index_type, twin._metric_type, twin._dim = self._index_type, self._metric_type, self._dim
            twin._params = dataclasses.replace(self._params)
            twin._labels, twin._deleted = dict(self._labels), set(self._deleted)
            twin._metadata = copy.deepcopy(self._metadata)  # JSON values may be mutable
            twin._next_id = self._next_id
            twin._feature_model = copy.deepcopy(self._feature_model)
            twin._feature_transform = self._feature_transform  # never mutated once learned
            twin._query_expansion = copy.deepcopy(self._query_expansion)
            twin._qe_cache = None
            twin._selector = None
            twin._set_faiss(faiss.clone_index(self._index))
            twin._refresh_selector()
        return twin

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``vector.index`` + ``id_map.yaml`` into ``directory``, crash-safely."""
        with self._lock.read():
            apply_thread_cap()
            storage.save_folder(directory, lambda path: faiss.write_index(self._index, str(path)), self._doc())

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "IndexData":
        """Load a folder written by :meth:`save` or by PaddleX (``id_map.yaml``/``index_info.yaml``)."""
        apply_thread_cap()
        index, doc, name = storage.load_folder(directory)
        return cls._from_parts(index, doc, f"{directory}/{name}")

    def to_bytes(self) -> bytes:
        """A self-contained blob (JSON header + faiss bytes, no pickle) for :meth:`from_bytes`."""
        payload, doc = self._snapshot()
        return storage.pack(doc, payload)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> "IndexData":
        apply_thread_cap()
        doc, index = storage.unpack(data)
        return cls._from_parts(index, doc, "index blob")

    def _snapshot(self) -> tuple[np.ndarray, dict[str, Any]]:
        with self._lock.read():
            apply_thread_cap()
            return faiss.serialize_index(self._index), self._doc()

    def _doc(self) -> dict[str, Any]:
        """Everything but the vectors, as saved next to them (caller holds the lock)."""
        metadata, metadata_json = {}, {}
        for i, m in self._metadata.items():
            if isinstance(m, str):
                metadata[i] = m
            else:
                metadata_json[i] = json.dumps(m, ensure_ascii=False, allow_nan=False)
        doc: dict[str, Any] = {
            "format": FORMAT_NAME, "format_version": self._format_version(),
            "index_type": self._index_type, "metric_type": self._metric_type,
            "dim": self._dim, "size": len(self._labels), "ntotal": int(self._index.ntotal),
            "next_id": self._next_id, "params": self._params.to_dict(),
            "deleted_ids": sorted(self._deleted),
            "metadata": metadata, "metadata_json": metadata_json,
            "id_map": dict(self._labels),
        }
        if self._feature_model is not None:
            doc["feature_model"] = dict(self._feature_model)
        if self._feature_transform is not None:  # old readers ignore these keys; absent = no transform
            doc["feature_transform"] = self._feature_transform.to_record()
        if self._query_expansion:
            doc["query_expansion"] = dict(self._query_expansion)
        return doc

    @classmethod
    def _from_parts(cls, index: faiss.Index, doc: Any, where: str) -> "IndexData":
        """Validate a (faiss index, document) pair and assemble an IndexData from it."""
        def fail(msg: str) -> RetrievalIndexError:
            return RetrievalIndexError(f"{where}: {msg}")

        if not isinstance(doc, dict):
            raise fail(f"expected a mapping with index_type, metric_type and id_map, got {type(doc).__name__}")
        missing = [key for key in ("index_type", "metric_type", "id_map") if key not in doc]
        if missing:
            raise fail(f"missing key(s) {', '.join(missing)}")
        try:
            index_type = ff.normalize_index_type(doc["index_type"])
            metric_type = ff.normalize_metric_type(doc["metric_type"])
            params = ff.IndexParams.from_dict(doc.get("params"))
        except RetrievalIndexError as exc:
            raise fail(str(exc)) from None
        fmt = doc.get("format_version", FORMAT_VERSION)
        if doc.get("format", FORMAT_NAME) != FORMAT_NAME or not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            raise fail(f"written by a newer or different program (format {doc.get('format')!r} "
                       f"version {fmt!r}); this viewfinder reads {FORMAT_NAME} version <= {FORMAT_VERSION}")
        labels = _int_keyed(doc["id_map"], "id_map", fail)
        metadata = _int_keyed(doc.get("metadata") or {}, "metadata", fail)
        for i, raw in _int_keyed(doc.get("metadata_json") or {}, "metadata_json", fail).items():
            try:
                metadata[i] = json.loads(raw)
            except ValueError as exc:
                raise fail(f"metadata_json entry {i} is not valid JSON: {exc}") from None
        deleted_raw = doc.get("deleted_ids") or []
        if not isinstance(deleted_raw, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                         for i in deleted_raw):
            raise fail("deleted_ids must be a list of integers")
        deleted = set(deleted_raw)
        feature_model = doc.get("feature_model")
        if feature_model is not None and not isinstance(feature_model, dict):
            raise fail(f"feature_model must be a mapping, got {type(feature_model).__name__}")
        try:
            transform = (FeatureTransform.from_record(doc["feature_transform"], int(index.d))
                         if doc.get("feature_transform") is not None else None)
            query_expansion = check_query_expansion(doc.get("query_expansion"))
        except RetrievalIndexError as exc:
            raise fail(str(exc)) from None

        try:
            kind = ff.describe(index)[0]
        except RetrievalIndexError as exc:
            raise fail(str(exc)) from None
        if kind != index_type:
            raise fail(f"index_type says {index_type} but vector.index holds a {kind} index")
        if index.metric_type != ff.faiss_metric(metric_type):
            file_metric = {faiss.METRIC_INNER_PRODUCT: "IP", faiss.METRIC_L2: "L2"}.get(index.metric_type,
                                                                                       index.metric_type)
            raise fail(f"metric_type says {metric_type} but vector.index uses {file_metric}")
        if "dim" in doc and doc["dim"] != index.d:
            raise fail(f"dim says {doc['dim']} but vector.index has dimension {index.d}")
        if deleted and index_type != "HNSW32":
            raise fail(f"deleted_ids are only used by HNSW32, not {index_type}")
        if deleted & labels.keys():
            raise fail(f"ids both live and deleted: {_preview(sorted(deleted & labels.keys()))}")
        if index.ntotal != len(labels) + len(deleted):
            extra = f" + {len(deleted)} deleted" if deleted else ""
            raise fail(f"vector.index holds {index.ntotal} vectors but the id map has {len(labels)} "
                       f"entries{extra}; the files do not belong together")
        try:
            have = np.sort(ff.stored_ids(index))
        except RetrievalIndexError as exc:
            raise fail(str(exc)) from None
        want = np.sort(np.fromiter([*labels.keys(), *deleted], np.int64, len(labels) + len(deleted)))
        if not np.array_equal(have, want):
            dup = have[1:][have[1:] == have[:-1]]
            if dup.size:
                raise fail(f"vector.index holds duplicate ids {_preview(np.unique(dup).tolist())}")
            raise fail(f"ids differ between vector.index and the id map: only in vector.index "
                       f"{_preview(np.setdiff1d(have, want).tolist())}, only in the id map "
                       f"{_preview(np.setdiff1d(want, have).tolist())}")
        if not metadata.keys() <= labels.keys():
            raise fail(f"metadata for ids not in the id map: {_preview(sorted(metadata.keys() - labels.keys()))}")
        top = int(have[-1]) + 1 if have.size else 0
        next_id = doc.get("next_id", top)
        if isinstance(next_id, bool) or not isinstance(next_id, int) or next_id < top:
            raise fail(f"next_id {next_id!r} would reuse ids (largest stored id is {top - 1})")

        self = cls.__new__(cls)
        self._lock = RWLock()
        self._index_type, self._metric_type, self._dim = index_type, metric_type, int(index.d)
        self._params = params
        self._labels, self._metadata, self._deleted = labels, metadata, deleted
        self._selector = None
        self._next_id = next_id
        self._feature_model = dict(feature_model) if feature_model is not None else None
        self._feature_transform, self._query_expansion, self._qe_cache = transform, query_expansion, None
        if kind == "IVF" and isinstance(faiss.downcast_index(index), (faiss.IndexIDMap, faiss.IndexIDMap2)):
            index = _unwrap_paddlex_ivf(index, params)
        if kind == "IVF" and not params.ivf_trained_size:
            params.ivf_trained_size = int(index.ntotal)
        self._set_faiss(index)
        self._refresh_selector()
        return self

    # ------------------------------------------------------------------ internals (lock held)
    def _set_faiss(self, index: faiss.Index) -> None:
        self._index = index
        self._inner = ff.describe(index)[1]
        if self._index_type == "HNSW32":
            self._inner.hnsw.efSearch = self._params.ef_search
        elif self._index_type == "IVF":
            self._inner.nprobe = min(self._params.nprobe or ff.auto_nprobe(self._inner.nlist), self._inner.nlist)

    def _refresh_selector(self) -> None:
        if not self._deleted:
            self._selector = None
            return
        batch = faiss.IDSelectorBatch(np.fromiter(self._deleted, np.int64, len(self._deleted)))
        self._selector = (faiss.IDSelectorNot(batch), batch)  # Not only borrows batch: keep both

    def _ivf_needs_training(self, n_after: int) -> bool:
        if not self._inner.is_trained:
            return True
        if self._params.nlist is not None:
            return False
        return ff.auto_nlist(n_after) >= _IVF_REGROW_FACTOR * int(self._inner.nlist)

    def _rebuild(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._set_faiss(ff.build_filled(self._index_type, self._metric_type, self._dim,
                                        self._params, vectors, ids))
        self._deleted = set()
        self._selector = None

    def _compact_locked(self) -> None:
        if self._index_type == "Flat":
            return
        vectors, ids = ff.extract(self._index)
        if self._deleted:
            keep = ~np.isin(ids, np.fromiter(self._deleted, np.int64, len(self._deleted)))
            vectors, ids = vectors[keep], ids[keep]
        if self._index_type == "IVF" and len(ids) == 0:
            self._set_faiss(ff.new_empty("IVF", self._metric_type, self._dim, self._params))
            return
        self._rebuild(vectors, ids)


def _int_keyed(raw: Any, name: str, fail: Any) -> dict[int, str]:
    """A YAML/JSON mapping with int (or int-string) keys and scalar values, as dict[int, str]."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail(f"{name} must be a mapping of id -> value, got {type(raw).__name__}")
    out: dict[int, str] = {}
    for key, value in raw.items():
        try:
            if isinstance(key, bool):
                raise ValueError
            i = int(key)
        except (TypeError, ValueError):
            raise fail(f"{name} key {key!r} is not an integer id") from None
        if value is None or isinstance(value, (dict, list)):
            raise fail(f"{name}[{i}] must be a string, got {value!r}")
        out[i] = str(value)
    return out


def _unwrap_paddlex_ivf(index: faiss.Index, params: ff.IndexParams) -> faiss.Index:
    """PaddleX's IndexIDMap2(IVF) -> a native IVF holding external ids (same trained lists)."""
    vectors, ids = ff.extract(index)
    old = ff.describe(index)[1]
    quantizer = faiss.clone_index(old.quantizer)
    ivf = faiss.IndexIVFFlat(quantizer, old.d, old.nlist, old.metric_type)
    ivf.is_trained = True
    if len(ids):
        ivf.add_with_ids(vectors, ids)
    params.ivf_trained_size = len(ids)
    return ivf


# A descriptive alias for code that does not need PaddleX's vocabulary.
VectorIndex = IndexData
