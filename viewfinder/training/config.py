"""Training settings: one flat dataclass, grouped into PaddleX-like sections in ``config.yaml``.

Settings left as ``None`` are chosen for the dataset and model when the run starts
(:mod:`.defaults`: input size, batch, P x K, frozen layers, learning rate, warm-up,
augmentation); ``config.yaml`` in the output folder records the values the run used and can
be passed back (``viewfinder train --config``) to repeat it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..datasets.formats import CLS, REC, normalize_type
from ..errors import TrainingError


def _f(section: str, default: Any = None, help: str = "") -> Any:
    return field(default=default, metadata={"section": section, "help": help})


@dataclass
class TrainConfig:
    # --- Global ------------------------------------------------------------------------
    dataset_dir: str = _f("Global", "", "dataset root")
    dataset_type: str = _f("Global", CLS, "ClsDataset, MLClsDataset or ShiTuRecDataset")
    output: str = _f("Global", "output", "output folder")
    model: str | None = _f("Global", None, "zoo model name to start from")
    model_dir: str | None = _f("Global", None, "saved model dir to start from (instead of a name)")
    weights: str | None = _f("Global", None, "weight file to start from (.safetensors, .pth, .pdparams) or a "
                                             "source (paddlex, timm, torchvision); default: the model's "
                                             "pretrained weights")
    device: str | None = _f("Global", None, "cpu, gpu, gpu:N (default: GPU 0 if available)")
    seed: int = _f("Global", 0, "seed for sampling order, augmentation and head initialisation")
    # --- Train -------------------------------------------------------------------------
    epochs: float = _f("Train", 10, "passes over the training images; a fraction ends with part of a pass "
                                    "(2.4: two passes and the first 40 % of a third's batches)")
    batch_size: int | None = _f("Train", None, "images per step (default: chosen for the dataset)")
    learning_rate: float | None = _f("Train", None, "peak learning rate (after warmup; default: chosen for the "
                                                    "dataset, task and batch)")
    optimizer: str = _f("Train", "momentum", "momentum (SGD, 0.9) or adamw")
    weight_decay: float | None = _f("Train", None)
    warmup_epochs: float | None = _f("Train", None, "linear warmup, capped at a quarter of training; then cosine "
                                                    "decay")
    ema_decay: float = _f("Train", 0.0, "evaluate and export an exponential moving average of the weights "
                                        "(PaddleClas EMA; e.g. 0.999; 0 = off)")
    pretrained: bool = _f("Train", True, "start from the model's pretrained weights (False: random init)")
    input_size: int | None = _f("Train", None, "network input side (default: the model's crop size, or 4x "
                                               "the source images' short side when they are small)")
    resize_short: int | None = _f("Train", None, "evaluation resize of the short side (default: input_size)")
    freeze_groups: int | None = _f("Train", None, "freeze the stem (1) and the next N-1 stages of a timm network; "
                                                  "-1: every group but the head (default: chosen for the dataset)")
    amp: bool = _f("Train", True, "fp16 autocast + gradient scaling on CUDA (ignored on CPU)")
    batch_norm: str = _f("Train", "batch", "batch: BatchNorm trains as usual; folded: its statistics are "
                                            "recalibrated on the training images and folded into the convolutions "
                                            "(faster steps on CPU; see viewfinder.training.batchnorm)")
    channels_last: bool = _f("Train", True, "channels-last memory format (faster convolutions on CPU and GPU)")
    num_workers: int = _f("Train", 0, "data-loading worker processes")
    retain_heap: bool = _f("Train", True, "CPU: glibc keeps freed memory for reuse while training instead of "
                                          "mapping big tensors anew every step (viewfinder.memory)")
    eval_interval: int = _f("Train", 1, "evaluate every N epochs and after the last (0: never; the last epoch "
                                         "becomes best_model)")
    eval_batch_size: int = _f("Train", 64)
    evaluate_start: bool = _f("Train", True, "evaluate the starting model as epoch 0, so best_model is never worse "
                                            "than it (false: the best trained epoch)")
    keep_checkpoints: int = _f("Train", 2, "epoch_N/ checkpoint folders kept (the latest N)")
    export_onnx: bool = _f("Train", True, "also write best_model/inference.onnx at the end")
    # --- Loss --------------------------------------------------------------------------
    label_smoothing: float = _f("Loss", 0.1, "CE label smoothing (classification, recognition)")
    asl_gamma_pos: float = _f("Loss", 0.0, "asymmetric loss focusing for positives")
    asl_gamma_neg: float = _f("Loss", 4.0, "asymmetric loss focusing for negatives")
    asl_clip: float = _f("Loss", 0.05, "asymmetric loss probability margin for negatives")
    triplet_margin: float = _f("Loss", 0.5)
    triplet_ap_value: float = _f("Loss", 0.8)
    triplet_an_value: float = _f("Loss", 0.4)
    triplet_absolute_weight: float = _f("Loss", 0.1)
    triplet_weight: float = _f("Loss", 1.0, "recognition: the triplet loss's weight next to CE (PaddleClas `weight`)")
    head: str = _f("Loss", "fc", "recognition head: fc (PP-ShiTuV2_rec), arcmargin or cosmargin (PaddleClas)")
    head_margin: float = _f("Loss", 0.2, "arcmargin: angle added (radians); cosmargin: cosine subtracted")
    head_scale: float = _f("Loss", 30.0, "arcmargin / cosmargin: logit scale")
    sample_per_id: int | None = _f("Loss", None, "recognition: K images per identity in each P x K batch")
    # --- Augment -----------------------------------------------------------------------
    crop: str | None = _f("Augment", None, "random_resized, pad_crop or none")
    crop_scale_min: float | None = _f("Augment", None, "random_resized: smallest crop area fraction")
    pad: int | None = _f("Augment", None, "pad_crop: pixels of padding before the random crop")
    hflip: bool = _f("Augment", True)
    rotate_prob: float | None = _f("Augment", None, "probability of a random rotation")
    rotate_degrees: float = _f("Augment", 90.0)
    random_erasing: float = _f("Augment", 0.0, "probability of erasing a random rectangle")
    color_jitter: float = _f("Augment", 0.0, "brightness/contrast/saturation jitter strength")

    def task(self) -> str:
        return normalize_type(self.dataset_type)

    def resolved(self) -> "TrainConfig":
        """A checked copy; the settings left as ``None`` stay so until :meth:`with_decisions` fills them."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["dataset_type"] = self.task()
        if isinstance(values["epochs"], float) and values["epochs"].is_integer():
            values["epochs"] = int(values["epochs"])  # 2.0 from the CLI is 2 in config.yaml and the logs
        config = TrainConfig(**values)
        config.validate()
        return config

    def with_decisions(self, decisions: dict[str, Any]) -> "TrainConfig":
        """A copy with the chosen values (``name -> Decision``) in the unset settings, checked again."""
        config = dataclasses.replace(self, **{name: d.value for name, d in decisions.items()
                                              if getattr(self, name) is None})
        unset = sorted(name for name in AUTO_SETTINGS if getattr(config, name) is None)
        if unset:
            raise TrainingError(f"no value for {', '.join(unset)}")
        config.validate()
        return config

    def validate(self) -> None:
        if not self.model and not self.model_dir:
            raise TrainingError("training needs a model name (--model) or a model dir (--model_dir) to start from")
        epochs = self.epochs
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not 0 < epochs < float("inf"):
            raise TrainingError(f"epochs must be a number > 0, got {epochs!r}")
        positive_ints = ("batch_size", "eval_batch_size", "sample_per_id")
        for name in positive_ints:
            value = getattr(self, name)
            if value is None and name in AUTO_SETTINGS:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainingError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.eval_interval, bool) or not isinstance(self.eval_interval, int) or self.eval_interval < 0:
            raise TrainingError(f"eval_interval must be an integer >= 0, got {self.eval_interval!r}")
        if self.keep_checkpoints < 1:
            raise TrainingError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.optimizer not in ("momentum", "adamw"):
            raise TrainingError(f"optimizer must be 'momentum' or 'adamw', got {self.optimizer!r}")
        if self.batch_norm not in BATCH_NORM_MODES:
            raise TrainingError(f"batch_norm must be one of {', '.join(BATCH_NORM_MODES)}, got {self.batch_norm!r}")
        if self.crop not in (None, "random_resized", "pad_crop", "none"):
            raise TrainingError(f"crop must be random_resized, pad_crop or none, got {self.crop!r}")
        if self.input_size is not None and self.input_size < 16:
            raise TrainingError(f"input_size must be at least 16 pixels, got {self.input_size}")
        if self.head not in HEAD_KINDS:
            raise TrainingError(f"head must be one of {', '.join(HEAD_KINDS)}, got {self.head!r}")
        if self.head_margin < 0 or self.head_scale <= 0:
            raise TrainingError(f"head_margin must be >= 0 and head_scale > 0, "
                                f"got {self.head_margin}, {self.head_scale}")
        if isinstance(self.ema_decay, bool) or not 0 <= self.ema_decay < 1:
            raise TrainingError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.freeze_groups is not None and self.freeze_groups < -1:
            raise TrainingError(f"freeze_groups must be >= 0, or -1 (every group but the head), got {self.freeze_groups}")
        if self.num_workers < 0:
            raise TrainingError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.crop_scale_min is not None and not 0 < self.crop_scale_min <= 1:
            raise TrainingError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        if self.pad is not None and self.pad < 0:
            raise TrainingError(f"pad must be >= 0, got {self.pad}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise TrainingError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.batch_size is None or self.sample_per_id is None:
            return  # the P x K checks run once both are chosen
        if self.task() == REC and self.batch_size % self.sample_per_id:
            raise TrainingError(f"recognition batches are P x K: batch_size {self.batch_size} must be a multiple "
                                f"of sample_per_id {self.sample_per_id}")
        if self.task() == REC and self.batch_size // self.sample_per_id < 2:
            raise TrainingError("recognition batches need at least 2 identities (batch_size >= 2 x sample_per_id)")

    # --- YAML ----------------------------------------------------------------------------
    def to_sections(self) -> dict[str, dict[str, Any]]:
        sections: dict[str, dict[str, Any]] = {}
        for f in fields(self):
            sections.setdefault(f.metadata["section"], {})[f.name] = getattr(self, f.name)
        return sections

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_sections(), sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """A config from a ``config.yaml`` (sections or flat); ``overrides`` that are not None win."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TrainingError(f"cannot read training config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise TrainingError(f"{path}: expected a mapping")
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        flat.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(flat)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        types = {f.name: str(f.type) for f in fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise TrainingError(f"unknown training settings {unknown}; known: {sorted(types)}")
        for name, value in values.items():
            if not _type_ok(value, types[name]):
                raise TrainingError(f"{name} must be {types[name].replace(' | None', ' or null')}, got {value!r}")
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


#: recognition heads: PP-ShiTuV2's plain FC, and PaddleClas's margin heads (ArcMargin, CosMargin),
#: which score the cosine between the embedding and each identity's weight
HEAD_KINDS = ("fc", "arcmargin", "cosmargin")

#: BatchNorm during training: ``batch`` (train-mode statistics) or ``folded`` (see :mod:`.batchnorm`)
BATCH_NORM_MODES = ("batch", "folded")

#: the settings chosen for the dataset and model when left unset (:mod:`.defaults`)
AUTO_SETTINGS = ("input_size", "batch_size", "sample_per_id", "freeze_groups", "learning_rate", "warmup_epochs",
                 "weight_decay", "crop", "rotate_prob", "crop_scale_min", "pad")


def _type_ok(value: Any, annotation: str) -> bool:
    """Does a YAML/CLI value fit a field annotated ``int``, ``float | None``, ``str``, ``bool`` ...?"""
    allowed = {part.strip() for part in annotation.split("|")}
    if value is None:
        return "None" in allowed
    if isinstance(value, bool):
        return "bool" in allowed
    if isinstance(value, int):
        return bool({"int", "float"} & allowed)
    if isinstance(value, float):
        return "float" in allowed
    return isinstance(value, str) and "str" in allowed
