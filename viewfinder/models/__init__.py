"""The model zoo: registry, preprocessing, weights and predictors."""
from .factory import create_model
from .registry import ModelSpec, WeightSource, get_spec, list_models

__all__ = ["ModelSpec", "WeightSource", "create_model", "get_spec", "list_models"]
