"""What `viewfinder index info` prints: an index folder, loaded (and so verified), described."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from viewfinder.retrieval import storage
from viewfinder.retrieval.index import IndexData
from viewfinder.retrieval.legacy_pickle import PICKLE_FILE


def index_info_command(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``viewfinder index info DIR``: load (and thereby verify) the folder, describe it.

    Raises RetrievalIndexError, naming the problem, when the folder is missing, truncated
    or inconsistent.
    """
    index = IndexData.load(directory)
    info = index.info()
    d = Path(directory)
    names = (storage.VECTOR_FILE, storage.YAML_FILE, storage.ALT_YAML_FILE, storage.PENDING_FILE, PICKLE_FILE)
    info["path"] = str(d)
    info["files"] = {n: (d / n).stat().st_size for n in names if (d / n).is_file()}
    return info
