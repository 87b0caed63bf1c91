"""Pipeline configs: PaddleX 3.x YAML (``pipeline_name`` + ``SubModules``) plus dict overrides.

PaddleX 3.0-beta's ``Global`` + ``Pipeline`` form is read too (:mod:`.legacy_config`).
"""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .legacy_config import from_legacy, is_legacy


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def default_config_text(name: str) -> str:
    path = resources.files("viewfinder.pipelines") / "configs" / f"{name}.yaml"
    return path.read_text(encoding="utf-8")


def default_config(name: str) -> dict[str, Any]:
    """The shipped config of pipeline ``name`` (canonical), parsed; a fresh copy each call."""
    return parse_yaml(default_config_text(name), f"built-in {name}.yaml")


def parse_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{origin}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a pipeline config must be a YAML mapping, got {type(data).__name__}")
    return data


def load_config(source: str | Path, override: dict[str, Any] | None = None,
                known: dict[str, str] | None = None) -> dict[str, Any]:
    """Read a pipeline config from a registered name or a YAML path, then apply ``override``.

    ``known`` maps accepted pipeline names (aliases included) to canonical names.
    """
    known = known or {}
    text_source = str(source)
    if text_source in known:
        config = default_config(known[text_source])
    else:
        path = Path(text_source)
        if path.suffix.lower() not in (".yaml", ".yml"):
            names = ", ".join(sorted(known))
            raise ConfigError(f"unknown pipeline {text_source!r}: give a YAML file or one of: {names}")
        if not path.is_file():
            raise ConfigError(f"pipeline config {path} does not exist")
        config = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        if is_legacy(config):  # PaddleX 3.0-beta's Global/Pipeline form, over the shipped YAML
            partial = from_legacy(config, str(path), path.resolve().parent)
            config = _deep_merge(default_config(partial["pipeline_name"]), partial)
        # relative paths inside a config file (ONNX specs, index folders) are relative to it
        config["_config_dir"] = str(path.resolve().parent)
    if override:
        if not isinstance(override, dict):
            raise ConfigError("config overrides must be a dict")
        if is_legacy(override):
            override = from_legacy(override, "config override", Path.cwd(),
                                   pipeline_name=known.get(config.get("pipeline_name")))
        name = override.get("pipeline_name")
        if name is not None and known.get(name, name) != known.get(config.get("pipeline_name"), config.get("pipeline_name")):
            raise ConfigError(f"config override is for pipeline {name!r}, not {config.get('pipeline_name')!r}")
        config = _deep_merge(config, override)
    name = config.get("pipeline_name")
    if name not in known:
        raise ConfigError(f"config has pipeline_name {name!r}; known pipelines: {', '.join(sorted(known))}")
    config["pipeline_name"] = known[name]
    return config


def submodule(config: dict[str, Any], key: str) -> dict[str, Any]:
    """The ``SubModules.<key>`` entry, checked to name a model."""
    modules = config.get("SubModules")
    if not isinstance(modules, dict) or not isinstance(modules.get(key), dict):
        raise ConfigError(f"config needs a SubModules.{key} mapping")
    entry = modules[key]
    if not entry.get("model_name") and not entry.get("model_dir"):
        raise ConfigError(f"SubModules.{key} needs model_name or model_dir")
    allowed = {"module_name", "model_name", "model_dir", "weights", "batch_size", "topk", "threshold",
               "pretrained", "engine", "cpu_threads", "spec", "precision", "calibration"}
    unknown = set(entry) - allowed
    if unknown:
        raise ConfigError(f"SubModules.{key}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return entry
