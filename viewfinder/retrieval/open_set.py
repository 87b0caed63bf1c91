"""Open-set recognition metrics from ranked search results: no images, no models.

The question a gallery owner asks is "which ``rec_threshold`` separates a product that is in my
gallery from one that is not?". Given, per query, the ranked labels and scores a search returned
(known queries also carry their true label; unknown queries have ``None``), this module computes:

* closed-set retrieval quality over the *known* queries: recall@k (the true label is among the
  first k results) and mAP (average precision over the returned ranking, divided by
  ``min(k, gallery items with that label)``, the most hits the ranking could hold);
* the known-vs-unknown decision as ``rec_threshold`` varies. A query is *accepted* when its top-1
  score passes the threshold and *rejected* otherwise. We score the rejection of unknowns, the
  standard open-set formulation: the positives are the unknown queries, ``unknown_precision`` is the
  share of rejected queries that are unknown and ``unknown_recall`` the share of unknowns rejected.
  A known query whose top-1 label is wrong is still a *known* query here (rejecting it is a false
  rejection); its error is counted by recall@1 and by ``open_set_accuracy`` (known queries accepted
  with the right label + unknowns rejected, over all queries), which the sweep reports too;
* the proposed threshold: the one that maximises F1 of rejecting unknowns, or, with a
  ``target_precision``, the one with the highest unknown recall whose unknown precision meets it.
  Candidate thresholds lie half-way between consecutive distinct top-1 scores, so a threshold never
  sits on a score; among equally good candidates the one in the widest gap wins (the most margin).

Scores follow the index metric: with ``higher_is_better=False`` (L2 distances) a query is accepted
when its score is ``<=`` the threshold, and the proposed threshold is a distance.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from viewfinder.errors import ConfigError

#: curve points kept in the report (the optimum is searched over every candidate)
CURVE_POINTS = 101


@dataclass
class RankedQuery:
    """One query's search outcome: ``labels``/``scores`` best-first; ``truth`` None for an unknown."""

    name: str
    truth: str | None
    labels: list[str]
    scores: list[float]

    @property
    def top1(self) -> str | None:
        return self.labels[0] if self.labels else None

    @property
    def top1_score(self) -> float | None:
        return self.scores[0] if self.scores else None


def recall_at_k(queries: Sequence[RankedQuery], k: int) -> float | None:
    """Share of known queries whose true label is among the first ``k`` results (None: no known query)."""
    known = [q for q in queries if q.truth is not None]
    if not known:
        return None
    return sum(q.truth in q.labels[:k] for q in known) / len(known)


def average_precision(truth: str, labels: Sequence[str], relevant: int) -> float:
    """AP of one ranking: mean of precision@i over the hits, divided by ``min(len(labels), relevant)``."""
    most = min(len(labels), relevant)
    if most <= 0:
        return 0.0
    hits, total = 0, 0.0
    for rank, label in enumerate(labels, start=1):
        if label == truth:
            hits += 1
            total += hits / rank
    return total / most


def mean_average_precision(queries: Sequence[RankedQuery], label_counts: dict[str, int]) -> float | None:
    """mAP over the known queries; ``label_counts``: gallery items per label."""
    known = [q for q in queries if q.truth is not None]
    if not known:
        return None
    return float(np.mean([average_precision(q.truth, q.labels, label_counts.get(q.truth, 0)) for q in known]))


def per_label_recall(queries: Sequence[RankedQuery]) -> dict[str, dict[str, Any]]:
    """label -> {queries, recall1} over the known queries."""
    groups: dict[str, list[RankedQuery]] = defaultdict(list)
    for q in queries:
        if q.truth is not None:
            groups[q.truth].append(q)
    return {label: {"queries": len(group), "recall1": sum(q.top1 == label for q in group) / len(group)}
            for label, group in sorted(groups.items())}


def confusion_pairs(queries: Sequence[RankedQuery], limit: int = 10) -> list[dict[str, Any]]:
    """The (true label, wrong top-1 label) pairs that occur most, most frequent first."""
    pairs = Counter((q.truth, q.top1) for q in queries if q.truth is not None and q.top1 != q.truth)
    return [{"label": truth, "confused_with": wrong, "count": count}
            for (truth, wrong), count in sorted(pairs.items(), key=lambda item: (-item[1], str(item[0])))[:limit]]


# ----------------------------------------------------------------------- known vs unknown
def _similarities(queries: Sequence[RankedQuery], higher_is_better: bool) -> np.ndarray:
    """Top-1 scores turned into 'higher is better' (a query with no result gets -inf)."""
    sign = 1.0 if higher_is_better else -1.0
    return np.array([sign * q.top1_score if q.top1_score is not None and math.isfinite(q.top1_score)
                     else -math.inf for q in queries], dtype=np.float64)


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def threshold_sweep(queries: Sequence[RankedQuery], higher_is_better: bool = True) -> list[dict[str, float]]:
    """One row per candidate threshold (ascending in 'higher is better' space), every candidate.

    Row keys: ``threshold`` (in the metric's own units), ``unknown_precision``, ``unknown_recall``,
    ``f1``, ``known_accepted`` (share of known queries accepted), ``open_set_accuracy`` and ``gap``
    (the width of the score gap the threshold sits in; infinite at the ends).
    """
    sims = _similarities(queries, higher_is_better)
    unknown = np.array([q.truth is None for q in queries])
    correct = np.array([q.truth is not None and q.top1 == q.truth for q in queries])
    n_unknown, n_known = int(unknown.sum()), int((~unknown).sum())
    finite = np.unique(sims[np.isfinite(sims)])
    # below every score (reject nothing with a score), between neighbours, above every score
    if finite.size:
        cuts = np.concatenate([[finite[0] - 1.0], (finite[:-1] + finite[1:]) / 2, [finite[-1] + 1.0]])
        gaps = np.concatenate([[math.inf], np.diff(finite), [math.inf]])
    else:
        cuts, gaps = np.array([0.0]), np.array([math.inf])
    # counts below each cut from cumulative sums over the sorted scores: O(n log n), not O(n^2)
    order = np.argsort(sims, kind="stable")
    below = np.searchsorted(sims[order], cuts, side="left")  # queries rejected at each cut
    cum = lambda flags: np.concatenate([[0], np.cumsum(flags[order])])  # noqa: E731
    unknown_below, known_below, correct_below = cum(unknown)[below], cum(~unknown)[below], cum(correct)[below]
    n_correct = int(correct.sum())
    rows = []
    sign = 1.0 if higher_is_better else -1.0
    for cut, gap, rejected, true_rejections, known_rejected, correct_rejected in zip(
            cuts.tolist(), gaps.tolist(), below.tolist(), unknown_below.tolist(), known_below.tolist(),
            correct_below.tolist()):
        precision = true_rejections / rejected if rejected else 1.0
        recall = true_rejections / n_unknown if n_unknown else 0.0
        accepted_right = n_correct - correct_rejected
        rows.append({
            "threshold": round(sign * cut, 6),
            "unknown_precision": precision,
            "unknown_recall": recall,
            "f1": _f1(precision, recall) if n_unknown else 0.0,
            "known_accepted": (n_known - known_rejected) / n_known if n_known else 0.0,
            "open_set_accuracy": (accepted_right + true_rejections) / len(queries) if len(queries) else 0.0,
            "gap": gap,
        })
    return rows


def propose_threshold(rows: list[dict[str, float]], target_precision: float | None = None
                      ) -> tuple[dict[str, float] | None, str]:
    """(the chosen sweep row, why); the row is None when nothing can be proposed."""
    if not rows:
        return None, "no queries"
    if not any(r["unknown_recall"] > 0 for r in rows):
        return None, "no unknown queries: give photos of objects not in the gallery (--unknown) to propose a threshold"
    if target_precision is not None:
        if not 0.0 < target_precision <= 1.0:
            raise ConfigError(f"target precision must be in (0, 1], got {target_precision}")
        meeting = [r for r in rows if r["unknown_recall"] > 0 and r["unknown_precision"] >= target_precision]
        if not meeting:
            return None, (f"no threshold rejects unknowns with precision >= {target_precision}: "
                          "the known and unknown scores overlap too much")
        best = max(meeting, key=lambda r: (r["unknown_recall"], r["gap"]))
        return best, f"highest unknown recall with unknown precision >= {target_precision}"
    best = max(rows, key=lambda r: (round(r["f1"], 12), r["gap"]))
    return best, "maximises F1 of rejecting unknowns"


def separation(queries: Sequence[RankedQuery], higher_is_better: bool = True) -> dict[str, float | None]:
    """How far apart the top-1 scores of correctly answered known queries and of unknowns lie.

    ``margin``: the lowest correct-known score minus the highest unknown score (in 'higher is
    better' units; negative when they overlap): the room a threshold has. ``d_prime``: the
    difference of the means over the pooled standard deviation, a scale-free separability that
    compares indexes whose scores live on different scales (centring lowers every score).
    """
    sims = _similarities(queries, higher_is_better)
    good = np.array([q.truth is not None and q.top1 == q.truth for q in queries])
    unknown = np.array([q.truth is None for q in queries])
    a, b = sims[good & np.isfinite(sims)], sims[unknown & np.isfinite(sims)]
    if not a.size or not b.size:
        return {"margin": None, "d_prime": None}
    pooled = math.sqrt((a.var() + b.var()) / 2)
    return {"margin": float(a.min() - b.max()),
            "d_prime": float((a.mean() - b.mean()) / pooled) if pooled > 0 else None}


def held_out(queries: Sequence[RankedQuery], higher_is_better: bool = True, folds: int = 10,
             target_precision: float | None = None) -> dict[str, Any] | None:
    """The threshold rule checked on queries it was not fitted on (k-fold, folds by position).

    The proposed threshold is fitted on the very queries it is scored on, which flatters it on a
    small set. Here each fold's queries are decided by the threshold proposed from the other folds;
    the decisions are pooled into one unknown precision/recall/F1. None when it cannot be done
    (fewer than 2 unknown or 2 known queries).
    """
    n_unknown = sum(q.truth is None for q in queries)
    if n_unknown < 2 or len(queries) - n_unknown < 2:
        return None
    k = max(2, min(folds, len(queries)))
    sims = _similarities(queries, higher_is_better)
    sign = 1.0 if higher_is_better else -1.0
    rejected_unknown = rejected = accepted_known = 0
    for fold in range(k):
        train = [q for i, q in enumerate(queries) if i % k != fold]
        if not any(q.truth is None for q in train):
            continue
        row, _ = propose_threshold(threshold_sweep(train, higher_is_better), target_precision)
        cut = -math.inf if row is None else sign * row["threshold"]
        for i in range(fold, len(queries), k):
            if sims[i] < cut:
                rejected += 1
                rejected_unknown += queries[i].truth is None
            else:
                accepted_known += queries[i].truth is not None
    precision = rejected_unknown / rejected if rejected else 1.0
    recall = rejected_unknown / n_unknown
    return {"folds": k, "unknown_precision": precision, "unknown_recall": recall, "f1": _f1(precision, recall),
            "known_accepted": accepted_known / (len(queries) - n_unknown)}


def evaluate_rankings(queries: Sequence[RankedQuery], label_counts: dict[str, int], *,
                      higher_is_better: bool = True, target_precision: float | None = None,
                      confusions: int = 10) -> dict[str, Any]:
    """Every metric of one evaluation, JSON-ready (see the module docstring for the definitions)."""
    known = [q for q in queries if q.truth is not None]
    unknown = [q for q in queries if q.truth is None]
    if not queries:
        raise ConfigError("nothing to evaluate: no query could be searched")
    rows = threshold_sweep(queries, higher_is_better)
    chosen, why = propose_threshold(rows, target_precision)
    step = max(1, math.ceil(len(rows) / CURVE_POINTS))
    curve = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    best_f1 = max((r["f1"] for r in rows), default=0.0)
    return {
        "queries_known": len(known),
        "queries_unknown": len(unknown),
        "recall1": recall_at_k(queries, 1),
        "recall5": recall_at_k(queries, 5),
        "mAP": mean_average_precision(queries, label_counts),
        "suggested_rec_threshold": chosen["threshold"] if chosen else None,
        "threshold_rule": why,
        "unknown_precision": chosen["unknown_precision"] if chosen and unknown else None,
        "unknown_recall": chosen["unknown_recall"] if chosen and unknown else None,
        "f1": chosen["f1"] if chosen and unknown else None,
        "best_f1": best_f1 if unknown else None,
        "known_accepted": chosen["known_accepted"] if chosen else None,
        "open_set_accuracy": chosen["open_set_accuracy"] if chosen else None,
        "separation": separation(queries, higher_is_better),
        "held_out": held_out(queries, higher_is_better, target_precision=target_precision),
        "per_label_recall": per_label_recall(queries),
        "confusion_pairs": confusion_pairs(queries, confusions),
        "threshold_curve": [{key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                             for key, value in row.items()} for row in curve],
    }
