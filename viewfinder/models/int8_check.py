"""Is an int8 model good enough? Its answers compared with the fp32 model's on photos it was not
calibrated on, by task (issue 30's acceptance rules):

* detectors: every box matched by a box of the same label at IoU >= 0.9 on >= 98 % of the boxes
  (counted over the larger of the two box sets, so missing and extra boxes both count). A
  detector that finds almost nothing on the photos (random weights) is compared before NMS
  instead: the 100 best-scored anchors of each photo keep their box (IoU >= 0.9 on >= 98 %) and
  no anchor's score moves by more than 0.05;
* feature models: cosine(fp32, int8) >= 0.99 for every photo, and every photo's nearest other
  photo (retrieval top-1, calibration photos included as the gallery) unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io import DecodedImage
from .detection import DetectionPredictor
from .feature import FeaturePredictor
from .predictor import BasePredictor

BOX_IOU = 0.9
BOX_MATCHED = 0.98
#: fewer fp32 boxes than this on all validation photos together: compare before NMS
MIN_BOXES = 3
RAW_TOP_ANCHORS = 100
RAW_SCORE_DELTA = 0.05
FEATURE_COSINE = 0.99


@dataclass
class CheckResult:
    """The verdict, one line saying why, and the figures behind it (stored with the int8 file)."""

    ok: bool
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary, "figures": self.figures}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] (x1, y1, x2, y2)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(ref: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]], iou: float = BOX_IOU) -> int:
    """How many ``ref`` boxes (PaddleX box dicts, best first) find an unused ``other`` box of the same
    class at IoU >= ``iou`` (greedy, best IoU first)."""
    if not ref or not other:
        return 0
    ious = iou_matrix(np.array([b["coordinate"] for b in ref]), np.array([b["coordinate"] for b in other]))
    same = np.array([[r["cls_id"] == o["cls_id"] for o in other] for r in ref])
    ious = np.where(same, ious, 0.0)
    used: set[int] = set()
    matched = 0
    for row in ious:
        for j in np.argsort(-row, kind="stable"):
            if row[j] < iou:
                break
            if int(j) not in used:
                used.add(int(j))
                matched += 1
                break
    return matched


def check_detector(fp32: DetectionPredictor, int8: DetectionPredictor, images: Sequence[DecodedImage],
                   gallery: Sequence[DecodedImage] = ()) -> CheckResult:
    ref = [r["boxes"] for r in fp32.predict_images(list(images))]
    got = [r["boxes"] for r in int8.predict_images(list(images))]
    total = sum(max(len(a), len(b)) for a, b in zip(ref, got))
    if sum(len(a) for a in ref) < MIN_BOXES:
        raw = check_detector_anchors(fp32, int8, images)
        return CheckResult(raw.ok, f"fp32 finds fewer than {MIN_BOXES} boxes, so {raw.summary}", raw.figures)
    matched = sum(match_boxes(a, b) for a, b in zip(ref, got))
    share = matched / total
    figures = {"mode": "boxes", "photos": len(images), "fp32_boxes": sum(len(a) for a in ref),
               "int8_boxes": sum(len(b) for b in got), "matched": matched, "matched_share": round(share, 4),
               "iou": BOX_IOU, "threshold": fp32.resolve_params({})["threshold"]}
    ok = share >= BOX_MATCHED
    summary = (f"boxes matched at IoU >= {BOX_IOU} with the same label: {100 * share:.1f} % "
               f"({matched} of {total}; fp32 {figures['fp32_boxes']}, {getattr(int8, 'precision', 'int8')} "
               f"{figures['int8_boxes']} boxes) on "
               f"{len(images)} photos, {'>=' if ok else '<'} {100 * BOX_MATCHED:.0f} %")
    return CheckResult(ok, summary, figures)


def check_detector_anchors(fp32: DetectionPredictor, int8: DetectionPredictor,
                        images: Sequence[DecodedImage]) -> CheckResult:
    """Few or no boxes (random weights): compare the decoded anchors before NMS."""
    batch = fp32.preprocess([image.held_pixels for image in images])
    ref_boxes, ref_scores = (np.asarray(x, dtype=np.float32) for x in fp32.decode_outputs(fp32.engine(batch)))
    got_boxes, got_scores = (np.asarray(x, dtype=np.float32) for x in int8.decode_outputs(int8.engine(batch)))
    kept, total = 0, 0
    for index in range(len(images)):
        best = np.argsort(-ref_scores[index].max(axis=1), kind="stable")[:RAW_TOP_ANCHORS]
        ious = iou_matrix(ref_boxes[index][best], got_boxes[index][best]).diagonal()
        kept += int((ious >= BOX_IOU).sum())
        total += len(best)
    share = kept / max(1, total)
    delta = float(np.abs(ref_scores - got_scores).max()) if ref_scores.size else 0.0
    ok = share >= BOX_MATCHED and delta <= RAW_SCORE_DELTA
    figures = {"mode": "anchors", "photos": len(images), "anchors": total, "box_kept_share": round(share, 4),
               "max_score_delta": round(delta, 5), "iou": BOX_IOU}
    summary = (f"anchors before NMS compared: the "
               f"{RAW_TOP_ANCHORS} best per photo keep their box (IoU >= {BOX_IOU}) in {100 * share:.1f} % "
               f"(need {100 * BOX_MATCHED:.0f} %), largest score change {delta:.4f} (need <= {RAW_SCORE_DELTA})")
    return CheckResult(ok, summary, figures)


def check_features(fp32: FeaturePredictor, int8: FeaturePredictor, images: Sequence[DecodedImage],
                   gallery: Sequence[DecodedImage] = ()) -> CheckResult:
    everything = list(images) + list(gallery)
    ref, got = fp32.embed(everything), int8.embed(everything)
    count = len(images)
    cosine = (ref[:count] * got[:count]).sum(axis=1)
    # retrieval top-1: each validation photo's nearest other photo, fp32 vs int8
    same = 0
    for index in range(count):
        ref_sim, got_sim = ref @ ref[index], got @ got[index]
        ref_sim[index] = got_sim[index] = -np.inf
        same += int(np.argmax(ref_sim) == np.argmax(got_sim))
    ok = bool(cosine.min() >= FEATURE_COSINE) and same == count
    figures = {"mode": "features", "photos": count, "gallery": len(everything), "cosine_min": round(float(cosine.min()), 5),
               "cosine_mean": round(float(cosine.mean()), 5), "top1_unchanged": same}
    summary = (f"feature cosine min {cosine.min():.4f} / mean {cosine.mean():.4f} (need >= {FEATURE_COSINE} each), "
               f"retrieval top-1 unchanged for {same} of {count} photos (gallery {len(everything)})")
    return CheckResult(ok, summary, figures)


#: the check each task's int8 model must pass; tasks without one cannot run int8
CHECKS: dict[type[BasePredictor], Callable[..., CheckResult]] = {
    DetectionPredictor: check_detector,
    FeaturePredictor: check_features,
}


def check_for(predictor: BasePredictor) -> Callable[..., CheckResult] | None:
    return next((check for cls, check in CHECKS.items() if isinstance(predictor, cls)), None)
