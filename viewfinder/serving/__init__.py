"""PaddleX-compatible HTTP service (FastAPI + uvicorn); see docs/serving.md.

``create_app(pipeline, ServingConfig(...))`` gives the ASGI app; ``serve(name_or_yaml, ...)``
loads a pipeline and runs it under uvicorn (what ``viewfinder serve`` calls).
"""
from .app import create_app
from .config import ServingConfig, UrlPolicy
from .server import serve
from .storage import IndexStore

__all__ = ["IndexStore", "ServingConfig", "UrlPolicy", "create_app", "serve"]
