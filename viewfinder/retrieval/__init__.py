"""Vector index layer for PP-ShiTuV2-style recognition (faiss-cpu).

``IndexData`` (PaddleX's name; alias ``VectorIndex``) builds, appends to, removes from,
searches, saves and loads a gallery index. See docs/retrieval.md.
"""
from __future__ import annotations

from viewfinder.errors import IndexFolderGone
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
    "FolderVersion",
    "IndexData",
    "IndexFolderGone",
    "VectorIndex",
    "auto_nlist",
    "auto_nprobe",
    "faiss_threads",
    "get_num_threads",
    "index_info_command",
    "normalize_index_type",
    "normalize_metric_type",
    "set_num_threads",
    "writer_lock",
]
