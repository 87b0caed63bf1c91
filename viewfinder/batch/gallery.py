"""``--to_index``: the gallery's feature rows (this run's and earlier ones') become an index at a location.

The index is made by :func:`viewfinder.pipelines.index_from_embedding`, the function
``build_index`` (``viewfinder index build``) uses, from the rows in gallery order, so the
two give the same index. Labels come from this run's listing: a re-run with a corrected
label file relabels without embedding again.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..pipelines import GalleryEmbedding, index_from_embedding
from .inputs import Listing
from .output import read_output


def _embedding(folder: Path, listing: Listing) -> GalleryEmbedding:
    table = read_output(folder, ["input_path", "error", "feature", "feature_model"])
    rows: dict[str, dict[str, Any]] = {}
    if table is not None:
        for row in table.to_pylist():
            rows.setdefault(row["input_path"], row)
    features, labels, metadata, skipped = [], [], [], []
    models = set()
    for path, label in zip(listing.paths, listing.labels or []):
        row = rows.get(path)
        if row is None:
            continue
        if row["error"] is not None:
            skipped.append(row["error"])
            continue
        features.append(np.asarray(row["feature"], dtype=np.float32))
        labels.append(label)
        metadata.append({"path": path})
        models.add(row["feature_model"])
    if len(models) > 1:
        raise ConfigError(f"{folder} holds features of several models ({', '.join(sorted(models))}): "
                          "give a new --output for another recognition model")
    if not features:
        raise InputError(f"no gallery image could be read ({len(skipped)} skipped: {'; '.join(skipped[:3])})")
    return GalleryEmbedding(np.stack(features), labels, metadata, skipped, json.loads(models.pop()))


def write_gallery(folder: Path, listing: Listing, location: str, *, index_type: str = "HNSW32",
                  metric_type: str = "IP") -> tuple[Any, list[str]]:
    """Build the index of the listed gallery from the output rows and save it at ``location``."""
    embedding = _embedding(folder, listing)
    index = index_from_embedding(embedding, metric_type, index_type)
    # the call `viewfinder index build` makes to store an index (a folder today; other gallery
    # locations arrive behind the same call)
    index.save(location)
    return index, embedding.skipped
