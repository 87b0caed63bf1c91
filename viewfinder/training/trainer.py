"""The training loop: fine-tune a zoo model on a PaddleX-format dataset.

Recipes (losses in :mod:`.losses`):

* ClsDataset: cross-entropy with label smoothing 0.1;
* MLClsDataset: asymmetric loss (gamma_pos 0, gamma_neg 4, clip 0.05);
* ShiTuRecDataset: CE (label smoothing 0.1) through a BNNeck + FC head, plus
  TripletAngularMarginLoss (margin 0.5, ap 0.8, an 0.4, absolute weight 0.1, normalised
  features) on P x K batches - PaddleX's PP-ShiTuV2_rec recipe.

SGD with momentum 0.9 (or AdamW), linear warmup then cosine decay per step; fp16 autocast
with gradient scaling on CUDA. Outputs under ``output``: ``config.yaml``, ``train.log``,
``train_result.json`` (updated every epoch), ``train_curve.png``, ``epoch_N/checkpoint.pt``
(the latest ``keep_checkpoints``), ``last_checkpoint.pt`` (what ``resume`` continues from),
and ``best_model/`` (a model directory, plus ``inference.onnx`` and PaddleX's ``inference/``
folder with ``inference.yml`` at the end).

Ctrl-C (SIGINT) finishes the current step, saves ``last_checkpoint.pt`` with the position
inside the epoch and raises :class:`~.errors.TrainingInterrupted`; resuming skips the
batches already done (batch orders are a function of seed and epoch).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.utils import ModelEmaV3
from tqdm import tqdm

from ..datasets.charts import line_chart, save_png, stack
from ..datasets.formats import ML, REC, load_dataset
from ..device import resolve_device
from ..errors import TrainingError, TrainingInterrupted
from ..memory import retained_heap
from ..models.loader import load_network
from .batchnorm import fold_batch_norm, recalibrate_batch_norm
from .config import TrainConfig
from .defaults import DatasetFacts, Decision, choose
from .data import ResizedBatches, TrainDataset, load_images, train_transform
from .evaluate import Evaluator
from .export import postprocess_defaults, save_model_dir, try_export_onnx
from .inference_dir import INFERENCE_DIR, INFERENCE_YML, write_inference_dir
from .losses import AsymmetricLoss, TripletAngularMarginLoss
from .metrics import PRIMARY_METRIC
from .network import TrainableModel, build_trainable, freeze_groups, parameter_groups, resolve_preprocess
from .samplers import PKSampler, shuffled_batches

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LAST_CHECKPOINT = "last_checkpoint.pt"
BEST_DIR = "best_model"
RESULT_FILE = "train_result.json"
CURVE_FILE = "train_curve.png"
#: unreadable training images listed by name in train_result.json (the count is complete)
MAX_LISTED_SKIPS = 50
#: augmented training images whose statistics replace ImageNet's before ``batch_norm: folded``
CALIBRATION_IMAGES = 2048


class _TqdmHandler(logging.Handler):
    """Log lines that do not tear progress bars apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never break training
            self.handleError(record)


def _lr_lambda(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _atomic_save(state: dict[str, Any], path: Path) -> None:
    temp = path.with_name(f".{path.name}.part")
    torch.save(state, temp)
    os.replace(temp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.part")
    temp.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
    os.replace(temp, path)


class Trainer:
    """One training run; :meth:`run` does everything and returns the ``train_result.json`` content."""

    def __init__(self, config: TrainConfig, resume: str | Path | bool | None = None, progress: bool = True) -> None:
        self.config = config.resolved()
        self.output = Path(self.config.output)
        self.resume = resume
        self.progress = progress
        self._stop_requested = False
        self._partial: tuple[float, int] = (0.0, 0)  # loss sum and steps of an interrupted epoch
        self._handlers: list[logging.Handler] = []

    # ------------------------------------------------------------------ setup
    def _open_log(self) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        package_log = logging.getLogger("viewfinder.training")
        file_handler = logging.FileHandler(self.output / "train.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        console = _TqdmHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console.setLevel(logging.INFO if self.progress else logging.WARNING)
        self._handlers = [file_handler, console]
        self._previous_level, self._previous_propagate = package_log.level, package_log.propagate
        for handler in self._handlers:
            package_log.addHandler(handler)
        package_log.setLevel(logging.INFO)
        package_log.propagate = False

    def _close_log(self) -> None:
        package_log = logging.getLogger("viewfinder.training")
        for handler in self._handlers:
            package_log.removeHandler(handler)
            handler.close()
        package_log.setLevel(self._previous_level)
        package_log.propagate = self._previous_propagate

    def prepare(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)  # new heads and augmentation; a resumed run restores the saved RNG state
        self.kind = cfg.task()
        self.dataset = load_dataset(cfg.dataset_dir, self.kind)
        train_samples = self.dataset.splits["train"]
        if self.kind == REC:
            identities = sorted({int(s.label) for s in train_samples})
            index_of = {label: index for index, label in enumerate(identities)}
            targets: list[object] = [index_of[int(s.label)] for s in train_samples]
            self.num_classes = len(identities)
            self.labels = [str(label) for label in identities]
        else:
            targets = [s.label for s in train_samples]
            self.num_classes = self.dataset.num_classes
            self.labels = list(self.dataset.label_names or [])
        resuming = bool(self.resume)
        base = load_network(cfg.model, cfg.model_dir, weights=None if resuming else cfg.weights,
                            pretrained=cfg.pretrained and not resuming)
        self.decisions: dict[str, Decision] = choose(cfg, DatasetFacts.measure(train_samples, targets, self.kind),
                                                     base.preprocess, parameter_groups(base.module))
        self.config = cfg = cfg.with_decisions(self.decisions)
        self.preprocess = resolve_preprocess(base.preprocess, cfg.input_size, cfg.resize_short)
        self.model: TrainableModel = build_trainable(base, self.kind, self.num_classes, cfg.head, cfg.head_margin,
                                                       cfg.head_scale)
        frozen = freeze_groups(self.model.network, cfg.freeze_groups)
        if frozen:
            log.info("froze %d tensors (the first %d parameter groups)", frozen, cfg.freeze_groups)
        self.device = resolve_device(cfg.device)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.channels_last = bool(cfg.channels_last)
        self.model.to(self.device, self.channels_last)

        decode_side = max(self.preprocess.min_decode_side, max(self.preprocess.input_size))
        self.train_set = load_images(train_samples, targets, decode_side, "train images", progress=self.progress)
        if len(self.train_set) == 0:
            raise TrainingError("no readable images in train.txt")
        self.evaluator = Evaluator(self.dataset, self.preprocess, cfg.eval_batch_size, self.progress) \
            if cfg.eval_interval else None
        self.train_data = TrainDataset(self.train_set, train_transform(cfg, self.preprocess))
        self.resized_batches: ResizedBatches | None = None
        if ResizedBatches.applies(cfg, self.train_set, self.preprocess):
            self.resized_batches = ResizedBatches(self.train_set, cfg, self.preprocess)
            self.train_set.images = None  # training reads the resized copy; the rare other use decodes again
        if self.kind == REC:
            self.pk = PKSampler(self.train_set.targets, cfg.batch_size, cfg.sample_per_id)
        self.steps_per_epoch = len(self._batches(0))
        # a fractional ``epochs`` (2.4) ends with part of a pass: the first batches of its order
        self.total_steps = max(1, round(cfg.epochs * self.steps_per_epoch))
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        if cfg.batch_norm == "folded":
            self._fold_batch_norm(calibrate=not resuming)

        self.ce = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.asl = AsymmetricLoss(cfg.asl_gamma_pos, cfg.asl_gamma_neg, cfg.asl_clip)
        self.triplet = TripletAngularMarginLoss(cfg.triplet_margin, True, True, cfg.triplet_absolute_weight,
                                                cfg.triplet_ap_value, cfg.triplet_an_value)
        self.optimizer = self._optimizer()
        warmup = int(min(cfg.warmup_epochs, cfg.epochs / 4) * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(self.total_steps, warmup))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.averaged = nn.ModuleList(self.model.modules())  # what the EMA follows: network (+ head)
        self.ema = ModelEmaV3(self.averaged, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay else None
        self.metric = PRIMARY_METRIC[self.kind]
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"score": None, "epoch": None, "metrics": {}}
        self.start_epoch, self.start_step = 0, 0
        self.onnx_record: dict[str, Any] | None = None

    def _fold_batch_norm(self, calibrate: bool) -> None:
        """``batch_norm: folded``: statistics from augmented training images, then folded (a resumed run's
        checkpoint holds the folded weights already, so it skips the calibration)."""
        network = self.model.network
        if calibrate:
            batches = self._batches(0)[:max(1, CALIBRATION_IMAGES // self.config.batch_size)]
            images = (self._to_device(x) for x, _ in self._loader(batches))
            seen = recalibrate_batch_norm(network, images)
            log.info("batch_norm folded: BatchNorm statistics recalibrated on %d training images", seen)
        height, width = self.preprocess.input_size
        example = self._to_device(torch.zeros(2, 3, height, width))
        folded = fold_batch_norm(network, example)
        log.info("batch_norm folded: %d BatchNorm layers folded into their convolutions", folded)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        decay, no_decay = [], []
        for parameter in self.model.parameters():
            # BatchNorm weights and biases are not regularised (standard fine-tuning practice)
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.learning_rate)
        return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=0.9)

    def _epoch_steps(self, epoch: int) -> int:
        """Batches in pass ``epoch``: all of them but in the part-pass a fractional ``epochs`` ends with."""
        return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

    def _batches(self, epoch: int) -> list[list[int]]:
        if self.kind == REC:
            return self.pk.batches(self.config.seed, epoch)
        return shuffled_batches(len(self.train_set), self.config.batch_size, self.config.seed, epoch)

    # ------------------------------------------------------------------ checkpoints
    def _state(self, epoch: int, step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model_name": self.model.base.spec.name,
            "dataset_type": self.kind,
            "num_classes": self.num_classes,
            "epoch": epoch,
            "step": step,
            "network": self.model.network.state_dict(),
            "head": self.model.head.state_dict() if self.model.head is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "history": self.history,
            "best": self.best,
            "partial_loss": list(self._partial) if step else [0.0, 0],
            "torch_rng": torch.get_rng_state(),
        }

    def _save_checkpoint(self, epoch: int, step: int) -> Path:
        path = self.output / LAST_CHECKPOINT
        _atomic_save(self._state(epoch, step), path)
        return path

    def _keep_epoch_checkpoint(self, epoch_done: int) -> None:
        folder = self.output / f"epoch_{epoch_done}"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(self.output / LAST_CHECKPOINT, folder / "checkpoint.pt")
        for old in self.output.glob("epoch_*"):
            suffix = old.name.split("_", 1)[1]
            if suffix.isdigit() and int(suffix) <= epoch_done - self.config.keep_checkpoints:
                shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self) -> None:
        path = self.output / LAST_CHECKPOINT if self.resume is True else Path(str(self.resume))
        if not path.is_file():
            raise TrainingError(f"cannot resume: no checkpoint at {path} (it is written after every epoch)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign file
            raise TrainingError(f"cannot resume from {path}: not a readable checkpoint ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"cannot resume from {path}: not a viewfinder training checkpoint")
        expected = (self.model.base.spec.name, self.kind, self.num_classes)
        found = (state["model_name"], state["dataset_type"], state["num_classes"])
        if found != expected:
            raise TrainingError(f"cannot resume from {path}: it trains {found[0]} on a {found[1]} with {found[2]} "
                                f"classes, this run {expected[0]} on a {expected[1]} with {expected[2]}")
        self.model.network.load_state_dict(state["network"])
        if self.model.head is not None and state["head"] is not None:
            self.model.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:  # a checkpoint from a run without EMA restarts the average here
            self.ema.module.load_state_dict(state.get("ema") or self.averaged.state_dict())
        self.history, self.best = list(state["history"]), dict(state["best"])
        torch.set_rng_state(state["torch_rng"])
        self.start_epoch, self.start_step = int(state["epoch"]), int(state["step"])
        self._partial = (float(state["partial_loss"][0]), int(state["partial_loss"][1]))
        if self.start_epoch >= self.num_epochs:
            raise TrainingError(f"{path} has already finished {self.start_epoch} epoch(s); pass more --epochs to "
                                f"train further (a fractional run's last part-pass counts as one)")
        epoch_steps = self._epoch_steps(self.start_epoch)
        if self.start_step >= epoch_steps:  # the epoch's batches were all done; its end was not
            self.start_step = epoch_steps
        log.info("resuming from %s at epoch %d, step %d/%d", path, self.start_epoch + 1, self.start_step, epoch_steps)

    # ------------------------------------------------------------------ one step / one epoch
    def _loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.kind == REC:
            embedding = self.model.embed(images)
            logits = self.model.head(embedding.float(), targets)
            return self.ce(logits, targets) + self.config.triplet_weight * self.triplet(embedding, targets)
        logits = self.model.network(images).float()
        if self.kind == ML:
            return self.asl(logits, targets)
        return self.ce(logits, targets)

    def train_step(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        images = self._to_device(images)
        targets = targets.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self._loss(images, targets)
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()}; lower the learning rate "
                                f"(now {self.scheduler.get_last_lr()[0]:.3g})")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.averaged, step=self.scheduler.last_epoch)  # last_epoch counts optimiser steps
        return float(loss.detach())

    def _loader(self, batches: list[list[int]]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        if self.resized_batches is not None:
            return self.resized_batches(batches)
        return torch.utils.data.DataLoader(self.train_data, batch_sampler=batches, num_workers=self.config.num_workers,
                                           pin_memory=self.device.type == "cuda")

    def _run_epoch(self, epoch: int, start_step: int) -> float:
        self.model.train(True)
        epoch_steps = self._epoch_steps(epoch)
        batches = self._batches(epoch)[start_step:epoch_steps]
        total_loss, count = self._partial if start_step else (0.0, 0)
        bar = tqdm(self._loader(batches), total=epoch_steps, initial=start_step,
                   desc=f"epoch {epoch + 1}/{self.num_epochs}", unit="batch", disable=not self.progress,
                   dynamic_ncols=True)
        step = start_step
        for images, targets in bar:
            loss = self.train_step(images, targets)
            step += 1
            total_loss += loss
            count += 1
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.3g}", **self._last_metric())
            if self._stop_requested:
                bar.close()
                self._partial = (total_loss, count)
                path = self._save_checkpoint(epoch, step)
                raise TrainingInterrupted(
                    f"training interrupted at epoch {epoch + 1}, step {step}/{epoch_steps}; checkpoint "
                    f"saved to {path}; continue with the same command plus --resume", str(path))
        bar.close()
        return total_loss / max(1, count)

    @contextmanager
    def _averaged_weights(self) -> Iterator[None]:
        """With ``ema_decay``: the model holds the averaged weights inside the block (evaluation, export)."""
        if self.ema is None:
            yield
            return
        live = {name: value.clone() for name, value in self.averaged.state_dict().items()}
        self.averaged.load_state_dict(self.ema.module.state_dict())
        try:
            yield
        finally:
            self.averaged.load_state_dict(live)

    def _evaluate(self) -> dict[str, float]:
        self.model.train(False)
        forward = self.model.embed if self.kind == REC else self.model.network
        with self._averaged_weights():
            return self.evaluator(forward, self.device, self.channels_last)

    # ------------------------------------------------------------------ outputs
    def _export_best(self) -> None:
        with self._averaged_weights():
            network = self.model.export_network()
            save_model_dir(network, self.model.export_spec(), self.output / BEST_DIR, self.preprocess,
                           self.labels or None, self.model.num_classes,
                           postprocess_defaults(self.kind, self.num_classes))

    def _draw_curve(self) -> None:
        trained = [h for h in self.history if h["loss"] is not None]  # epoch 0 has metrics but no loss
        panels = [line_chart({"train loss": ([h["epoch"] for h in trained], [h["loss"] for h in trained])},
                             "training loss", "epoch")]
        evaluated = [h for h in self.history if h.get("metrics")]
        if evaluated:
            names = list(evaluated[-1]["metrics"])
            series = {n: ([h["epoch"] for h in evaluated], [h["metrics"].get(n, float("nan")) for h in evaluated])
                      for n in names}
            panels.append(line_chart(series, "validation metrics", "epoch"))
        save_png(stack(panels), self.output / CURVE_FILE)

    def _result(self, done: bool, started: float) -> dict[str, Any]:
        skipped = self.train_set.skipped + (self.evaluator.skipped if self.evaluator else [])
        last = self.history[-1]["epoch"] if self.history else 0
        best_dir = self.output / BEST_DIR
        result: dict[str, Any] = {
            "model_name": self.model.base.spec.name,
            "done_flag": done,
            "dataset_type": self.kind,
            "config": "config.yaml",
            "train_log": "train.log",
            "curve": CURVE_FILE,
            "primary_metric": self.metric,
            "epochs_done": last,
            "models": {
                "last_1": {"epoch": last, "score": self.history[-1]["metrics"].get(self.metric) if self.history else None,
                           "checkpoint": f"epoch_{last}/checkpoint.pt" if last else None},
                "best": {
                    "epoch": self.best["epoch"],
                    "score": self.best["score"],
                    "metrics": self.best["metrics"],
                    "model_dir": BEST_DIR,
                    "weights": f"{BEST_DIR}/model.safetensors",
                    "config": f"{BEST_DIR}/config.yaml",
                    "onnx": f"{BEST_DIR}/inference.onnx" if (best_dir / "inference.onnx").is_file() else None,
                    # PaddleX's layout: what Predict.model_dir=output/best_model/inference loads
                    "inference_dir": f"{BEST_DIR}/{INFERENCE_DIR}" if done else None,
                    "inference_config": f"{BEST_DIR}/{INFERENCE_DIR}/{INFERENCE_YML}" if done else None,
                },
            },
            "history": self.history,
            "start": self._start_record(),
            "defaults": {name: {"value": d.value, "reason": d.reason} for name, d in self.decisions.items()},
            "skipped_images": {"count": len(skipped), "examples": skipped[:MAX_LISTED_SKIPS]},
            "train_samples": len(self.train_set),
            "num_classes": self.num_classes,
            "wall_time_s": round(time.time() - started, 1),
        }
        if self.onnx_record is not None:
            result["onnx_export"] = self.onnx_record
        return result

    def _start_record(self) -> dict[str, Any]:
        """Epoch 0's score and whether training beat it (None before any evaluation after training)."""
        start = next((h for h in self.history if h["epoch"] == 0), None)
        if start is None:
            return {"score": None, "improved": None}
        later = [h["metrics"][self.metric] for h in self.history if h["epoch"] > 0 and h.get("metrics")]
        return {"score": start["metrics"][self.metric], "improved": (self.best["epoch"] or 0) > 0 if later else None}

    def _log_settings(self) -> None:
        """Each setting chosen for this dataset, with its reason (the values are in config.yaml)."""
        for name, decision in self.decisions.items():
            log.info("default %s = %s: %s", name, decision.value, decision.reason)

    # ------------------------------------------------------------------ main
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._stop_requested:  # a second Ctrl-C: stop now, the last saved checkpoint stays valid
            raise KeyboardInterrupt
        self._stop_requested = True
        log.warning("interrupt received: saving a checkpoint after this step (Ctrl-C again to abort at once)")

    def _last_metric(self) -> dict[str, str]:
        """The primary metric of the last evaluation, for the progress bar."""
        evaluated = [h for h in self.history if h.get("metrics")]
        return {self.metric: f"{evaluated[-1]['metrics'][self.metric]:.4f}"} if evaluated else {}

    def _evaluate_epoch(self, epoch: int) -> dict[str, float]:
        """Evaluate the model as ``epoch`` (0: the starting model, before any step), log it, and keep it
        as best_model when its primary metric beats every earlier one; returns the rounded metrics."""
        metrics = self._evaluate()
        rounded = {k: round(float(v), 6) for k, v in metrics.items()}
        log.info("[Eval][Epoch %d][Avg] %s%s", epoch, ", ".join(f"{k}: {v:.5f}" for k, v in metrics.items()),
                 " (the starting model)" if epoch == 0 else "")
        score = metrics[self.metric]
        if self.best["score"] is None or score > self.best["score"]:
            self.best = {"score": float(score), "epoch": epoch, "metrics": rounded}
            self._export_best()
            log.info("new best %s %.5f: saved %s", self.metric, score, self.output / BEST_DIR)
        return rounded

    def _evaluate_start(self) -> None:
        """Epoch 0, so best_model is never worse than the model training started from."""
        started = time.time()
        metrics = self._evaluate_epoch(0)
        self.history.append({"epoch": 0, "steps": 0, "loss": None, "lr": 0.0, "metrics": metrics,
                             "time_s": round(time.time() - started, 1)})

    def _run_epochs(self, started: float) -> None:
        cfg = self.config
        if cfg.eval_interval and cfg.evaluate_start and self.start_epoch == 0 and self.start_step == 0 \
                and not self.history:
            self._evaluate_start()
        for epoch in range(self.start_epoch, self.num_epochs):
            epoch_started = time.time()
            step = self.start_step if epoch == self.start_epoch else 0
            loss = self._run_epoch(epoch, step)
            record: dict[str, Any] = {"epoch": epoch + 1, "steps": self._epoch_steps(epoch), "loss": round(loss, 6),
                                      "lr": self.scheduler.get_last_lr()[0], "metrics": {}}
            log.info("[Train][Epoch %d/%d] loss: %.5f, lr: %.5g, time: %.1fs", epoch + 1, self.num_epochs, loss,
                     record["lr"], time.time() - epoch_started)
            if cfg.eval_interval and ((epoch + 1) % cfg.eval_interval == 0 or epoch + 1 == self.num_epochs):
                record["metrics"] = self._evaluate_epoch(epoch + 1)
            record["time_s"] = round(time.time() - epoch_started, 1)
            self.history.append(record)
            self._save_checkpoint(epoch + 1, 0)
            self._keep_epoch_checkpoint(epoch + 1)
            self._draw_curve()
            _write_json(self.output / RESULT_FILE, self._result(False, started))
            if self._stop_requested:
                path = self.output / LAST_CHECKPOINT
                raise TrainingInterrupted(f"training interrupted after epoch {epoch + 1}; checkpoint saved to "
                                          f"{path}; continue with the same command plus --resume", str(path))

    def run(self) -> dict[str, Any]:
        started = time.time()
        self._open_log()
        previous_handler = None
        try:
            self.prepare()
            if self.resume:
                self._load_checkpoint()
            elif (self.output / LAST_CHECKPOINT).exists():
                log.warning("%s already holds a checkpoint; starting over (pass --resume to continue it)",
                            self.output)
            self.config.save(self.output / "config.yaml")
            cfg = self.config
            self._log_settings()
            log.info("training %s on %s (%s): %d images, %d classes, %d steps/epoch, %g epochs (%d steps), device %s",
                     self.model.base.spec.name, cfg.dataset_dir, self.kind, len(self.train_set), self.num_classes,
                     self.steps_per_epoch, cfg.epochs, self.total_steps, self.device)
            if self.train_set.skipped:
                log.warning("skipped %d unreadable training image(s): %s", len(self.train_set.skipped),
                            "; ".join(self.train_set.skipped[:3]))
            if threading.current_thread() is threading.main_thread():
                previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
            with retained_heap(cfg.retain_heap and self.device.type == "cpu"):
                self._run_epochs(started)
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
                previous_handler = None
            if not cfg.eval_interval:  # no validation: the last epoch is the model
                self.best = {"score": None, "epoch": self.num_epochs, "metrics": {}}
                self._export_best()
            if cfg.export_onnx:
                self.onnx_record = try_export_onnx(self.output / BEST_DIR)
            write_inference_dir(self.output / BEST_DIR)  # after the ONNX file, which it copies too
            result = self._result(True, started)
            _write_json(self.output / RESULT_FILE, result)
            if result["start"]["improved"] is False:
                log.warning("training did not beat the starting model: %s %.5f before training, at best %.5f after; "
                            "best_model is the starting model (try a lower learning rate, more epochs or more data)",
                            self.metric, result["start"]["score"],
                            max(h["metrics"][self.metric] for h in self.history if h["epoch"] > 0 and h["metrics"]))
            log.info("done in %.1fs; best %s %s at epoch %s -> %s", result["wall_time_s"], self.metric,
                     "(not evaluated)" if self.best["score"] is None else f"{self.best['score']:.5f}",
                     self.best["epoch"], self.output / BEST_DIR)
            return result
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            self._close_log()


def train(config: TrainConfig, resume: str | Path | bool | None = None, progress: bool = True) -> dict[str, Any]:
    """Fine-tune as ``config`` says; returns what ``train_result.json`` holds.

    ``resume``: True continues ``<output>/last_checkpoint.pt``, a path continues that file.
    """
    return Trainer(config, resume, progress).run()
