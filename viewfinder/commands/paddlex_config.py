"""PaddleX module YAMLs (``paddlex/configs/modules/<module>/<MODEL>.yaml``): schema, ``-o`` overrides, defaults.

A module config has the sections ``Global``, ``CheckDataset``, ``Train``, ``Evaluate``,
``Export`` and ``Predict``. Every key PaddleX's YAMLs for our modules carry is known here;
any other key is refused with its name (a typo must not be silently ignored). ``Train`` also
takes any setting of our ``TrainConfig`` (``-o Train.input_size=64``), a viewfinder extension.
:mod:`.paddlex_module` maps the values onto our dataset, training and prediction code.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ..datasets.formats import CLS, ML, REC
from ..errors import ConfigError
from ..training.config import TrainConfig

MODES = ("check_dataset", "train", "evaluate", "export", "predict")
#: where PaddleX publishes ``<MODEL>_pretrained.pdparams``; that URL means "the model's pretrained weights"
PADDLEX_PRETRAINED = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/"
DEMO_IMAGES = "https://paddle-model-ecology.bj.bcebos.com/paddlex/imgs/demo_image/"
DEFAULT_WEIGHT_PATH = "output/best_model/best_model.pdparams"
DEFAULT_MODEL_DIR = "output/best_model/inference"


@dataclass(frozen=True)
class Module:
    """A PaddleX module: its folder name, the dataset type it trains on (None: predict only), doc examples."""

    name: str
    dataset_type: str | None
    example_dataset: str
    example_input: str


#: zoo task -> PaddleX module (the task names are PaddleX's module names)
MODULES: dict[str, Module] = {
    "image_classification": Module("image_classification", CLS, "./dataset/cls_flowers_examples",
                                   DEMO_IMAGES + "general_image_classification_001.jpg"),
    "image_multilabel_classification": Module("image_multilabel_classification", ML, "./dataset/mlcls_nus_examples",
                                              DEMO_IMAGES + "general_image_classification_001.jpg"),
    "image_feature": Module("image_feature", REC, "./dataset/Inshop_examples",
                            DEMO_IMAGES + "general_image_recognition_001.jpg"),
    "mainbody_detection": Module("mainbody_detection", None, "./dataset/mainbody_det_examples",
                                 DEMO_IMAGES + "general_object_detection_002.png"),
}

#: every key PaddleX's module YAMLs for these modules carry (dotted paths)
PADDLEX_KEYS: frozenset[str] = frozenset({
    "Global.model", "Global.mode", "Global.dataset_dir", "Global.device", "Global.output",
    "CheckDataset.convert.enable", "CheckDataset.convert.src_dataset_type",
    "CheckDataset.split.enable", "CheckDataset.split.train_percent", "CheckDataset.split.val_percent",
    "CheckDataset.split.gallery_percent", "CheckDataset.split.query_percent",
    "Train.num_classes", "Train.epochs_iters", "Train.batch_size", "Train.learning_rate",
    "Train.pretrain_weight_path", "Train.warmup_steps", "Train.resume_path", "Train.log_interval",
    "Train.eval_interval", "Train.save_interval",
    "Evaluate.weight_path", "Evaluate.log_interval",
    "Export.weight_path",
    "Predict.batch_size", "Predict.model_dir", "Predict.input", "Predict.kernel_option.run_mode",
})
#: TrainConfig fields that Global or a PaddleX Train key already sets (so they are not extensions)
_SET_ELSEWHERE = {"dataset_dir", "dataset_type", "output", "model", "model_dir", "device", "weights", "pretrained",
                  "epochs", "warmup_epochs", "batch_size", "learning_rate", "eval_interval"}
#: ``Train.<field>`` for the rest of TrainConfig: our settings, reachable from a module YAML
TRAIN_EXTENSIONS: frozenset[str] = frozenset(f"Train.{f.name}" for f in fields(TrainConfig)
                                             if f.name not in _SET_ELSEWHERE)
KNOWN_KEYS = PADDLEX_KEYS | TRAIN_EXTENSIONS
#: sub-trees that may be written as null (PaddleX's ``convert:`` with nothing under it)
_NULLABLE = {"CheckDataset", "CheckDataset.convert", "CheckDataset.split", "Train", "Evaluate", "Export", "Predict",
             "Predict.kernel_option"}


_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (dotted key, value parsed as a YAML scalar, as PaddleX does).

    A value that is not valid YAML (``*.jpg``, which YAML reads as an alias) stays the text given.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"-o expects KEY=VALUE with a dotted key such as Global.mode=train, got {item!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) and _EXPONENT.fullmatch(value):
        value = float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as text; nobody means text there
    return key, value


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``config["A"]["B"]["c"] = value`` for ``A.B.c``, creating the sections on the way."""
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"-o {key}: {'.'.join(parts[:depth + 1])} is {child!r}, not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(config: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return default
        node = node[part]
    return node


def leaf_keys(config: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaf_keys(value, path + ".")
        else:
            yield path, value


def unknown_keys(config: dict[str, Any]) -> list[str]:
    """The keys this schema does not know, each with the nearest known key when one is close."""
    unknown = []
    for key, value in leaf_keys(config):
        if key in KNOWN_KEYS or (key in _NULLABLE and value in (None, {})):
            continue
        close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.75)
        unknown.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return unknown


def check_keys(config: dict[str, Any], source: str) -> None:
    """Refuse every key this schema does not know, naming each (a typo must not be silently ignored)."""
    _refuse({source: unknown_keys(config)})


def _refuse(unknown_by_source: dict[str, list[str]]) -> None:
    found = {source: keys for source, keys in unknown_by_source.items() if keys}
    if not found:
        return
    count = sum(len(keys) for keys in found.values())
    where = "; ".join(f"in {source}: {', '.join(keys)}" for source, keys in found.items())
    raise ConfigError(f"unknown key{'s' if count > 1 else ''} {where}; the known keys are listed in "
                      "docs/training.md (PaddleX module configs)")


def module_of(model_name: str) -> Module:
    from ..models import get_spec

    spec = get_spec(model_name)
    module = MODULES.get(spec.task)
    if module is None:  # every zoo task has a module today; a new task must be added above
        raise ConfigError(f"{model_name} ({spec.task}) has no PaddleX module config in viewfinder")
    return module


def default_config(model_name: str) -> dict[str, Any]:
    """A PaddleX-shaped module config for ``model_name`` with our defaults (null: chosen for the dataset)."""
    module = module_of(model_name)
    official = f"{PADDLEX_PRETRAINED}{model_name}_pretrained.pdparams"
    config: dict[str, Any] = {
        "Global": {"model": model_name, "mode": "check_dataset", "dataset_dir": module.example_dataset,
                   "device": None, "output": "output"},
    }
    if module.dataset_type is not None:
        held_out = ("gallery_percent", "query_percent") if module.dataset_type == REC else ("val_percent",)
        config["CheckDataset"] = {"convert": {"enable": False, "src_dataset_type": None},
                                  "split": {"enable": False, "train_percent": None, **dict.fromkeys(held_out)}}
        config["Train"] = {"num_classes": None, "epochs_iters": TrainConfig.epochs, "batch_size": None,
                           "learning_rate": None, "pretrain_weight_path": official, "warmup_steps": None,
                           "resume_path": None, "log_interval": 1, "eval_interval": 1, "save_interval": 1}
        config["Evaluate"] = {"weight_path": DEFAULT_WEIGHT_PATH, "log_interval": 1}
        config["Export"] = {"weight_path": official}
    config["Predict"] = {"batch_size": 1, "model_dir": DEFAULT_MODEL_DIR if module.dataset_type else None,
                         "input": module.example_input, "kernel_option": {"run_mode": "paddle"}}
    return config


def default_config_text(model_name: str) -> str:
    module = module_of(model_name)
    header = (f"# viewfinder module config for {model_name}: the shape of PaddleX's\n"
              f"# paddlex/configs/modules/{module.name}/{model_name}.yaml, with viewfinder's defaults.\n"
              "# Global.mode: check_dataset, train, evaluate, export or predict. null: chosen for the\n"
              "# dataset when the run starts (device: GPU 0 if there is one, else the CPU).\n"
              "# Run: viewfinder -c THIS.yaml -o Global.mode=train -o Global.dataset_dir=DIR (docs/training.md)\n")
    if module.dataset_type is None:
        header += "# This module is predict-only in viewfinder (no training or evaluation).\n"
    return header + yaml.safe_dump(default_config(model_name), sort_keys=False, allow_unicode=True)


def load_config(path: str, overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The module config at ``path`` with the ``-o`` overrides applied and checked; returns it and notes.

    A missing ``paddlex/configs/modules/<module>/<MODEL>.yaml`` whose file name is a model of
    ours means our built-in config for that model, so the docs' commands run verbatim.
    """
    notes: list[str] = []
    file = Path(path)
    unknown: dict[str, list[str]] = {}
    if file.is_file():
        try:
            config = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read module config {path}: {exc}") from None
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: expected a mapping with Global, Train, ... sections")
        unknown[path] = unknown_keys(config)
    else:
        config = _builtin_for(file)
        notes.append(f"{path} does not exist here; using viewfinder's built-in config for {file.stem} "
                     f"(`viewfinder --get_module_config {file.stem}` writes it)")
    given: dict[str, Any] = {}
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(config, key, value)
        set_dotted(given, key, value)
    unknown["-o"] = unknown_keys(given)
    _refuse(unknown)  # every unknown key at once, file and -o alike
    return config, notes


def _builtin_for(file: Path) -> dict[str, Any]:
    from ..errors import ModelNotFoundError

    if file.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"module config {file} not found")
    try:
        module = module_of(file.stem)
    except ModelNotFoundError:
        raise ConfigError(f"module config {file} not found (and {file.stem!r} is not a model viewfinder knows; "
                          "`viewfinder models` lists them)") from None
    if file.parent.name in MODULES and file.parent.name != module.name:
        raise ConfigError(f"module config {file} not found, and {file.stem} belongs to module {module.name}, "
                          f"not {file.parent.name}")
    return default_config(file.stem)
