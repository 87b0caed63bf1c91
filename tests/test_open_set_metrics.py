"""Open-set metrics on synthetic rankings where the right answers are known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from viewfinder.errors import ConfigError
from viewfinder.retrieval.open_set import (
    RankedQuery,
    average_precision,
    confusion_pairs,
    evaluate_rankings,
    propose_threshold,
    recall_at_k,
    threshold_sweep,
)


def _known(name, truth, labels, scores):
    return RankedQuery(name, truth, list(labels), list(scores))


def _unknown(name, labels, scores):
    return RankedQuery(name, None, list(labels), list(scores))


def test_separable_scores_give_threshold_between_them_and_f1_one():
    # known queries score 0.9 against their own label, unknowns 0.3: any threshold in (0.3, 0.9) is perfect
    queries = [_known(f"k{i}", f"L{i}", [f"L{i}", "other"], [0.9, 0.2]) for i in range(5)]
    queries += [_unknown(f"u{i}", [f"L{i}"], [0.3]) for i in range(4)]
    report = evaluate_rankings(queries, {f"L{i}": 1 for i in range(5)})
    assert 0.3 < report["suggested_rec_threshold"] < 0.9
    assert report["suggested_rec_threshold"] == pytest.approx(0.6)  # the middle of the gap: most margin
    assert report["f1"] == 1.0 and report["unknown_precision"] == 1.0 and report["unknown_recall"] == 1.0
    assert report["recall1"] == 1.0 and report["recall5"] == 1.0 and report["mAP"] == 1.0
    assert report["known_accepted"] == 1.0 and report["open_set_accuracy"] == 1.0
    assert report["queries_known"] == 5 and report["queries_unknown"] == 4
    assert report["separation"]["margin"] == pytest.approx(0.6) and report["separation"]["d_prime"] is None
    # separable: a threshold fitted on the other folds still separates each held-out fold
    assert report["held_out"]["f1"] == 1.0 and report["held_out"]["folds"] == 9


def test_l2_distances_propose_a_distance_threshold():
    # the same separation as distances: known at 0.2, unknown at 1.4, lower is better
    queries = [_known("k", "A", ["A"], [0.2]), _known("k2", "B", ["B"], [0.25]), _unknown("u", ["A"], [1.4])]
    report = evaluate_rankings(queries, {"A": 1, "B": 1}, higher_is_better=False)
    assert 0.25 < report["suggested_rec_threshold"] < 1.4
    assert report["f1"] == 1.0


def test_overlap_gives_the_f1_optimum_not_perfection():
    # similarities: unknowns 0.5, 0.7; knowns 0.6, 0.8, 0.9 -> reject < 0.55: P=1, R=.5 (F1 .667);
    # reject < 0.65: {0.5,0.6}: P=.5 R=.5; reject < 0.75: {0.5,0.6,0.7}: P=2/3, R=1 -> F1 0.8 (best)
    queries = [_unknown("u1", ["A"], [0.5]), _unknown("u2", ["A"], [0.7]),
               _known("k1", "A", ["A"], [0.6]), _known("k2", "B", ["B"], [0.8]), _known("k3", "C", ["C"], [0.9])]
    report = evaluate_rankings(queries, {"A": 1, "B": 1, "C": 1})
    assert report["suggested_rec_threshold"] == pytest.approx(0.75)
    assert report["f1"] == pytest.approx(0.8)
    assert report["unknown_precision"] == pytest.approx(2 / 3) and report["unknown_recall"] == 1.0
    assert report["known_accepted"] == pytest.approx(2 / 3)
    # correct knowns 0.6, 0.8, 0.9 vs unknowns 0.5, 0.7: they overlap
    assert report["separation"]["margin"] == pytest.approx(-0.1)
    assert report["separation"]["d_prime"] > 0


def test_target_precision_picks_highest_recall_meeting_it():
    queries = [_unknown("u1", ["A"], [0.5]), _unknown("u2", ["A"], [0.7]),
               _known("k1", "A", ["A"], [0.6]), _known("k2", "B", ["B"], [0.8])]
    rows = threshold_sweep(queries)
    row, why = propose_threshold(rows, target_precision=1.0)
    assert row["threshold"] == pytest.approx(0.55) and row["unknown_recall"] == 0.5 and "precision" in why
    with pytest.raises(ConfigError):
        propose_threshold(rows, target_precision=1.5)
    # unreachable precision: no proposal, a reason instead
    hard = [_unknown("u", ["A"], [0.9]), _known("k", "A", ["A"], [0.5])]
    row, why = propose_threshold(threshold_sweep(hard), target_precision=1.0)
    assert row is None and "overlap" in why


def test_sweep_is_monotone_in_recall():
    rng = np.random.default_rng(0)
    queries = [_known(f"k{i}", "A", ["A"], [float(s)]) for i, s in enumerate(rng.uniform(0.4, 1.0, 30))]
    queries += [_unknown(f"u{i}", ["A"], [float(s)]) for i, s in enumerate(rng.uniform(0.0, 0.7, 20))]
    rows = threshold_sweep(queries)
    recalls = [r["unknown_recall"] for r in rows]
    assert recalls == sorted(recalls) and recalls[0] == 0.0 and recalls[-1] == 1.0
    assert len(rows) == 51  # one below every score, 49 gaps, one above
    report = evaluate_rankings(queries, {"A": 1})
    assert len(report["threshold_curve"]) <= 102
    assert report["f1"] == max(r["f1"] for r in rows)


def test_no_unknowns_proposes_nothing_but_reports_recall():
    queries = [_known("k1", "A", ["B", "A"], [0.8, 0.7]), _known("k2", "B", ["B"], [0.9])]
    report = evaluate_rankings(queries, {"A": 1, "B": 1})
    assert report["suggested_rec_threshold"] is None and "unknown" in report["threshold_rule"]
    assert report["unknown_precision"] is None and report["f1"] is None
    assert report["recall1"] == 0.5 and report["recall5"] == 1.0
    assert report["mAP"] == pytest.approx((0.5 + 1.0) / 2)
    assert report["per_label_recall"] == {"A": {"queries": 1, "recall1": 0.0}, "B": {"queries": 1, "recall1": 1.0}}
    assert report["confusion_pairs"] == [{"label": "A", "confused_with": "B", "count": 1}]


def test_empty_query_list_is_a_clear_error():
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        evaluate_rankings([], {})


def test_average_precision_and_recall_at_k():
    assert average_precision("A", ["A", "B", "A"], relevant=2) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision("A", ["B", "C"], relevant=3) == 0.0
    assert average_precision("A", ["A"], relevant=0) == 0.0
    queries = [_known("q", "A", ["B", "C", "D", "E", "F", "A"], [1, 1, 1, 1, 1, 1])]
    assert recall_at_k(queries, 5) == 0.0 and recall_at_k(queries, 6) == 1.0
    assert recall_at_k([_unknown("u", [], [])], 1) is None


def test_confusions_count_most_frequent_first():
    queries = [_known("a", "A", ["B"], [0.5]), _known("b", "A", ["B"], [0.5]), _known("c", "C", ["D"], [0.5]),
               _known("d", "A", ["A"], [0.9])]
    assert confusion_pairs(queries) == [{"label": "A", "confused_with": "B", "count": 2},
                                        {"label": "C", "confused_with": "D", "count": 1}]


def test_a_query_with_no_result_is_rejected_at_any_threshold():
    queries = [_unknown("u", [], []), _known("k", "A", ["A"], [0.9])]
    report = evaluate_rankings(queries, {"A": 1})
    assert report["f1"] == 1.0 and report["recall1"] == 1.0


def test_held_out_f1_is_not_flattered_by_fitting_on_the_same_queries():
    # one unknown scores like the knowns: the in-sample optimum may isolate it, held out it cannot
    rng = np.random.default_rng(1)
    queries = [_known(f"k{i}", "A", ["A"], [float(s)]) for i, s in enumerate(rng.uniform(0.5, 1.0, 20))]
    queries += [_unknown(f"u{i}", ["A"], [float(s)]) for i, s in enumerate(rng.uniform(0.3, 0.8, 20))]
    report = evaluate_rankings(queries, {"A": 1})
    assert report["held_out"]["f1"] <= report["f1"]
    assert 0 < report["held_out"]["f1"] < 1
    assert evaluate_rankings(queries[:20], {"A": 1})["held_out"] is None  # no unknowns: nothing to check


def test_sweep_counts_match_a_brute_force_count():
    rng = np.random.default_rng(7)
    scores = np.round(rng.uniform(0, 1, 300), 2)  # ties on purpose
    queries = [_known(f"k{i}", "A", ["A" if i % 3 else "B"], [float(s)]) for i, s in enumerate(scores[:200])]
    queries += [_unknown(f"u{i}", ["A"], [float(s)]) for i, s in enumerate(scores[200:])]
    queries.append(_unknown("none", [], []))
    for row in threshold_sweep(queries):
        t = row["threshold"]
        rejected = [q for q in queries if q.top1_score is None or q.top1_score < t]
        unknown_rejected = sum(q.truth is None for q in rejected)
        assert row["unknown_recall"] == pytest.approx(unknown_rejected / 101)
        assert row["unknown_precision"] == pytest.approx(unknown_rejected / len(rejected) if rejected else 1.0)
        accepted_right = sum(q.truth is not None and q.top1 == q.truth and q.top1_score >= t for q in queries)
        assert row["open_set_accuracy"] == pytest.approx((accepted_right + unknown_rejected) / len(queries))
    big = [_known(f"k{i}", "A", ["A"], [float(s)]) for i, s in enumerate(rng.uniform(0, 1, 20000))]
    big += [_unknown(f"u{i}", ["A"], [float(s)]) for i, s in enumerate(rng.uniform(0, 1, 5000))]
    assert evaluate_rankings(big, {"A": 1})["queries_unknown"] == 5000  # 25k queries: no quadratic sweep
