"""Index storage for the ShiTu endpoints: one folder per ``indexKey``, or memory.

Durability: a change is acknowledged only after :meth:`IndexData.save` returned, and that
writes, fsyncs and renames (crash-safe; see ``viewfinder.retrieval.storage``).

Concurrency, per key: one writer at a time (add, remove, delete hold the key's writer
lock while they change, save and swap; the service embeds images before); changes that
queued up meanwhile are applied together and saved once (:meth:`IndexStore.update_many`).
Readers (infer, info) never wait for a writer: they pick up the index currently served. A
writer works on a *copy* and swaps it in after the save, so a reader never sees a change
that is not yet on disk, and a failed save leaves the served index as it was. The copy
(``IndexData.copy``, a faiss clone) costs a fraction of the save; both are O(index size);
searches lock the IndexData itself.

Replicas: several server processes (on one machine, or on several with a shared file
system) may serve the same ``data_dir``. Writers also take the folder's cross-process
writer lock and start from the index on disk; readers check with one ``stat`` that the
copy they serve is still the one on disk and reload it when another replica saved
(``viewfinder.retrieval.shared_folder``). So a change acknowledged by one replica is
served by every replica from its next request on.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IndexFolderGone, IndexNotFoundError, RetrievalIndexError, ServiceError, ViewfinderError
from ..retrieval import IndexData, idmap_yaml
from ..retrieval.shared_folder import FolderVersion, writer_lock
from ..retrieval.storage import YAML_FILE, fsync_dir
from .security import valid_index_key

log = logging.getLogger(__name__)

_TRASH_PREFIX = ".deleted-"


def _check_key(key: str) -> None:
    if not valid_index_key(key):
        # Routes validate keys first; this guards the file system against any other caller.
        raise IndexNotFoundError(f"invalid indexKey {key[:80]!r}")


def _not_found(key: str) -> IndexNotFoundError:
    return IndexNotFoundError(f"no index with indexKey {key!r}")


def _stored_size(folder: Path) -> int | None:
    """The item count in the small header of the folder's id_map.yaml (ours), without loading the index."""
    try:
        header = idmap_yaml.read_header(str(folder / YAML_FILE))
    except OSError:
        return None
    size = (header or {}).get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


@dataclass(frozen=True)
class _Served:
    index: IndexData
    version: FolderVersion | None  # the file it was loaded from or saved to; None in memory

    def is_current(self) -> bool:
        return self.version is None or self.version.is_current()


class IndexStore:
    """Maps ``indexKey`` -> :class:`IndexData`, on disk under ``root`` or in memory (``root=None``)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root) if root is not None else None
        self._served: dict[str, _Served] = {}
        self._writers: dict[str, threading.Lock] = {}
        self._loaders: dict[str, threading.Lock] = {}
        self._mutex = threading.Lock()
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            for trash in self.root.glob(f"{_TRASH_PREFIX}*"):  # deletes interrupted by a crash
                shutil.rmtree(trash, ignore_errors=True)

    @property
    def persistent(self) -> bool:
        return self.root is not None

    # ---------------------------------------------------------------- helpers
    def _lock(self, table: dict[str, threading.Lock], key: str) -> threading.Lock:
        with self._mutex:
            lock = table.get(key)
            if lock is None:
                lock = table[key] = threading.Lock()
            return lock

    def _writer(self, key: str) -> threading.Lock:
        return self._lock(self._writers, key)

    def _folder(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key

    def _folder_writer(self, key: str) -> Any:
        """The folder's cross-process writer lock (other replicas, the CLI); nothing in memory."""
        if self.root is None:
            return nullcontext()
        return writer_lock(self._folder(key))

    def _save(self, key: str, index: IndexData) -> FolderVersion | None:
        if self.root is None:
            return None
        try:
            index.save(self._folder(key))
        except RetrievalIndexError as exc:  # details (paths, errno) go to the log, not to the client
            log.error("saving index %s failed: %s", key, exc)
            raise ServiceError("the index could not be saved (see the server log); the change was not applied") from None
        try:
            return FolderVersion(self._folder(key))
        except RetrievalIndexError as exc:  # saved, but cannot tell later saves apart: reload next time
            log.warning("index %s saved, but its version cannot be kept: %s", key, exc)
            return None

    def _serve(self, key: str, index: IndexData, version: FolderVersion | None) -> None:
        """Serve ``index`` from now on (caller holds the key's writer lock)."""
        with self._mutex:
            if version is None and self.root is not None:
                self._served.pop(key, None)  # the next request loads what is on disk
            else:
                self._served[key] = _Served(index, version)

    def _load(self, key: str) -> _Served:
        """Read the folder as it is on disk now."""
        folder = self._folder(key)
        try:
            version = FolderVersion(folder)  # before the load: a save meanwhile only makes it look stale
            return _Served(IndexData.load(folder), version)
        except IndexFolderGone:
            raise _not_found(key) from None
        except RetrievalIndexError as exc:
            if not (folder / "vector.index").is_file():
                raise _not_found(key) from None
            log.error("stored index %s cannot be loaded: %s", key, exc)
            raise ServiceError(f"stored index {key!r} cannot be loaded (see the server log)") from None

    def _fresh(self, key: str, seen: _Served | None = None) -> IndexData:
        """The index under ``key`` as on disk, (re)loading if another process saved since ``seen``.

        One thread loads a key at a time (the others then find its copy); writers are not waited for.
        """
        with self._lock(self._loaders, key):
            with self._mutex:
                served = self._served.get(key)
            if served is not None and served is not seen and served.is_current():
                return served.index  # another thread loaded or saved it meanwhile
            if self.root is None:
                if served is None:
                    raise _not_found(key)
                return served.index
            try:
                loaded = self._load(key)
            except IndexNotFoundError:
                with self._mutex:
                    if self._served.get(key) is served:
                        self._served.pop(key, None)
                raise
            with self._mutex:
                if self._served.get(key) is served:  # a writer may have swapped a newer copy in meanwhile
                    self._served[key] = loaded
                return self._served.get(key, loaded).index

    # ---------------------------------------------------------------- API
    def create(self, index: IndexData) -> str:
        """Store a new index under a fresh uuid4 key (on disk before this returns)."""
        key = str(uuid.uuid4())
        with self._writer(key):
            self._serve(key, index, self._save(key, index))
        return key

    def get(self, key: str) -> IndexData:
        """The current index (one ``stat`` to see whether another replica changed it)."""
        _check_key(key)
        with self._mutex:
            served = self._served.get(key)
        if served is not None and served.is_current():
            return served.index
        # First use, or changed or deleted by another process: load without waiting for writers.
        return self._fresh(key, served)

    def update(self, key: str, change: Callable[[IndexData], Any]) -> tuple[Any, IndexData]:
        """Apply ``change`` to a copy of the index, save it, then serve it; returns (change's value, after)."""
        (outcome,) = self.update_many(key, [change])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def update_many(self, key: str, changes: list[Callable[[IndexData], Any]]) -> list[Any]:
        """Apply several changes to one copy and save it **once** (a group commit).

        Each change mutates the index it is given and must leave it unchanged when it raises,
        as ``IndexData.append``/``remove`` and the pipeline's ``append_index``/``remove_index``
        do. Returns, per change, either ``(its return value, the index after the commit)`` or
        the :class:`~viewfinder.errors.ViewfinderError` it raised; the others still land. A
        failed save fails them all (ServiceError) and changes nothing.
        """
        _check_key(key)
        with self._writer(key):
            try:
                with self._folder_writer(key):
                    working = self.get(key).copy()  # what is on disk: another replica may have saved
                    values: list[Any] = []
                    for change in changes:
                        try:
                            values.append(change(working))
                        except ViewfinderError as exc:  # this request's mistake; the copy is as it was
                            values.append(exc)
                    if all(isinstance(v, BaseException) for v in values):
                        return values  # nothing to save
                    self._serve(key, working, self._save(key, working))
            except IndexFolderGone:
                with self._mutex:
                    self._served.pop(key, None)
                raise _not_found(key) from None
        return [v if isinstance(v, BaseException) else (v, working) for v in values]

    def delete(self, key: str) -> None:
        _check_key(key)
        with self._writer(key):
            with self._mutex:
                cached = self._served.pop(key, None)
            if self.root is None:
                if cached is None:
                    raise _not_found(key)
                return
            try:
                with self._folder_writer(key):
                    # One rename takes it out of the listing atomically; the files go afterwards.
                    trash = self.root / f"{_TRASH_PREFIX}{key}-{uuid.uuid4().hex}"
                    os.replace(self._folder(key), trash)
                    fsync_dir(self.root)
            except IndexFolderGone:
                raise _not_found(key) from None
            shutil.rmtree(trash, ignore_errors=True)

    def keys(self) -> list[str]:
        if self.root is None:
            with self._mutex:
                return sorted(self._served)
        # On disk the folder is the truth: another replica may have created or deleted one.
        on_disk = sorted(p.name for p in self.root.iterdir()
                         if p.is_dir() and valid_index_key(p.name) and (p / "vector.index").is_file())
        with self._mutex:  # forget indexes deleted elsewhere (their open file holds the disk space)
            for gone in self._served.keys() - set(on_disk):
                if not self._served[gone].is_current():
                    del self._served[gone]
        return on_disk

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

    def sizes(self) -> dict[str, int]:
        """{indexKey: items} of every stored index (the metrics), without loading any.

        On disk each size comes from the header of the folder's ``id_map.yaml``, so every
        replica reports what is on disk; a folder without our header (PaddleX's) is reported
        from its served copy, if this process has one. In memory: the indexes themselves.
        """
        if self.root is None:
            with self._mutex:
                return {key: len(served.index) for key, served in self._served.items()}
        sizes: dict[str, int] = {}
        for key in self.keys():
            size = _stored_size(self._folder(key))
            if size is None:
                with self._mutex:
                    served = self._served.get(key)
                if served is None:
                    continue
                size = len(served.index)
            sizes[key] = size
        return sizes

    def check_reachable(self) -> None:
        """Raises ServiceError unless a file can be made in the storage folder (readiness); nothing in memory."""
        if self.root is None:
            return
        try:
            with tempfile.TemporaryFile(dir=self.root, prefix=".ready-"):
                pass
        except OSError as exc:
            log.error("index folder %s is not usable: %s", self.root, exc)
            raise ServiceError("the index store is not reachable (see the server log)") from None
