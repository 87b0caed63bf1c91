"""Index storage for the ShiTu endpoints: one folder per ``indexKey``, or memory.

Durability: a change is acknowledged only after :meth:`IndexData.save` returned, and that
writes, fsyncs and renames (crash-safe; see ``viewfinder.retrieval.storage``).

Concurrency, per key: one writer at a time (add, remove, delete hold the key's writer
lock for their whole run, feature extraction included); readers (infer, info) never wait
for a writer: they pick up the index currently served. A writer works on a *copy* and
swaps it in after the save, so a reader never sees a change that is not yet on disk, and a
failed save leaves the served index as it was. The copy costs about what the save costs
(both are O(index size)); searches lock the IndexData itself.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import RetrievalIndexError
from ..retrieval import IndexData
from .errors import IndexNotFoundError, ServiceError
from .security import valid_index_key

log = logging.getLogger(__name__)

_TRASH_PREFIX = ".deleted-"


def _check_key(key: str) -> None:
    if not valid_index_key(key):
        # Routes validate keys first; this guards the file system against any other caller.
        raise IndexNotFoundError(f"invalid indexKey {key[:80]!r}")


def _copy(index: IndexData) -> IndexData:
    return IndexData.from_bytes(index.to_bytes())


class IndexStore:
    """Maps ``indexKey`` -> :class:`IndexData`, on disk under ``root`` or in memory (``root=None``)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root) if root is not None else None
        self._indexes: dict[str, IndexData] = {}
        self._writers: dict[str, threading.Lock] = {}
        self._mutex = threading.Lock()
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            for trash in self.root.glob(f"{_TRASH_PREFIX}*"):  # deletes interrupted by a crash
                shutil.rmtree(trash, ignore_errors=True)

    @property
    def persistent(self) -> bool:
        return self.root is not None

    # ---------------------------------------------------------------- helpers
    def _writer(self, key: str) -> threading.Lock:
        with self._mutex:
            lock = self._writers.get(key)
            if lock is None:
                lock = self._writers[key] = threading.Lock()
            return lock

    def _folder(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key

    def _on_disk(self, key: str) -> bool:
        return self.root is not None and (self._folder(key) / "vector.index").is_file()

    def _save(self, key: str, index: IndexData) -> None:
        if self.root is None:
            return
        try:
            index.save(self._folder(key))
        except RetrievalIndexError as exc:  # details (paths, errno) go to the log, not to the client
            log.error("saving index %s failed: %s", key, exc)
            raise ServiceError("the index could not be saved (see the server log); the change was not applied") from None

    def _current(self, key: str) -> IndexData:
        """The index under ``key`` (loaded from disk on first use); caller holds the key's writer lock."""
        with self._mutex:
            index = self._indexes.get(key)
        if index is not None:
            return index
        if not self._on_disk(key):
            raise IndexNotFoundError(f"no index with indexKey {key!r}")
        try:
            index = IndexData.load(self._folder(key))
        except RetrievalIndexError as exc:
            log.error("stored index %s cannot be loaded: %s", key, exc)
            raise ServiceError(f"stored index {key!r} cannot be loaded (see the server log)") from None
        with self._mutex:
            return self._indexes.setdefault(key, index)

    # ---------------------------------------------------------------- API
    def create(self, index: IndexData) -> str:
        """Store a new index under a fresh uuid4 key (on disk before this returns)."""
        key = str(uuid.uuid4())
        with self._writer(key):
            self._save(key, index)
            with self._mutex:
                self._indexes[key] = index
        return key

    def get(self, key: str) -> IndexData:
        """The current index; searching it needs no store lock (IndexData locks itself)."""
        _check_key(key)
        with self._mutex:
            index = self._indexes.get(key)
        if index is not None:
            return index
        with self._writer(key):  # first use: load once, not while a delete runs
            return self._current(key)

    def update(self, key: str, change: Callable[[IndexData], IndexData | Any]) -> tuple[IndexData, IndexData]:
        """Apply ``change`` to a copy of the index, save it, then serve it; returns (before, after).

        ``change`` may mutate the copy in place or return a new index (PaddleX's
        ``append_index``/``remove_index`` return one).
        """
        _check_key(key)
        with self._writer(key):
            before = self._current(key)
            working = _copy(before)
            result = change(working)
            after = result if isinstance(result, IndexData) else working
            self._save(key, after)
            with self._mutex:
                self._indexes[key] = after
        return before, after

    def delete(self, key: str) -> None:
        _check_key(key)
        with self._writer(key):
            with self._mutex:
                cached = self._indexes.pop(key, None)
            if self.root is None:
                if cached is None:
                    raise IndexNotFoundError(f"no index with indexKey {key!r}")
                return
            if not self._folder(key).is_dir():
                if cached is None:
                    raise IndexNotFoundError(f"no index with indexKey {key!r}")
                return
            # One rename takes it out of the listing atomically; the files go afterwards.
            trash = self.root / f"{_TRASH_PREFIX}{key}-{uuid.uuid4().hex}"
            os.replace(self._folder(key), trash)
            _fsync_dir(self.root)
            shutil.rmtree(trash, ignore_errors=True)

    def keys(self) -> list[str]:
        with self._mutex:
            keys = set(self._indexes)
        if self.root is not None:
            keys.update(p.name for p in self.root.iterdir()
                        if p.is_dir() and valid_index_key(p.name) and (p / "vector.index").is_file())
        return sorted(keys)

    def describe(self, key: str) -> dict[str, Any]:
        index = self.get(key)
        info = index.info()
        return {"indexKey": key, "size": len(index), "dim": index.dim, "indexType": index.index_type,
                "metricType": index.metric_type, "nextId": index.next_id, "labels": info.get("labels"),
                "persistent": self.persistent}

    def list(self) -> Iterator[dict[str, Any]]:
        for key in self.keys():
            try:
                yield self.describe(key)
            except IndexNotFoundError:  # deleted meanwhile
                continue
            except ServiceError as exc:  # unreadable folder: list it, say why
                yield {"indexKey": key, "error": str(exc)}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
