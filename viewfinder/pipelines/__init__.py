"""Pipelines by PaddleX name; ``create_pipeline`` accepts a name or a YAML path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import BasePipeline
from .config import default_config_text, load_config
from .image_classification import ImageClassificationPipeline
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
                    device: str | None = None, use_hpip: bool = False, **kwargs: Any) -> BasePipeline:
    """Create a pipeline from a registered name or a YAML file; ``config`` overrides the file."""
    if pipeline is None:
        if not config or "pipeline_name" not in config:
            raise ConfigError("create_pipeline needs a pipeline name, a YAML path or a config with pipeline_name")
        pipeline = config["pipeline_name"]
    merged = load_config(pipeline, config, PIPELINE_NAMES)
    return PIPELINE_CLASSES[merged["pipeline_name"]](merged, device=device, use_hpip=use_hpip, **kwargs)


def list_pipelines() -> list[str]:
    return sorted(set(PIPELINE_NAMES.values()))


__all__ = ["BasePipeline", "GalleryEmbedding", "create_pipeline", "default_config_text", "index_from_embedding",
           "list_pipelines", "pipeline_class", "PIPELINE_NAMES"]
