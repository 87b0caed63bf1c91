"""Open-set evaluation of a PP-ShiTuV2 pipeline on the user's own labelled queries.

What a query's answer is: the pipeline detects main bodies as ``predict()`` does with the config's
settings (``single_mainbody`` / ``max_det_results`` / ``mainbody_order`` included; plus the whole
image when ``always_add_whole_image`` is set, or when nothing is detected), embeds every box and
searches the index; the query's ranking is the top-k of **the box whose top-1 score is best** (the
box ``predict()`` would report most confidently). ``rec_threshold`` is *not* applied: the
evaluation sweeps it. The metrics are those of ``viewfinder.retrieval.open_set``.

Known queries whose file is missing or unreadable are skipped and listed (``skipped``); a label
no gallery item has is reported (``labels_not_in_gallery``) and its queries count as misses.
"""
from __future__ import annotations

import json
import logging
import math
import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..io.sources import IMAGE_EXTENSIONS
from ..results import ErrorResult
from ..retrieval.open_set import RankedQuery, evaluate_rankings
from .gallery import read_gallery_file

log = logging.getLogger(__name__)

RESULT_FILE = "evaluate_result.json"
CURVES_FILE = "evaluate_curves.png"
FAILURES_FILE = "evaluate_failures.png"
#: results kept per query (recall@5 needs 5)
MIN_TOPK = 5
#: failures kept in the report and drawn on the contact sheet
WORST = 12


@dataclass
class QueryOutcome:
    ranked: RankedQuery
    path: str
    box: list[float]
    top1_id: int | None


def _unknown_images(folder: Any) -> list[str]:
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"unknown-object folder {root} is not a folder")
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _run(pipeline: Any, paths: list[str], gallery: Any, det: float, k: int, show_progress: bool
         ) -> tuple[list[tuple[str, Any]], list[str]]:
    """(path, (boxes, scores, ids, labels) of its best box) per readable query; skipped notes."""
    from tqdm import tqdm

    answers: list[tuple[str, Any]] = []
    skipped: list[str] = []
    with tqdm(total=len(paths), desc="evaluating", unit="img", disable=not show_progress) as bar, \
            closing(pipeline._detected_groups(paths, det)) as groups:
        for group in groups:
            for item in group:
                if isinstance(item, ErrorResult):
                    skipped.append(str(item["error"]))
            searched = pipeline._search_boxes(group, gallery, k, pipeline.box_choice)
            for found, boxes, scores, ids, labels in searched:
                answers.append((found.image.input_path, _best_box(boxes, scores, ids, labels, gallery)))
            bar.update(len(group))
    return answers, skipped


def _best_box(boxes: list[Any], scores: Any, ids: Any, labels: Any, gallery: Any) -> tuple[Any, ...]:
    best = None
    for position, (row_scores, row_ids) in enumerate(zip(scores, ids)):
        if row_ids[0] < 0:
            continue
        if best is None or gallery.is_better(float(row_scores[0]), float(scores[best][0])):
            best = position
    if best is None:  # an empty gallery: nothing found for any box
        return boxes[0][0], [], [], []
    valid = ids[best] >= 0
    return (boxes[best][0], [float(s) for s in scores[best][valid]], [int(i) for i in ids[best][valid]],
            [label for label, ok in zip(labels[best], valid) if ok])


def evaluate_pipeline(pipeline: Any, queries: Any, labels: Any, index: Any = None, *, unknown: Any = None,
                      output: Any = None, target_precision: float | None = None, det_threshold: float | None = None,
                      show_progress: bool = True, plots: bool = True) -> dict[str, Any]:
    """See :meth:`ShiTuV2Pipeline.evaluate`; writes ``output``/evaluate_result.json (+ PNGs) when given."""
    if not isinstance(queries, (str, Path)) or not Path(queries).is_dir():
        raise InputError(f"queries must be a folder of images, got {queries!r}")
    if not isinstance(labels, (str, Path)):
        raise ConfigError(f"labels must be the path of a label file ('path label' lines), got {labels!r}")
    entries = read_gallery_file(queries, labels)
    unknown_paths = _unknown_images(unknown) if unknown is not None else []
    if unknown is not None and not unknown_paths:
        log.warning("unknown-object folder %s holds no image: no threshold can be proposed", unknown)
    gallery = pipeline._load_index(index if index is not None else pipeline._default_index)
    pipeline._check_index(gallery)
    det = pipeline.det_threshold if det_threshold is None else det_threshold
    pipeline._check_numbers(det, pipeline.rec_threshold, pipeline.rec_topk)
    k = max(MIN_TOPK, int(pipeline.rec_topk))

    missing = [p for p in entries.paths if not Path(p).is_file()]
    present = [p for p in entries.paths if Path(p).is_file()]
    if not present:
        raise InputError(f"{labels}: none of its {len(entries.paths)} images exists under {queries} "
                         f"(first: {entries.paths[0]})")
    truth = dict(zip(entries.paths, entries.labels))
    answers, skipped = _run(pipeline, present + unknown_paths, gallery, float(det), k, show_progress)
    skipped = [f"{p}: no such file" for p in missing] + skipped + list(entries.skipped)
    unknown_set = set(unknown_paths)
    outcomes = []
    for path, (box, scores, ids, found_labels) in answers:
        label = None if path in unknown_set else truth.get(path)
        outcomes.append(QueryOutcome(RankedQuery(Path(path).name, label, found_labels, scores), path,
                                     [round(float(c), 2) for c in box], ids[0] if ids else None))
    if not any(o.ranked.truth is not None for o in outcomes):
        raise InputError(f"no labelled query could be read ({len(skipped)} skipped: {'; '.join(skipped[:3])})")

    id_map = gallery.id_map
    counts: dict[str, int] = {}
    for label in id_map.values():
        counts[label] = counts.get(label, 0) + 1
    report = evaluate_rankings([o.ranked for o in outcomes], counts, higher_is_better=gallery.higher_is_better,
                               target_precision=target_precision)
    failures = _failures(outcomes, gallery)
    report.update({
        "metric_type": gallery.metric_type,
        "score": "top-1 score of the query's best box; accepted as known when it passes rec_threshold",
        "rec_threshold_configured": pipeline.rec_threshold,
        "topk": k,
        "index": str(index if index is not None else pipeline._default_index) if not hasattr(index, "search")
        else "in-memory index",
        "index_size": len(gallery),
        "feature_model": gallery.feature_model,
        "feature_transform": getattr(gallery, "feature_transform", None),
        "query_expansion": getattr(gallery, "query_expansion", None),
        "labels_not_in_gallery": sorted({o.ranked.truth for o in outcomes
                                         if o.ranked.truth is not None and o.ranked.truth not in counts}),
        "skipped": skipped,
        "failures": failures,
    })
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        report["plots"] = _draw(report, failures, out) if plots else "not requested"
        (out / RESULT_FILE).write_text(json.dumps(_json_safe(report), indent=2, ensure_ascii=False), encoding="utf-8")
    return report


def _failures(outcomes: list[QueryOutcome], gallery: Any) -> list[dict[str, Any]]:
    """Known queries answered with a wrong label and unknowns, most confident first."""
    sign = 1.0 if gallery.higher_is_better else -1.0
    wrong = [o for o in outcomes if o.ranked.truth is None or o.ranked.top1 != o.ranked.truth]
    wrong = [o for o in wrong if o.ranked.top1_score is not None]
    wrong.sort(key=lambda o: -sign * o.ranked.top1_score)
    wrong = wrong[:WORST]
    metadata = gallery.get_metadata([o.top1_id for o in wrong]) if wrong else []
    return [{
        "query": o.path, "truth": o.ranked.truth, "kind": "unknown" if o.ranked.truth is None else "wrong label",
        "matched": o.ranked.top1, "score": round(o.ranked.top1_score, 5), "box": o.box, "match_id": o.top1_id,
        "match_path": (meta or {}).get("path") if isinstance(meta, dict) else None,
    } for o, meta in zip(wrong, metadata)]


def _draw(report: dict[str, Any], failures: list[dict[str, Any]], out: Path) -> dict[str, str]:
    from .eval_plots import contact_sheet, threshold_curves

    drawn: dict[str, str] = {}
    try:
        threshold_curves(report, out / CURVES_FILE)
        drawn["curves"] = str(out / CURVES_FILE)
    except ImportError:
        drawn["curves"] = "skipped: matplotlib is not installed (pip install 'viewfinder[plots]')"
        log.warning("threshold curves skipped: matplotlib is not installed (pip install 'viewfinder[plots]')")
    if failures:
        contact_sheet(failures, out / FAILURES_FILE)
        drawn["failures"] = str(out / FAILURES_FILE)
    else:
        drawn["failures"] = "no failure to draw"
    return drawn


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ----------------------------------------------------------------------- writing the threshold
_REC_LINE = re.compile(r"^rec_threshold[ \t]*:[^\n#]*?([ \t]*#[^\n]*)?$", re.M)


def write_rec_threshold(config_path: Any, value: float) -> None:
    """Set the top-level ``rec_threshold`` of a pipeline YAML, keeping every other line (and comment)."""
    import yaml

    path = Path(config_path)
    if not path.is_file() or path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"--write_threshold needs --pipeline to be a YAML file, got {config_path}")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"no threshold to write ({value!r})")
    text = path.read_text(encoding="utf-8")
    number = f"{value:.4f}"
    if _REC_LINE.search(text):
        text = _REC_LINE.sub(lambda m: f"rec_threshold: {number}{m.group(1) or ''}", text, count=1)
    else:
        text = text.rstrip("\n") + f"\nrec_threshold: {number}\n"
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict) or abs(float(loaded.get("rec_threshold")) - float(number)) > 1e-9:
        raise ConfigError(f"{path}: could not set rec_threshold safely; edit it by hand (rec_threshold: {number})")
    path.write_text(text, encoding="utf-8")
