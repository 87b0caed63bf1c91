"""Whether a gallery's vectors came from the feature model about to query it.

Same size is not enough: another network's vectors are meaningless to this one, so a gallery
records what made it (``feature_model``: model_name, feature_dim, weights_sha256) and a query
from another model is refused, on every backend.
"""
from __future__ import annotations

from typing import Any

from viewfinder.errors import ConfigError


def check_feature_model(index: Any, mine: dict[str, Any]) -> None:
    """Raise ConfigError unless ``index`` (any gallery) fits vectors described by ``mine``."""
    dim = mine.get("feature_dim")
    name = mine.get("model_name")
    if dim is not None and index.dim != dim:
        raise ConfigError(
            f"the index holds {index.dim}-d vectors but {name} gives {dim}-d features: "
            "build the index with the same recognition model"
        )
    recorded = index.feature_model or {}
    if recorded.get("model_name") not in (None, name):
        raise ConfigError(
            f"the index was built with {recorded['model_name']} features but this pipeline recognises with "
            f"{name}: build the index with the same recognition model"
        )
    if recorded.get("weights_sha256") and mine.get("weights_sha256") \
            and recorded["weights_sha256"] != mine["weights_sha256"]:
        raise ConfigError(
            f"the index was built with other {name} weights (sha256 "
            f"{recorded['weights_sha256']}, these are {mine['weights_sha256']}; e.g. pretrained vs a "
            "fine-tuned model_dir): build the index with the same recognition weights"
        )
