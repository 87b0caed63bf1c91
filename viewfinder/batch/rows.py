"""One output row per input: ``input_path``, ``error`` (null when it worked) and the result's fields.

The columns depend only on the job's kind, never on the results, so every part file of an
output has the same schema (a batch of nothing but errors included) and part files from a
resumed run read back as one table.
"""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from ..errors import ConfigError

CLASSES = "classes"      # image_classification, multi-label: class_ids, scores, label_names
BOXES = "boxes"          # PP-ShiTuV2 and detection models: the boxes as JSON text
FEATURE = "feature"      # an image-feature model: the vector
GALLERY = "gallery"      # --to_index: the vector, its label and the model that made it

_COMMON = [pa.field("input_path", pa.string(), nullable=False), pa.field("error", pa.string())]
SCHEMAS: dict[str, pa.Schema] = {
    CLASSES: pa.schema(_COMMON + [pa.field("class_ids", pa.list_(pa.int64())),
                                  pa.field("scores", pa.list_(pa.float32())),
                                  pa.field("label_names", pa.list_(pa.string()))]),
    BOXES: pa.schema(_COMMON + [pa.field("boxes", pa.string())]),
    FEATURE: pa.schema(_COMMON + [pa.field("feature", pa.list_(pa.float32()))]),
    GALLERY: pa.schema(_COMMON + [pa.field("label", pa.string()), pa.field("feature", pa.list_(pa.float32())),
                                  pa.field("feature_model", pa.string())]),
}
_TASK_KINDS = {"image_classification": CLASSES, "image_multilabel_classification": CLASSES,
               "image_feature": FEATURE, "mainbody_detection": BOXES}
_PIPELINE_KINDS = {"image_classification": CLASSES, "image_multilabel_classification": CLASSES,
                   "PP-ShiTuV2": BOXES}


def kind_of_pipeline(canonical_name: str) -> str:
    return _PIPELINE_KINDS[canonical_name]


def kind_of_task(task: str) -> str:
    if task not in _TASK_KINDS:
        raise ConfigError(f"batch jobs do not run {task} models (they run: {', '.join(sorted(_TASK_KINDS))})")
    return _TASK_KINDS[task]


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def result_row(kind: str, input_path: str, result: Any) -> dict[str, Any]:
    """The row of one result (a ``BaseResult``; an ``ErrorResult`` gives an error row)."""
    if not result.ok:
        return error_row(input_path, str(result["error"]))
    row: dict[str, Any] = {"input_path": input_path, "error": None}
    if kind == CLASSES:
        row.update(class_ids=[int(i) for i in result["class_ids"]], scores=_floats(result["scores"]),
                   label_names=[str(n) for n in result["label_names"]])
    elif kind == BOXES:
        row["boxes"] = json.dumps(_plain(result["boxes"]), ensure_ascii=False)
    elif kind == FEATURE:
        row["feature"] = _floats(result["feature"])
    else:
        raise ValueError(f"no result rows for kind {kind!r}")
    return row


def error_row(input_path: str, message: str) -> dict[str, Any]:
    return {"input_path": input_path, "error": message}


def to_table(kind: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as a table of the kind's schema (fields a row lacks are null)."""
    schema = SCHEMAS[kind]
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def _plain(value: Any) -> Any:
    """numpy values inside result dicts as JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
