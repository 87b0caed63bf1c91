"""Index storage for the ShiTu endpoints in Milvus: one collection per ``indexKey`` (``--index_store``).

The same API as :class:`~viewfinder.serving.storage.IndexStore`, so the adapter cannot tell them
apart. Several service processes (on one machine or many) share the galleries through Milvus
itself, with no file lock: every change is written through before it is acknowledged, searches
use Strong consistency (an add acknowledged by one process is found by the next request to any
other), and ids come from each gallery's shared counter (``retrieval.milvus_lock``), so concurrent
adds through different processes hand out every id once. A killed process loses nothing it
acknowledged (the data lives in Milvus); a lock it held expires after its lease.

Collection names: ``vf_`` + the key with ``_`` written ``_0`` and ``-`` written ``_1`` (Milvus
names allow neither ``-`` nor a leading digit; the escape keeps the mapping reversible).
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import IndexBackendError, IndexNotFoundError, RetrievalIndexError, ServiceError, ViewfinderError
from ..retrieval.location import MilvusLocation
from ..retrieval.milvus_backend import MilvusGallery, gallery_collections
from .security import valid_index_key

log = logging.getLogger(__name__)
_PREFIX = "vf_"


def collection_for(key: str) -> str:
    return _PREFIX + key.replace("_", "_0").replace("-", "_1")


def key_for(collection: str) -> str | None:
    """The indexKey a collection holds, or None for a collection that is not one of ours."""
    if not collection.startswith(_PREFIX):
        return None
    out, rest = [], collection[len(_PREFIX):]
    i = 0
    while i < len(rest):
        if rest[i] == "_":
            code = rest[i + 1:i + 2]
            if code not in ("0", "1"):
                return None
            out.append("_" if code == "0" else "-")
            i += 2
        else:
            out.append(rest[i])
            i += 1
    key = "".join(out)
    return key if valid_index_key(key) else None


def _not_found(key: str) -> IndexNotFoundError:
    return IndexNotFoundError(f"no index with indexKey {key!r}")


class MilvusIndexStore:
    """Maps ``indexKey`` -> :class:`MilvusGallery` in the Milvus database at ``store``."""

    persistent = True

    def __init__(self, store: MilvusLocation) -> None:
        self.store = store
        self._served: dict[str, MilvusGallery] = {}
        self._writers: dict[str, threading.Lock] = {}
        self._mutex = threading.Lock()
        gallery_collections(store, _PREFIX)  # connects now: an unreachable Milvus fails the start, clearly

    # ---------------------------------------------------------------- helpers
    def _location(self, key: str) -> MilvusLocation:
        if not valid_index_key(key):
            raise IndexNotFoundError(f"invalid indexKey {key[:80]!r}")
        return self.store.with_collection(collection_for(key))

    def _writer(self, key: str) -> threading.Lock:
        with self._mutex:
            return self._writers.setdefault(key, threading.Lock())

    @staticmethod
    def _unavailable(exc: RetrievalIndexError) -> ServiceError:
        log.error("Milvus index store: %s", exc)
        return ServiceError("the index store is not reachable or failed (see the server log)")

    # ---------------------------------------------------------------- API
    def create(self, index: Any) -> str:
        """Store a new index under a fresh uuid4 key (in Milvus before this returns)."""
        key = str(uuid.uuid4())
        try:
            gallery = MilvusGallery.write(self._location(key), index)
        except RetrievalIndexError as exc:
            raise self._unavailable(exc) from None
        with self._mutex:
            self._served[key] = gallery
        return key

    def get(self, key: str) -> MilvusGallery:
        """The gallery (a live view: no reload after another process's change)."""
        location = self._location(key)
        try:
            with self._mutex:
                served = self._served.get(key)
            if served is not None:
                if MilvusGallery.exists(location):  # deleted by another process?
                    return served
                with self._mutex:
                    self._served.pop(key, None)
                raise _not_found(key)
            if not MilvusGallery.exists(location):
                raise _not_found(key)
            gallery = MilvusGallery.open(location)
        except RetrievalIndexError as exc:
            raise self._unavailable(exc) from None
        with self._mutex:
            return self._served.setdefault(key, gallery)

    def update(self, key: str, change: Callable[[Any], Any]) -> tuple[Any, Any]:
        (outcome,) = self.update_many(key, [change])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def update_many(self, key: str, changes: list[Callable[[Any], Any]]) -> list[Any]:
        """Apply the changes one after another, each written through (nothing to save after).

        Returns, per change, ``(its value, the gallery)`` or the ViewfinderError it raised. A
        change must leave the gallery as it was when it raises: append and remove validate first.
        """
        with self._writer(key):
            gallery = self.get(key)
            values: list[Any] = []
            for change in changes:
                try:
                    values.append((change(gallery), gallery))
                except IndexBackendError as exc:  # Milvus failed, or the gallery went meanwhile
                    values.append(self._gone_or_unavailable(key, exc))
                except ViewfinderError as exc:
                    values.append(exc)  # this request's mistake; the gallery is as it was
            return values

    def _gone_or_unavailable(self, key: str, exc: IndexBackendError) -> ViewfinderError:
        try:
            gone = not MilvusGallery.exists(self._location(key))
        except RetrievalIndexError:
            gone = False
        if gone:
            with self._mutex:
                self._served.pop(key, None)
            return _not_found(key)
        return self._unavailable(exc)

    def delete(self, key: str) -> None:
        location = self._location(key)
        with self._writer(key):
            with self._mutex:
                self._served.pop(key, None)
            try:
                if not MilvusGallery.exists(location):
                    raise _not_found(key)
                MilvusGallery.open(location).drop()
            except RetrievalIndexError as exc:  # dropped by another process meanwhile, or Milvus failed
                backend = exc if isinstance(exc, IndexBackendError) else IndexBackendError(str(exc))
                raise self._gone_or_unavailable(key, backend) from None

    def keys(self) -> list[str]:
        try:
            names = gallery_collections(self.store, _PREFIX)
        except RetrievalIndexError as exc:
            raise self._unavailable(exc) from None
        return sorted(k for k in (key_for(n) for n in names) if k is not None)

    def describe(self, key: str) -> dict[str, Any]:
        gallery = self.get(key)
        try:
            info = gallery.info()
        except IndexBackendError as exc:
            raise self._gone_or_unavailable(key, exc) from None
        return {"indexKey": key, "size": info["size"], "dim": gallery.dim, "indexType": gallery.index_type,
                "metricType": gallery.metric_type, "nextId": info["next_id"], "labels": info["labels"],
                "persistent": True}

    def list(self) -> Iterator[dict[str, Any]]:
        for key in self.keys():
            try:
                yield self.describe(key)
            except IndexNotFoundError:  # deleted meanwhile
                continue
            except ServiceError as exc:
                yield {"indexKey": key, "error": str(exc)}

    def sizes(self) -> dict[str, int]:
        """{indexKey: items} for the metrics (one count query per index)."""
        sizes: dict[str, int] = {}
        for key in self.keys():
            try:
                sizes[key] = len(self.get(key))
            except ViewfinderError:
                continue
        return sizes

    def check_reachable(self) -> None:
        try:
            gallery_collections(self.store, "\x00")  # one list_collections call, nothing matches
        except RetrievalIndexError as exc:
            raise self._unavailable(exc) from None
