"""One adapter per pipeline: it maps PaddleX's endpoints and JSON onto the pipeline's Python API.

Adapters are imported only for the pipeline being served.
"""
from __future__ import annotations

import importlib

from ...errors import ConfigError
from .base import PipelineAdapter

# canonical pipeline name -> "module:Class"
ADAPTERS: dict[str, str] = {
    "image_classification": "viewfinder.serving.adapters.classification:ClassificationAdapter",
    "image_multilabel_classification": "viewfinder.serving.adapters.multilabel:MultiLabelAdapter",
    "PP-ShiTuV2": "viewfinder.serving.adapters.shitu:ShiTuAdapter",
}


def adapter_class(pipeline_name: str) -> type[PipelineAdapter]:
    if pipeline_name not in ADAPTERS:
        raise ConfigError(f"pipeline {pipeline_name!r} cannot be served; servable: {', '.join(sorted(ADAPTERS))}")
    module_name, class_name = ADAPTERS[pipeline_name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["ADAPTERS", "PipelineAdapter", "adapter_class"]
