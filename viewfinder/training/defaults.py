"""Training settings chosen from the dataset and the model, for the settings a run leaves unset.

PaddleX's answer to poor recognition is "collect 50-100 images per class and train"; a
recipe tuned for ImageNet-sized data over-fits or forgets on that (a few hundred images
per class). Every setting left as ``None`` in :class:`~.config.TrainConfig` is decided here
from facts about the dataset (images, classes, images per class, the size of the source
images) and the model (its input size, its parameter groups), each decision with the
reason, which the run prints at its start and records in ``config.yaml`` (the value) and
``train_result.json`` (value and reason). A value the user sets (flag, ``-o``, a config
file, PaddleX's ``Train.*`` keys) is never overridden.

The rules were tuned on Fashion-MNIST subsets of 100-300 images per class
(``benchmarks/small_data.py``); docs/training.md gives the figures.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..datasets.formats import CLS, ML, REC, Sample
from ..models.preprocess import PreprocessConfig

#: images whose size is read (from the header only) to judge the source resolution
SIZE_SAMPLE = 200
#: the network input is at most this many times the source's short side: beyond it,
#: upsampling adds pixels but no detail, and the CPU cost grows with the square of the side
MAX_UPSCALE = 4
#: fewer images per class than this is "small data": the early layers stay frozen
SMALL_PER_CLASS = 1000


@dataclass(frozen=True)
class DatasetFacts:
    """What the defaults depend on, measured from the training split."""

    images: int
    classes: int
    per_class: int  # median images per class (per identity for recognition)
    source_side: int  # median short side of the source images, in pixels

    @classmethod
    def measure(cls, samples: Sequence[Sample], targets: Sequence[object], kind: str) -> "DatasetFacts":
        if kind == ML:
            counts = Counter(i for target in targets for i, on in enumerate(target) if on)  # type: ignore[arg-type]
        else:
            counts = Counter(targets)
        step = max(1, len(samples) // SIZE_SAMPLE)
        sides = []
        for sample in samples[::step]:
            try:
                with Image.open(sample.path) as image:
                    sides.append(min(image.size))
            except OSError:
                continue  # unreadable: load_images reports it
        return cls(
            images=len(samples),
            classes=len(counts),
            per_class=int(statistics.median(counts.values())) if counts else 0,
            source_side=int(statistics.median(sides)) if sides else 0,
        )


@dataclass(frozen=True)
class Decision:
    value: Any
    reason: str


def choose(config: Any, facts: DatasetFacts, preprocess: PreprocessConfig, groups: int) -> dict[str, Decision]:
    """A decision for every auto setting (``None`` in ``config``); ``groups``: the network's parameter groups."""
    kind = config.task()
    decisions: dict[str, Decision] = {}

    def decide(name: str, value: Any, reason: str) -> None:
        if getattr(config, name) is None:
            decisions[name] = Decision(value, reason)

    model_side = max(preprocess.input_size)
    small = facts.per_class < SMALL_PER_CLASS

    # input size: no bigger than a few times the source images
    side = model_side
    reason = f"the model's input size (source images are {facts.source_side} px)"
    if facts.source_side and facts.source_side * MAX_UPSCALE < model_side:
        side = max(64, min(model_side, 32 * math.ceil(facts.source_side * MAX_UPSCALE / 32)))
        reason = (f"source images are {facts.source_side} px (median short side): {MAX_UPSCALE}x that, "
                  f"not the model's {model_side} px, which would add pixels but no detail")
    decide("input_size", side, reason)

    # batch: 32 (PaddleX's fine-tuning batch), smaller for tiny sets so an epoch has >= 10 steps
    batch = 32
    if facts.images < 320:
        batch = max(8, 2 ** int(math.log2(max(8, facts.images // 10))))
    if kind == REC:
        k = 4 if facts.per_class >= 8 else 2
        decide("sample_per_id", k, f"{k} images per identity in each P x K batch "
                                    f"({facts.per_class} per identity in the data)")
        k = config.sample_per_id or k
        identities = max(2, min(batch // k, facts.classes))
        batch = identities * k
        decide("batch_size", batch, f"P x K = {identities} identities x {k} images")
    else:
        decide("batch_size", batch, f"{facts.images} training images: {math.ceil(facts.images / batch)} steps an epoch")
        decide("sample_per_id", 4, "not used (P x K batches are for recognition)")

    # frozen layers: with little data the generic early features are kept as they are. On Fashion-MNIST
    # at 300 per class, half the groups frozen scored as well as one (recall@1 0.900 vs 0.904) in a
    # tenth of the time: the early, high-resolution stages are most of a CPU step's backward pass.
    if small and groups > 2:
        frozen = groups // 2
        decide("freeze_groups", frozen, f"{facts.per_class} images per class: the first {frozen} of {groups} "
                                        "parameter groups keep their pretrained weights")
    else:
        decide("freeze_groups", 0, f"{facts.per_class} images per class: every layer trains")

    # learning rate: PaddleX's fine-tuning rates, halved on small data (fewer, noisier steps)
    rate = {CLS: 0.02, ML: 0.02, REC: 0.01}[kind]
    if small:
        rate /= 2
    batch_now = config.batch_size or decisions["batch_size"].value
    rate *= batch_now / 32  # linear scaling with the batch
    decide("learning_rate", round(rate, 6), f"{'small-data ' if small else ''}fine-tuning rate for batch {batch_now}")
    decide("warmup_epochs", 1.0 if not small else 0.5,
           "linear warm-up (capped at a quarter of training), then cosine decay")
    decide("weight_decay", {CLS: 4e-5, ML: 1e-4, REC: 1e-5}[kind], "PaddleX's recipe for the task")

    # augmentation: lighter for small source images and for recognition of fixed-pose products
    if kind == REC:
        decide("crop", "pad_crop", "PP-ShiTuV2_rec's pad + random crop")
        decide("rotate_prob", 0.0 if small else 0.5,
               "no random rotation on small data (PP-ShiTuV2_rec's 0.5 suits large, varied galleries)"
               if small else "PP-ShiTuV2_rec's recipe")
    else:
        decide("crop", "random_resized", "random resized crop")
        decide("rotate_prob", 0.0, "no random rotation")
    decide("crop_scale_min", 0.5 if small else 0.35,
           "random_resized keeps at least half the image on small data" if small else "timm's range")
    final_side = config.input_size or side
    decide("pad", max(2, round(10 * final_side / 224)), f"PP-ShiTuV2_rec's 10 px at 224, scaled to {final_side} px")
    return decisions
