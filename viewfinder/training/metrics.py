"""Evaluation metrics under PaddleX's names.

* ``val.top1`` / ``val.top5``: single-label accuracy (top-k capped at the number of classes);
* ``MultiLabelMAP``: mean over classes (with at least one positive) of average precision;
* ``recall1`` / ``recall5`` / ``mAP``: retrieval of query features against gallery features
  by cosine similarity, computed in query blocks (PaddleClas ``Recallk`` and ``mAP``).
  Queries without any same-label gallery item are left out of both, and a gallery entry
  with the query's own image path is ignored (PaddleClas's ``keep_mask``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def topk_accuracy(logits: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    logits = np.asarray(logits, dtype=np.float32)
    targets = np.asarray(targets).reshape(-1)
    if len(targets) == 0:
        return {f"val.top{k}": 0.0 for k in ks}
    order = np.argsort(-logits, axis=1, kind="stable")
    result = {}
    for k in ks:
        top = order[:, : min(k, logits.shape[1])]
        result[f"val.top{k}"] = float(np.mean(np.any(top == targets[:, None], axis=1)))
    return result


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranking: the mean of the precision at each relevant item's rank."""
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order].astype(np.float64)
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def multilabel_map(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets).astype(bool)
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1]) if targets[:, c].any()]
    return {"MultiLabelMAP": float(np.mean(aps)) if aps else 0.0}


def retrieval_metrics(query: np.ndarray, query_labels: Sequence[int], gallery: np.ndarray,
                      gallery_labels: Sequence[int], topk: Sequence[int] = (1, 5), block: int = 64,
                      query_paths: Sequence[str] | None = None,
                      gallery_paths: Sequence[str] | None = None) -> dict[str, float]:
    """recall@k and mAP of L2-normalised ``query`` rows against ``gallery`` rows."""
    query = np.asarray(query, dtype=np.float32)
    gallery = np.asarray(gallery, dtype=np.float32)
    q_labels = np.asarray(query_labels)
    g_labels = np.asarray(gallery_labels)
    g_index = {path: i for i, path in enumerate(gallery_paths)} if gallery_paths is not None else {}
    hits_at = {k: 0 for k in topk}
    ap_sum, counted = 0.0, 0
    for start in range(0, len(query), block):
        similarity = query[start:start + block] @ gallery.T
        for row, sims in enumerate(similarity):
            index = start + row
            relevant = g_labels == q_labels[index]
            if query_paths is not None and query_paths[index] in g_index:
                own = g_index[query_paths[index]]
                sims = sims.copy()
                sims[own] = -np.inf
                relevant = relevant.copy()
                relevant[own] = False
            if not relevant.any():
                continue
            order = np.argsort(-sims, kind="stable")
            ranked = relevant[order]
            counted += 1
            first = int(np.argmax(ranked))
            for k in topk:
                hits_at[k] += int(first < k)
            precision = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
            ap_sum += float((precision * ranked).sum() / ranked.sum())
    if counted == 0:
        return {**{f"recall{k}": 0.0 for k in topk}, "mAP": 0.0}
    return {**{f"recall{k}": hits_at[k] / counted for k in topk}, "mAP": ap_sum / counted}


#: the metric that picks the best model, per dataset type
PRIMARY_METRIC = {"ClsDataset": "val.top1", "MLClsDataset": "MultiLabelMAP", "ShiTuRecDataset": "recall1"}
