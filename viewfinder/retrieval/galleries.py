"""Galleries by location string: open, write, change, describe, delete, list, migrate.

The one place that maps a location (``location.py``) to its backend: a folder is an
``IndexData`` saved there (faiss, changes saved under the folder's writer lock); a Milvus
location is a ``MilvusGallery`` (imported only here and only then, so the plain install never
imports pymilvus; changes are written through).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, TypeVar, Union

from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval import faiss_factory as ff
from viewfinder.retrieval import storage
from viewfinder.retrieval.index import IndexData
from viewfinder.retrieval.info import index_info_command
from viewfinder.retrieval.location import FolderLocation, Location, MilvusLocation, parse_location
from viewfinder.retrieval.shared_folder import writer_lock

T = TypeVar("T")
LocationLike = Union[str, "os.PathLike[str]", Location]


def _milvus() -> Any:
    from viewfinder.retrieval import milvus_backend  # pymilvus: only for Milvus locations

    return milvus_backend.MilvusGallery


def open_gallery(location: LocationLike) -> Any:
    """The gallery at ``location``: an IndexData loaded from a folder, or a live MilvusGallery."""
    loc = parse_location(location)
    if isinstance(loc, FolderLocation):
        return IndexData.load(loc.path)
    return _milvus().open(loc)


def exists(location: LocationLike) -> bool:
    loc = parse_location(location)
    if isinstance(loc, FolderLocation):
        return (loc.path / storage.VECTOR_FILE).is_file()
    return _milvus().exists(loc)


def write_gallery(index: Any, location: LocationLike, *, overwrite: bool = True,
                  index_type: str | None = None) -> Any:
    """Store ``index`` (any gallery) at ``location``; returns the stored gallery.

    Ids, labels, metadata, the id counter and the feature model are kept; ``index_type`` (Flat,
    IVF, HNSW32) changes the index kind of the copy. ``overwrite=False`` refuses a location that
    already holds a gallery.
    """
    loc = parse_location(location)
    if not overwrite and exists(loc):
        raise RetrievalIndexError(f"{loc} already holds a gallery; delete it first (or overwrite)")
    kind = ff.normalize_index_type(index_type or index.index_type)
    if isinstance(loc, FolderLocation):
        same = isinstance(index, IndexData) and kind == index.index_type
        folder_copy = index if same else _as_index_data(index, kind)
        folder_copy.save(loc.path)
        return folder_copy
    return _milvus().write(loc, index, overwrite=overwrite, index_type=kind)


def _as_index_data(index: Any, index_type: str) -> IndexData:
    return IndexData.from_items(index.export_items(), dim=index.dim, index_type=index_type,
                                metric_type=index.metric_type, next_id=index.next_id,
                                feature_model=index.feature_model,
                                transform_from=index if isinstance(index, IndexData) else None)


def update_gallery(location: LocationLike, change: Callable[[Any], T]) -> tuple[T, Any]:
    """Apply ``change(gallery)`` and persist it; returns (its value, the gallery after).

    A folder is loaded, changed and saved under its cross-process writer lock (a server and the
    CLI may share it); a Milvus gallery writes each change through (its own id lock).
    """
    loc = parse_location(location)
    if isinstance(loc, MilvusLocation):
        gallery = _milvus().open(loc)
        return change(gallery), gallery
    with writer_lock(loc.path):
        index = IndexData.load(loc.path)
        value = change(index)
        index.save(loc.path)
    return value, index


def delete_gallery(location: LocationLike) -> None:
    loc = parse_location(location)
    if isinstance(loc, MilvusLocation):
        _milvus().open(loc).drop()
        return
    if not (loc.path / storage.VECTOR_FILE).is_file():
        raise RetrievalIndexError(f"no index folder at {loc.path} (no {storage.VECTOR_FILE})")
    with writer_lock(loc.path):
        trash = loc.path.with_name(f".deleted-{loc.path.name}-{os.getpid()}")
        os.replace(loc.path, trash)  # out of sight at once; the files go afterwards
    shutil.rmtree(trash, ignore_errors=True)


def gallery_info(location: LocationLike) -> dict[str, Any]:
    """What ``viewfinder index info`` prints (a folder is loaded, and so verified, first)."""
    loc = parse_location(location)
    if isinstance(loc, FolderLocation):
        return {"backend": "faiss", **index_info_command(loc.path)}
    return _milvus().open(loc).info()


def list_galleries(prefix: LocationLike) -> list[str]:
    """Locations of the galleries under a folder (its index sub-folders) or in a Milvus database."""
    loc = parse_location(prefix, store=True)
    if isinstance(loc, FolderLocation):
        if not loc.path.is_dir():
            raise RetrievalIndexError(f"not a folder: {loc.path}")
        return sorted(str(p) for p in Path(loc.path).iterdir() if (p / storage.VECTOR_FILE).is_file())
    from viewfinder.retrieval import milvus_backend

    return [str(loc.with_collection(name)) for name in milvus_backend.gallery_collections(loc)]


def migrate(source: LocationLike, target: LocationLike, *, overwrite: bool = False,
            index_type: str | None = None) -> Any:
    """Copy the gallery at ``source`` to ``target`` (any two backends); returns the copy."""
    src, dst = parse_location(source), parse_location(target)
    if src == dst:
        raise RetrievalIndexError(f"source and target are the same location: {src}")
    return write_gallery(open_gallery(src), dst, overwrite=overwrite, index_type=index_type)
