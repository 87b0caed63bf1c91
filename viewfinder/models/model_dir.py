"""Saved model directories: ``model.safetensors`` + ``config.yaml``.

``config.yaml`` holds what inference needs besides the weights: the registry name of
the architecture, task, number of classes, preprocessing, labels and postprocessing
defaults. ``create_model(model_dir=...)`` and the pipelines' ``model_dir`` load it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, WeightsNotFoundError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def read_model_dir(model_dir: str | Path) -> dict[str, Any]:
    folder = Path(model_dir)
    if not folder.is_dir():
        raise WeightsNotFoundError(f"model_dir {folder} does not exist or is not a folder")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        if (folder / "inference.pdiparams").is_file():
            raise ConfigError(
                f"{folder} looks like a PaddleX inference-model folder but has no inference.yml (it names the "
                "model and its preprocessing); copy the folder whole, or pass the weights: "
                "create_model(NAME, weights='model.pdparams')"
            )
        raise ConfigError(f"{folder}: missing {CONFIG_FILE} (expected a folder written by viewfinder export)")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: invalid YAML ({exc})") from None
    if not isinstance(config, dict) or "model_name" not in config:
        raise ConfigError(f"{config_path}: expected a mapping with at least 'model_name'")
    if not (folder / WEIGHTS_FILE).is_file():
        raise WeightsNotFoundError(f"{folder}: missing {WEIGHTS_FILE}")
    config["weights_path"] = str(folder / WEIGHTS_FILE)
    return config


def write_model_dir(predictor: Any, model_dir: str | Path, module: Any = None) -> Path:
    """Save a predictor (or a bare module with the predictor's metadata) as a model directory."""
    from safetensors.torch import save_file

    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    network = module if module is not None else predictor.engine.module
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    spec = predictor.spec
    config = {
        "format_version": FORMAT_VERSION,
        "model_name": spec.name,
        "task": spec.task,
        "num_classes": int(predictor.num_classes),
        "preprocess": predictor.preprocess.config.to_dict(),
        "labels": list(predictor.labels) if predictor.labels else None,
        "postprocess": {k: v for k, v in predictor.params.items() if isinstance(v, (int, float, str, list))},
    }
    if getattr(network, "reparameterized", False):  # fused branches: the loader folds the fresh network first
        config["reparameterized"] = True
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder
