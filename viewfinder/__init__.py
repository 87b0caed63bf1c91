"""viewfinder: open-domain image recognition on PyTorch with PaddleX-compatible APIs."""
from __future__ import annotations

from typing import Any

from .errors import ViewfinderError
from .models import create_model, list_models

__version__ = "0.1.0"


def create_pipeline(*args: Any, **kwargs: Any):
    """Create a pipeline by registered name or YAML path (see :mod:`viewfinder.pipelines`)."""
    from .pipelines import create_pipeline as _create_pipeline

    return _create_pipeline(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # The retrieval layer imports faiss; load it only when asked for.
    if name in ("IndexData", "VectorIndex"):
        from . import retrieval

        return getattr(retrieval, name)
    raise AttributeError(f"module 'viewfinder' has no attribute {name!r}")


__all__ = ["IndexData", "ViewfinderError", "create_model", "create_pipeline", "list_models"]
