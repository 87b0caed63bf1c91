"""Why recall@1 lags a recognition model's own classifier: nearest neighbour vs class-level rules.

    .venv/bin/python examples/knn_gap.py MODEL_DIR DATASET_DIR

MODEL_DIR: a recognition model fine-tuned from a classifier (its BNNeck + head are folded into
the classifier on export); DATASET_DIR: a ShiTuRecDataset whose query and gallery labels are
the training identities (e.g. the one ``fashion_mnist_shitu.py`` writes). Prints, on the
queries: the folded classifier's top-1; recall@1 (the single nearest gallery image), also with
flip-averaged embeddings; the nearest gallery class mean; similarity-weighted k-NN votes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from viewfinder.datasets import load_dataset
from viewfinder.models import load_network
from viewfinder.models.feature import l2_normalize
from viewfinder.training.evaluate import Evaluator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("dataset_dir")
    args = parser.parse_args()

    base = load_network(None, args.model_dir, pretrained=False)
    network = base.module.eval()
    evaluator = Evaluator(load_dataset(Path(args.dataset_dir), "ShiTuRecDataset"), base.preprocess, 128, progress=False)

    def outputs(split: str, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        features, logits = [], []
        with torch.inference_mode():
            for batch in evaluator.batches[split]:
                pooled = network.forward_head(network.forward_features(batch.flip(3) if flip else batch),
                                              pre_logits=True)
                features.append(pooled.numpy())
                logits.append(network.get_classifier()(pooled).numpy())
        return np.concatenate(features), np.concatenate(logits)

    query, query_logits = outputs("query")
    gallery, _ = outputs("gallery")
    query, gallery = l2_normalize(query), l2_normalize(gallery)
    query_labels = np.asarray(evaluator.sets["query"].targets).astype(int)
    gallery_labels = np.asarray(evaluator.sets["gallery"].targets).astype(int)
    classes = np.unique(gallery_labels)

    similarity = query @ gallery.T
    rows = {"classifier top-1": float((query_logits.argmax(1) == query_labels).mean()),
            "recall@1 (nearest gallery image)": float((gallery_labels[similarity.argmax(1)] == query_labels).mean())}
    query_flip, _ = outputs("query", flip=True)
    gallery_flip, _ = outputs("gallery", flip=True)
    query_avg = l2_normalize(query + l2_normalize(query_flip))
    flip_similarity = query_avg @ l2_normalize(gallery + l2_normalize(gallery_flip)).T
    rows["recall@1, flip-averaged embeddings"] = float((gallery_labels[flip_similarity.argmax(1)]
                                                        == query_labels).mean())
    means = np.stack([gallery[gallery_labels == c].mean(0) for c in classes])
    rows["nearest gallery class mean"] = float((classes[(query @ l2_normalize(means).T).argmax(1)]
                                                == query_labels).mean())
    order = np.argsort(-similarity, axis=1)
    position = np.searchsorted(classes, gallery_labels)
    for k in (5, 10, 20):
        votes = np.zeros((len(query_labels), len(classes)))
        for j in range(k):
            np.add.at(votes, (np.arange(len(query_labels)), position[order[:, j]]),
                      similarity[np.arange(len(query_labels)), order[:, j]])
        rows[f"similarity-weighted {k}-NN vote"] = float((classes[votes.argmax(1)] == query_labels).mean())
    print(f"{len(query_labels)} queries, {len(gallery_labels)} gallery images")
    for name, value in rows.items():
        print(f"{name:40s} {value:.4f}")


if __name__ == "__main__":
    main()
