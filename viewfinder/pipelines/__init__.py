"""Pipelines by PaddleX name; ``create_pipeline`` accepts a name or a YAML path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import BasePipeline
from .config import default_config_text, load_config
from .image_classification import ImageClassificationPipeline
from .legacy_config import is_legacy, legacy_pipeline_name
from .multilabel import MultiLabelClassificationPipeline
from .shitu import GalleryEmbedding, ShiTuV2Pipeline, index_from_embedding

# accepted name -> canonical name (PaddleX 3.x names plus their 3.0-beta1 aliases)
PIPELINE_NAMES: dict[str, str] = {
    "image_classification": "image_classification",
    "image_multilabel_classification": "image_multilabel_classification",
    "multi_label_image_classification": "image_multilabel_classification",
    "PP-ShiTuV2": "PP-ShiTuV2",
}

# canonical name -> the class that runs it (static, like Ultralytics' task map)
PIPELINE_CLASSES: dict[str, type[BasePipeline]] = {
    "image_classification": ImageClassificationPipeline,
    "image_multilabel_classification": MultiLabelClassificationPipeline,
    "PP-ShiTuV2": ShiTuV2Pipeline,
}


def pipeline_class(pipeline: str | Path) -> type[BasePipeline]:
    """The class a pipeline name or YAML file builds, without building it (e.g. to read its ``predict_params``)."""
    return PIPELINE_CLASSES[load_config(pipeline, None, PIPELINE_NAMES)["pipeline_name"]]


def create_pipeline(pipeline: str | Path | None = None, config: dict[str, Any] | None = None,
                    device: str | None = None, use_hpip: bool | None = None, *, pp_option: Any = None,
                    hpi_config: dict[str, Any] | None = None, enable_hpi: bool | None = None,
                    **kwargs: Any) -> BasePipeline:
    """Create a pipeline from a registered name or a YAML file; ``config`` overrides the file.

    PaddleX's runtime options are honoured or refused with a reason, never dropped:
    ``use_hpip`` (alias ``enable_hpi``), ``hpi_config`` and ``pp_option`` (a dict or a
    PaddlePredictorOption-like object: device, run_mode, cpu_threads); arguments win over the
    config's top-level keys of the same names. Other keywords: ``pretrained``, ``cpu_threads``,
    ``engine``, ``fp16``, and the pipeline's own (PP-ShiTuV2: ``index_dir``); any other raises
    :class:`~viewfinder.errors.ConfigError`.
    """
    if pipeline is None:
        name = legacy_pipeline_name(config, "config") if config and is_legacy(config) else \
            (config or {}).get("pipeline_name")
        if name is None:
            raise ConfigError("create_pipeline needs a pipeline name, a YAML path or a config with pipeline_name "
                              "(or PaddleX 3.0's Global.pipeline_name)")
        pipeline = name
    merged = load_config(pipeline, config, PIPELINE_NAMES)
    runtime = {k: v for k, v in (("pp_option", pp_option), ("hpi_config", hpi_config),
                                 ("enable_hpi", enable_hpi)) if v is not None}
    return PIPELINE_CLASSES[merged["pipeline_name"]](merged, device=device, use_hpip=use_hpip, **runtime, **kwargs)


def list_pipelines() -> list[str]:
    return sorted(set(PIPELINE_NAMES.values()))


__all__ = ["BasePipeline", "GalleryEmbedding", "create_pipeline", "default_config_text", "index_from_embedding",
           "list_pipelines", "pipeline_class", "PIPELINE_NAMES"]
