"""The model zoo: registry, loader, preprocessing, weights and predictors.

Importing this package imports every model family (:mod:`.zoo`), so the registry is full
before anything asks it for a spec (timm's arrangement: the registry is a leaf, the
families register into it, the factory only reads it).
"""
from . import zoo  # noqa: F401  (registers every model)
from .factory import PREDICTORS, create_feature_model, create_model
from .loader import LoadedNetwork, build_network, load_network
from .registry import ModelSpec, WeightSource, get_spec, list_models

__all__ = [
    "PREDICTORS",
    "LoadedNetwork",
    "ModelSpec",
    "WeightSource",
    "build_network",
    "create_feature_model",
    "create_model",
    "get_spec",
    "list_models",
    "load_network",
]
