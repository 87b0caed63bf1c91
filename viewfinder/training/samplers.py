"""Batch orders for one epoch, as explicit index lists (so a resumed epoch can skip the batches done).

Both samplers are deterministic functions of ``(seed, epoch)``.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from ..errors import TrainingError


def shuffled_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """A random permutation cut into batches; the last partial batch is dropped when a full one exists
    (BatchNorm misbehaves on a batch of 1)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_samples).tolist()
    batches = [order[i:i + batch_size] for i in range(0, num_samples, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


class PKSampler:
    """P identities x K images per batch (PaddleClas ``PKSampler``), the triplet loss's batch shape.

    Each epoch has ``len(labels) // (P x K)`` batches (at least one). Identities are drawn
    uniformly without repetition inside a batch. Each identity's images are dealt from its own
    shuffled deck, reshuffled when it runs out, so an epoch shows every image of a balanced set
    once; PaddleClas draws K images per identity afresh for every batch, which over an epoch
    leaves about a third of the images unseen (sampling with replacement). An identity with
    fewer than K images has some drawn twice. With fewer identities than ``batch_size // K``,
    K grows so batches keep (about) their size.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, sample_per_id: int) -> None:
        if batch_size % sample_per_id:
            raise TrainingError(f"batch_size {batch_size} is not a multiple of sample_per_id {sample_per_id}")
        self.by_label: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            self.by_label[int(label)].append(index)
        self.ids = sorted(self.by_label)
        if len(self.ids) < 2:
            raise TrainingError("recognition training needs at least 2 different labels in train.txt")
        self.per_batch = min(batch_size // sample_per_id, len(self.ids))
        # Fewer identities than batch_size / K (e.g. 10 classes, batch 64, K 4): more images per
        # identity keep the batch at its size instead of shrinking it to 10 x 4.
        self.k = max(sample_per_id, batch_size // self.per_batch)
        # counted in batches of the size actually dealt (10 x 6 = 60 above, not 64), so that an epoch
        # shows every image once
        self.num_batches = max(1, len(labels) // (self.per_batch * self.k))

    def batches(self, seed: int, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([seed, epoch])
        decks: dict[int, list[int]] = {label: [] for label in self.ids}
        batches: list[list[int]] = []
        for _ in range(self.num_batches):
            batch: list[int] = []
            for label in rng.choice(self.ids, size=self.per_batch, replace=False):
                deck = decks[int(label)]
                for _ in range(self.k):
                    if not deck:
                        deck.extend(rng.permutation(self.by_label[int(label)]).tolist())
                    batch.append(deck.pop())
            batches.append(batch)
        return batches
