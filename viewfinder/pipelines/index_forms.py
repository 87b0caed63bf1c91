"""PaddleX 3.0's keyword forms of the PP-ShiTuV2 index methods, mapped onto the 3.x forms.

PaddleX 3.0 (beta) called ``build_index`` / ``append_index`` / ``remove_index`` with
``data_root=`` (a folder holding ``gallery.txt``), ``index_dir=`` (the index folder, changed
in place) and ``index_type=`` / ``metric_type=``; 3.x takes ``gallery_imgs`` +
``gallery_label`` and an ``index`` (IndexData or folder) and returns the changed index.
These helpers turn one form into the other; the pipeline keeps one implementation.

Differences from PaddleX 3.0, on purpose: an ``index_type`` or ``metric_type`` given to
append/remove must be the index's own (PaddleX PR #2490: append inherits them; passing
another used to build a mismatched index), and ``remove_index(data_root=...)`` refuses a
gallery none of whose labels is in the index instead of saving it unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .gallery import read_gallery_file

GALLERY_FILE = "gallery.txt"


def gallery_arguments(gallery_imgs: Any, gallery_label: Any, data_root: Any, method: str) -> tuple[Any, Any]:
    """(gallery_imgs, gallery_label) from either form; ``data_root`` means ``data_root/gallery.txt``."""
    if data_root is None:
        if gallery_imgs is None:
            raise ConfigError(f"{method} needs gallery_imgs and gallery_label (or PaddleX 3.0's data_root)")
        return gallery_imgs, gallery_label
    if gallery_imgs is not None:
        raise ConfigError(f"{method}: give gallery_imgs or data_root (PaddleX 3.0's name for a gallery folder), "
                          "not both")
    return data_root, gallery_label if gallery_label is not None else Path(data_root) / GALLERY_FILE


def index_argument(index: Any, index_dir: Any, method: str) -> tuple[Any, Path | None]:
    """(the index to change, the folder to save it back into or None).

    ``index_dir`` is PaddleX 3.0's in-place form: the folder is read, changed and written back.
    """
    if index is not None and index_dir is not None:
        raise ConfigError(f"{method}: give index or index_dir (PaddleX 3.0's name for an index folder), not both")
    if index_dir is not None:
        return index_dir, Path(index_dir)
    if index is None:
        raise ConfigError(f"{method} needs an index (an IndexData or an index folder; PaddleX 3.0: index_dir=)")
    return index, None


def check_same_kind(index: Any, index_type: str | None, metric_type: str | None, method: str) -> None:
    """An ``index_type`` / ``metric_type`` given to append or remove must be the index's own."""
    from ..retrieval import normalize_index_type, normalize_metric_type

    if index_type is not None and normalize_index_type(index_type) != index.index_type:
        raise ConfigError(f"{method}: index_type {index_type!r} differs from the index's {index.index_type}; "
                          "an index keeps the type it was built with (drop index_type, or rebuild with build_index)")
    if metric_type is not None and normalize_metric_type(metric_type) != index.metric_type:
        raise ConfigError(f"{method}: metric_type {metric_type!r} differs from the index's {index.metric_type}; "
                          "an index keeps the metric it was built with (drop metric_type, or rebuild)")


def ids_for_gallery_labels(index: Any, data_root: Any, gallery_label: Any = None) -> list[int]:
    """PaddleX 3.0's ``remove_index(data_root=...)``: the ids of every entry whose label is in the gallery file."""
    label_file = gallery_label if gallery_label is not None else Path(data_root) / GALLERY_FILE
    labels = set(read_gallery_file(data_root, label_file).labels)
    ids = sorted(i for i, label in index.id_map.items() if label in labels)
    if not ids:
        shown = ", ".join(sorted(labels)[:5])
        raise ConfigError(f"remove_index: no entry of the index has a label of {label_file} ({shown}"
                          f"{', ...' if len(labels) > 5 else ''})")
    return ids
