"""PaddleX 3.0-beta's pipeline YAMLs (``Global`` + ``Pipeline``) mapped onto the 3.x form.

PaddleX 3.0-beta shipped, and its docs' "Model Application" sections show, configs such as::

    Global:
      pipeline_name: image_classification
      input: https://.../general_image_classification_001.jpg
    Pipeline:
      model: PP-LCNet_x0_5
      batch_size: 1
      device: "gpu:0"

    Global: {pipeline_name: PP-ShiTuV2, input: ./drink_dataset_v2.0/test_images/100.jpeg}
    Pipeline:
      det_model: PP-ShiTuV2_det
      rec_model: PP-ShiTuV2_rec
      det_batch_size: 1
      rec_batch_size: 1
      device: gpu
      index_dir: ./drink_dataset_v2.0/index/
      score_thres: 0.5
      return_k: 5

:func:`from_legacy` rewrites one into our ``pipeline_name`` + ``SubModules`` form, holding
only what the file says (the caller lays it over the shipped YAML). ``Pipeline.device`` and
PaddleX's runtime options (``use_hpip`` / ``enable_hpi``, ``hpi_params`` -> ``hpi_config``,
``pp_option``) become top-level keys, which :class:`~viewfinder.pipelines.base.BasePipeline`
honours or refuses. A key this module does not know is refused with its name: a
misspelt ``batch_sise`` must not silently fall back to a default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError

#: names PaddleX 3.0-beta configs carry -> our canonical pipeline names
LEGACY_NAMES: dict[str, str] = {
    "image_classification": "image_classification",
    "multi_label_image_classification": "image_multilabel_classification",
    "image_multilabel_classification": "image_multilabel_classification",
    "PP-ShiTuV2": "PP-ShiTuV2",
    "PP-ShiTu": "PP-ShiTuV2",  # the name of PaddleX's first PP-ShiTu pipeline config
}
# NOTE: PaddleX's own image_classification.yaml has a top-level NOTE block listing models.
TOP_LEVEL_KEYS = ("Global", "Pipeline", "Serving", "NOTE")
GLOBAL_KEYS = ("pipeline_name", "input")
RUNTIME_KEYS = ("device", "use_hpip", "enable_hpi", "hpi_params", "hpi_config", "pp_option")
PIPELINE_KEYS: dict[str, tuple[str, ...]] = {
    "image_classification": ("model", "batch_size", "topk", *RUNTIME_KEYS),
    "image_multilabel_classification": ("model", "batch_size", "threshold", *RUNTIME_KEYS),
    "PP-ShiTuV2": ("det_model", "rec_model", "det_batch_size", "rec_batch_size", "index", "index_dir",
                   "score_thres", "rec_threshold", "return_k", "rec_topk", "det_threshold", *RUNTIME_KEYS),
}
#: classification pipelines: their one SubModules entry and its module_name
_SINGLE_MODULE = {
    "image_classification": ("ImageClassification", "image_classification"),
    "image_multilabel_classification": ("ImageMultiLabelClassification", "image_multilabel_classification"),
}


def is_legacy(config: dict[str, Any]) -> bool:
    """True for the 3.0-beta form (a ``Global`` or ``Pipeline`` section)."""
    return isinstance(config, dict) and ("Pipeline" in config or "Global" in config)


def legacy_pipeline_name(config: dict[str, Any], origin: str) -> str | None:
    """The canonical name a 3.0-beta config's ``Global.pipeline_name`` gives (None: not given)."""
    section = config.get("Global")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"{origin}: Global must be a mapping, got {type(section).__name__}")
    name = section.get("pipeline_name")
    if name is None:
        return None
    if name not in LEGACY_NAMES:
        raise ConfigError(f"{origin}: Global.pipeline_name {name!r} is not one of {', '.join(LEGACY_NAMES)}")
    return LEGACY_NAMES[name]


def _set(value: Any) -> bool:
    # PaddleX's own PP-ShiTuV2.yaml says `index: None`, the string
    return value is not None and not (isinstance(value, str) and value.strip().lower() in ("", "none", "null"))


def _one_of(section: dict[str, Any], names: tuple[str, str], origin: str) -> Any:
    """The value of whichever of two synonymous keys is set (PaddleX renamed several)."""
    given = [n for n in names if _set(section.get(n))]
    if len(given) == 2:
        raise ConfigError(f"{origin}: Pipeline.{names[0]} and Pipeline.{names[1]} are the same setting; give one")
    return section[given[0]] if given else None


def _model_entry(value: Any, base_dir: Path, origin: str, key: str) -> dict[str, Any]:
    """``model: NAME_or_DIR``: a folder path becomes ``model_dir``, anything else ``model_name``."""
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise ConfigError(f"{origin}: Pipeline.{key} must be a model name or a model folder, got {value!r}")
    text = str(value)
    candidates = [Path(text)] if Path(text).is_absolute() else [Path(text), base_dir / text]
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is not None:
        return {"model_name": None, "model_dir": str(folder.resolve())}
    if "/" in text or "\\" in text or text.startswith("."):
        raise ConfigError(f"{origin}: Pipeline.{key} {text!r} looks like a model folder, but no such folder exists")
    return {"model_name": text, "model_dir": None}


def _runtime(section: dict[str, Any], origin: str) -> dict[str, Any]:
    out = {key: section[key] for key in ("device", "use_hpip", "enable_hpi", "pp_option")
           if section.get(key) is not None}
    hpi = _one_of(section, ("hpi_config", "hpi_params"), origin)  # 3.0-beta called it hpi_params
    if hpi is not None:
        out["hpi_config"] = hpi
    return out


def _shitu(section: dict[str, Any], origin: str, base_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    modules: dict[str, dict[str, Any]] = {}
    for module, model_key, batch_key, module_name in (("Detection", "det_model", "det_batch_size", "object_detection"),
                                                      ("Recognition", "rec_model", "rec_batch_size", "image_feature")):
        entry: dict[str, Any] = {}
        if section.get(model_key) is not None:
            entry.update({"module_name": module_name, **_model_entry(section[model_key], base_dir, origin, model_key)})
        if section.get(batch_key) is not None:
            entry["batch_size"] = section[batch_key]
        if entry:
            modules[module] = entry
    if modules:
        out["SubModules"] = modules
    for target, names in (("index", ("index", "index_dir")), ("rec_threshold", ("score_thres", "rec_threshold")),
                          ("rec_topk", ("return_k", "rec_topk"))):
        value = _one_of(section, names, origin)
        if value is not None:
            out[target] = value
    if section.get("det_threshold") is not None:
        out["det_threshold"] = section["det_threshold"]
    return out


def _single_model(name: str, section: dict[str, Any], origin: str, base_dir: Path) -> dict[str, Any]:
    module, module_name = _SINGLE_MODULE[name]
    entry: dict[str, Any] = {}
    if section.get("model") is not None:
        entry.update({"module_name": module_name, **_model_entry(section["model"], base_dir, origin, "model")})
    for key in ("batch_size", "topk", "threshold"):
        if section.get(key) is not None:
            entry[key] = section[key]
    return {"SubModules": {module: entry}} if entry else {}


def from_legacy(config: dict[str, Any], origin: str, base_dir: Path,
                pipeline_name: str | None = None) -> dict[str, Any]:
    """The 3.x-form equivalent of a 3.0-beta config, holding only what it sets.

    ``pipeline_name`` (canonical) is used when the config has no ``Global.pipeline_name``
    (an override for a pipeline already chosen). Raises :class:`ConfigError` naming any key
    it does not know, and for a config that mixes both forms.
    """
    unknown = sorted(str(k) for k in config if k not in TOP_LEVEL_KEYS)
    if unknown:
        mixed = " (pipeline_name / SubModules belong to the 3.x form: use one form per file)" \
            if {"pipeline_name", "SubModules"} & set(config) else ""
        raise ConfigError(f"{origin}: unknown top-level key(s) {unknown} in a PaddleX 3.0 (Global/Pipeline) "
                          f"config{mixed}; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    global_section = config.get("Global") or {}
    if not isinstance(global_section, dict):
        raise ConfigError(f"{origin}: Global must be a mapping, got {type(global_section).__name__}")
    unknown = sorted(str(k) for k in global_section if k not in GLOBAL_KEYS)
    if unknown:
        raise ConfigError(f"{origin}: unknown Global key(s) {unknown}; allowed: {', '.join(GLOBAL_KEYS)}")
    name = legacy_pipeline_name(config, origin) or pipeline_name
    if name is None:
        raise ConfigError(f"{origin}: a PaddleX 3.0 config needs Global.pipeline_name "
                          f"({', '.join(LEGACY_NAMES)})")
    section = config.get("Pipeline") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{origin}: Pipeline must be a mapping, got {type(section).__name__}")
    allowed = PIPELINE_KEYS[name]
    unknown = sorted(str(k) for k in section if k not in allowed)
    if unknown:
        raise ConfigError(f"{origin}: unknown Pipeline key(s) {unknown} for {name}; allowed: {', '.join(allowed)}")
    body = _shitu(section, origin, base_dir) if name == "PP-ShiTuV2" else \
        _single_model(name, section, origin, base_dir)
    out: dict[str, Any] = {"pipeline_name": name, **body, **_runtime(section, origin)}
    if global_section.get("input") is not None:
        out["input"] = global_section["input"]
    if config.get("Serving") is not None:
        out["Serving"] = config["Serving"]
    return out
