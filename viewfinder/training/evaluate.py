"""Evaluation: a network on a dataset's evaluation splits -> PaddleX's metrics.

ClsDataset and MLClsDataset are scored on ``val.txt`` (``val.top1``/``val.top5``,
``MultiLabelMAP``); ShiTuRecDataset embeds ``query.txt`` and ``gallery.txt`` and scores
retrieval (``recall1``, ``recall5``, ``mAP``). :func:`evaluate` writes
``<output>/evaluate_result.json`` = ``{"done_flag": true, "metrics": {...}}`` (on failure
``{"done_flag": false, "err_type", "err_msg"}``).
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..datasets.formats import ML, REC, Dataset, load_dataset, normalize_type
from ..device import resolve_device
from ..errors import TrainingError, ViewfinderError
from ..memory import retained_heap
from ..models.feature import feature_network, l2_normalize
from ..models.loader import load_network
from ..models.preprocess import PreprocessConfig
from .data import EvalBatches, ImageSet, load_images
from .metrics import multilabel_map, retrieval_metrics, topk_accuracy
from .network import resolve_preprocess

log = logging.getLogger(__name__)

RESULT_FILE = "evaluate_result.json"


def eval_splits(dataset_type: str) -> tuple[str, ...]:
    return ("query", "gallery") if dataset_type == REC else ("val",)


class Evaluator:
    """Holds a dataset's evaluation images (decoded once) and scores any forward function on them."""

    def __init__(self, dataset: Dataset, preprocess: PreprocessConfig, batch_size: int = 64,
                 progress: bool = True) -> None:
        self.dataset = dataset
        self.preprocess = preprocess
        self.progress = progress
        min_side = preprocess.min_decode_side
        self.sets: dict[str, ImageSet] = {}
        for split in eval_splits(dataset.dataset_type):
            samples = dataset.splits[split]
            self.sets[split] = load_images(samples, [s.label for s in samples], min_side, f"{split} images",
                                           progress=progress)
            if len(self.sets[split]) == 0:
                raise TrainingError(f"no readable images in {split}.txt; nothing to evaluate")
        self.batches = {split: EvalBatches(images, preprocess, batch_size) for split, images in self.sets.items()}

    @property
    def skipped(self) -> list[str]:
        return [f"{split}: {item}" for split, images in self.sets.items() for item in images.skipped]

    def _outputs(self, forward: Callable[[torch.Tensor], torch.Tensor], split: str, device: torch.device,
                 channels_last: bool) -> np.ndarray:
        chunks = []
        bar = tqdm(self.batches[split], desc=f"eval {split}", unit="batch", leave=False, disable=not self.progress)
        with torch.inference_mode():
            for batch in bar:
                batch = batch.to(device)
                if channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                output = forward(batch)
                chunks.append(output.float().reshape(len(batch), -1).cpu().numpy())
        return np.concatenate(chunks)

    def __call__(self, forward: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 channels_last: bool = False) -> dict[str, float]:
        kind = self.dataset.dataset_type
        if kind == REC:
            query = l2_normalize(self._outputs(forward, "query", device, channels_last))
            gallery = l2_normalize(self._outputs(forward, "gallery", device, channels_last))
            q, g = self.sets["query"], self.sets["gallery"]
            return retrieval_metrics(query, q.targets, gallery, g.targets,
                                     query_paths=[str(s.path) for s in q.samples],
                                     gallery_paths=[str(s.path) for s in g.samples])
        outputs = self._outputs(forward, "val", device, channels_last)
        targets = np.asarray(self.sets["val"].targets)
        if kind == ML:
            return multilabel_map(1.0 / (1.0 + np.exp(-outputs)), targets)
        return topk_accuracy(outputs, targets)


def _forward_for(base_module: nn.Module, spec: Any, dataset_type: str, num_classes: int,
                 dataset: Dataset) -> nn.Module:
    if dataset_type == REC:
        return feature_network(spec, base_module)
    if num_classes != dataset.num_classes:
        raise TrainingError(
            f"{spec.name} has {num_classes} outputs but the dataset has {dataset.num_classes} classes; "
            "evaluate a model fine-tuned on this dataset (--model_dir OUTPUT/best_model)"
        )
    return base_module


def write_result(output: str | Path | None, data: dict[str, Any]) -> None:
    if output is None:
        return
    path = Path(output) / RESULT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")


def evaluate(dataset_dir: str | Path, dataset_type: str, model: str | None = None,
             model_dir: str | Path | None = None, output: str | Path | None = None, device: str | None = None,
             batch_size: int = 64, input_size: int | None = None, resize_short: int | None = None,
             weights: str | Path | None = None, progress: bool = True) -> dict[str, float]:
    """Score a zoo model or a saved model dir on a dataset; returns (and writes) the metrics.

    ``input_size`` / ``resize_short`` override the model's preprocessing (e.g. to score a
    224-px model on upsampled 28-px images at 112 px).
    """
    try:
        kind = normalize_type(dataset_type)
        dataset = load_dataset(dataset_dir, kind)
        base = load_network(model, model_dir, weights=weights)
        preprocess = resolve_preprocess(base.preprocess, input_size, resize_short)
        torch_device = resolve_device(device)
        forward = _forward_for(base.module, base.spec, kind, base.num_classes, dataset).to(torch_device).eval()
        channels_last = torch_device.type == "cpu"
        if channels_last:
            forward = forward.to(memory_format=torch.channels_last)
        started = time.time()
        evaluator = Evaluator(dataset, preprocess, batch_size, progress)
        with retained_heap(torch_device.type == "cpu"):
            metrics = evaluator(forward, torch_device, channels_last)
        log.info("evaluated %s on %s in %.1fs: %s", base.spec.name, dataset_dir, time.time() - started, metrics)
    except ViewfinderError as exc:
        write_result(output, {"done_flag": False, "err_type": type(exc).__name__, "err_msg": str(exc)})
        raise
    result: dict[str, Any] = {"done_flag": True, "metrics": {k: round(float(v), 6) for k, v in metrics.items()}}
    if evaluator.skipped:
        result["skipped_images"] = evaluator.skipped
    write_result(output, result)
    return result["metrics"]
