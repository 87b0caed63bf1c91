"""Which detected boxes PP-ShiTuV2 keeps: for a query (``single_mainbody`` / ``max_det_results``)
and for a gallery image (``gallery_crop``).

Queries are embedded as detected crops; a gallery embedded as whole images (PaddleX's
default) then compares crops with whole photos. ``gallery_crop`` lets the gallery be cut the
way queries are, and the index records which was used (``feature_model["gallery_crop"]``),
so a mismatch can be noticed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: ``none``: the whole image (PaddleX); ``best``: the highest-scored box (the whole image when
#: nothing is detected); ``all``: every box above det_threshold, each its own gallery entry
GALLERY_CROPS = ("none", "best", "all")
#: what "best box" means for single_mainbody / max_det_results
MAINBODY_ORDERS = ("score", "area")

Box = tuple[list[float], float]  # ([x1, y1, x2, y2], detection score)


def check_gallery_crop(value: Any, where: str = "gallery_crop") -> str:
    """``value`` as one of GALLERY_CROPS (None -> "none"), or ConfigError naming it."""
    if value is None:
        return "none"
    if isinstance(value, str) and value.strip().lower() in GALLERY_CROPS:
        return value.strip().lower()
    raise ConfigError(f"{where} must be one of {', '.join(GALLERY_CROPS)}, got {value!r}")


def recorded_gallery_crop(index: Any) -> str:
    """The crop mode an index's gallery was embedded with; "none" for indexes that record none
    (built before the record existed, by PaddleX, or from raw vectors)."""
    record = getattr(index, "feature_model", None) or {}
    value = record.get("gallery_crop")
    return value if value in GALLERY_CROPS else "none"


@dataclass(frozen=True)
class BoxChoice:
    """How many detected boxes of a query are recognised, and which first."""

    limit: int | None = None  # None: every box
    order: str = "score"
    #: single_mainbody: exactly one box per image (no extra whole-image box)
    single: bool = False

    @classmethod
    def from_params(cls, single_mainbody: Any, max_det_results: Any, mainbody_order: Any) -> "BoxChoice":
        """Validated predict()/YAML values (None: not given)."""
        if single_mainbody is not None and not isinstance(single_mainbody, bool):
            raise ConfigError(f"single_mainbody must be true or false, got {single_mainbody!r}")
        if max_det_results is not None and (isinstance(max_det_results, bool)
                                            or not isinstance(max_det_results, int) or max_det_results < 1):
            raise ConfigError(f"max_det_results must be an integer >= 1 (or null for every box), "
                              f"got {max_det_results!r}")
        order = "score" if mainbody_order is None else mainbody_order
        if order not in MAINBODY_ORDERS:
            raise ConfigError(f"mainbody_order must be one of {', '.join(MAINBODY_ORDERS)}, got {mainbody_order!r}")
        # both are caps on the boxes recognised: together the tighter one (single_mainbody's 1) holds
        return cls(1 if single_mainbody else max_det_results, order, bool(single_mainbody))

    def apply(self, boxes: list[Box]) -> list[Box]:
        """The best ``limit`` boxes, in the detector's order."""
        if self.limit is None or len(boxes) <= self.limit:
            return boxes
        ranked = sorted(range(len(boxes)), key=lambda i: _rank(boxes[i], self.order), reverse=True)
        kept = set(ranked[:self.limit])
        return [box for i, box in enumerate(boxes) if i in kept]


def _rank(box: Box, order: str) -> tuple[float, float]:
    (x1, y1, x2, y2), score = box
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return (score, area) if order == "score" else (area, score)


def gallery_boxes(boxes: Sequence[Box], mode: str) -> list[Box]:
    """The boxes a gallery image is embedded as under ``mode``; [] means the whole image."""
    if mode == "none" or not boxes:
        return []
    if mode == "best":
        return [max(boxes, key=lambda box: _rank(box, "score"))]
    return list(boxes)
