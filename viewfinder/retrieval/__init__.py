"""Vector index layer for PP-ShiTuV2-style recognition: faiss folders, or Milvus.

``IndexData`` (PaddleX's name; alias ``VectorIndex``) builds, appends to, removes from,
searches, saves and loads a faiss gallery index (docs/retrieval.md). ``Gallery`` is the interface
it shares with ``MilvusGallery`` (``milvus_backend``, imported only for Milvus locations); the
functions of ``galleries`` work on any location string (docs/scale.md).
"""
from __future__ import annotations

from viewfinder.errors import IndexBackendError, IndexFolderGone
from viewfinder.retrieval.backend import Gallery, GalleryItems, is_gallery
from viewfinder.retrieval.compat import check_feature_model
from viewfinder.retrieval.galleries import (
    delete_gallery,
    gallery_info,
    list_galleries,
    migrate,
    open_gallery,
    update_gallery,
    write_gallery,
)
from viewfinder.retrieval.location import FolderLocation, MilvusLocation, is_milvus, parse_location
from viewfinder.retrieval.info import index_info_command
from viewfinder.retrieval.faiss_factory import (
    INDEX_TYPES,
    METRIC_TYPES,
    auto_nlist,
    auto_nprobe,
    normalize_index_type,
    normalize_metric_type,
)
from viewfinder.retrieval.index import IndexData, VectorIndex
from viewfinder.retrieval.shared_folder import FolderVersion, writer_lock
from viewfinder.retrieval.threads import faiss_threads, get_num_threads, set_num_threads

__all__ = [
    "INDEX_TYPES",
    "METRIC_TYPES",
    "FolderLocation",
    "FolderVersion",
    "Gallery",
    "GalleryItems",
    "IndexBackendError",
    "IndexData",
    "IndexFolderGone",
    "MilvusLocation",
    "VectorIndex",
    "auto_nlist",
    "auto_nprobe",
    "check_feature_model",
    "delete_gallery",
    "faiss_threads",
    "gallery_info",
    "get_num_threads",
    "index_info_command",
    "is_gallery",
    "is_milvus",
    "list_galleries",
    "migrate",
    "open_gallery",
    "parse_location",
    "update_gallery",
    "write_gallery",
    "normalize_index_type",
    "normalize_metric_type",
    "set_num_threads",
    "writer_lock",
]
