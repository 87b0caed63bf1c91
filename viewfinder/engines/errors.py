"""Errors of the engine layer (all :class:`~viewfinder.errors.ViewfinderError` s, so the CLI prints one line)."""
from __future__ import annotations

from ..errors import ViewfinderError


class EngineError(ViewfinderError):
    """An inference engine could not be created or loaded."""


class EngineUnavailableError(EngineError):
    """The requested engine, or the package it needs, is not usable on this machine."""


class ExportError(EngineError):
    """A model could not be exported to ONNX, or the export does not match the torch model."""
