"""viewfinder: open-domain image recognition on PyTorch with PaddleX-compatible APIs."""
from __future__ import annotations

from typing import Any

from .errors import ViewfinderError

__version__ = "0.1.0"


# torch loads with the model zoo, on first use: commands that need no model (index info and
# remove, --help, the serving supervisor) start in a fraction of the time.
def create_model(*args: Any, **kwargs: Any):
    """Create a model by registered name (see :func:`viewfinder.models.create_model`)."""
    from .models import create_model as _create_model

    return _create_model(*args, **kwargs)


def list_models(*args: Any, **kwargs: Any):
    """Registered model names (see :func:`viewfinder.models.list_models`)."""
    from .models import list_models as _list_models

    return _list_models(*args, **kwargs)


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
