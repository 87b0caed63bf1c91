"""Exception types raised by viewfinder: one tree, all in this module.

Every error a user can cause derives from :class:`ViewfinderError`; the CLI prints
such errors as one line and exits non-zero, the service maps them to HTTP 4xx (each
class's ``http_status``). Anything else escaping is a bug. The packages re-export the
classes they raise (``from viewfinder.engines import EngineError`` ...).
"""
from __future__ import annotations


class ViewfinderError(Exception):
    """Base class for all errors caused by bad input, config or environment."""

    #: HTTP status the service answers with for this error.
    http_status: int = 400


class InputError(ViewfinderError):
    """An input (path, URL, array, bytes) could not be read as an image."""


class ImageTooLargeError(InputError):
    """An image exceeds the pixel limit (decompression-bomb guard)."""

    http_status = 413


class ConfigError(ViewfinderError):
    """A pipeline/model config (YAML or dict) is malformed."""


class ModelNotFoundError(ViewfinderError):
    """An unknown model name was requested."""

    http_status = 404


class WeightsNotFoundError(ViewfinderError):
    """Weights could not be resolved (no file, no cache, no network)."""


class WeightsError(ViewfinderError):
    """A weight file exists but is corrupt, mismatched or fails its checksum."""


class DeviceError(ViewfinderError):
    """An unknown or unavailable device was requested."""


# --- engines (viewfinder.engines) ---------------------------------------------------------------

class EngineError(ViewfinderError):
    """An inference engine could not be created or loaded."""


class EngineUnavailableError(EngineError):
    """The requested engine, or the package it needs, is not usable on this machine."""


class ExportError(EngineError):
    """A model could not be exported to ONNX, or the export does not match the torch model."""


# --- retrieval (viewfinder.retrieval) -----------------------------------------------------------

class IndexError_(ViewfinderError):
    """A retrieval index operation failed (bad vectors, ids, files)."""


# Public alias with a clearer name; ``IndexError_`` avoids shadowing the builtin.
RetrievalIndexError = IndexError_


class IndexFolderGone(RetrievalIndexError):
    """The folder was deleted (or replaced) while we waited for its writer lock."""


class IndexBackendError(RetrievalIndexError):
    """The index backend (a Milvus server or Milvus Lite file) could not be reached, or a call to it failed."""

    http_status = 500  # not the client's fault


# --- datasets (viewfinder.datasets) -------------------------------------------------------------

class DatasetError(ViewfinderError):
    """A dataset folder, list file, label file or conversion source is malformed."""


# --- training (viewfinder.training) -------------------------------------------------------------

class TrainingError(ViewfinderError):
    """Training cannot start or continue: bad settings, incompatible checkpoint, diverging loss ..."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C (SIGINT) stopped training; a resumable checkpoint was saved first."""

    http_status = 499

    def __init__(self, message: str, checkpoint: str) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


# --- the HTTP service (viewfinder.serving) ------------------------------------------------------

class UrlRefusedError(InputError):
    """An ``image`` URL names a scheme or an address the URL policy refuses."""

    http_status = 400


class IndexNotFoundError(ViewfinderError):
    """No index is stored under the given ``indexKey``."""

    http_status = 404


class RequestTooLargeError(ViewfinderError):
    """A request body, download or image count is above its limit."""

    http_status = 413


class UnauthorizedError(ViewfinderError):
    """The API key is missing or wrong."""

    http_status = 401


class ServiceError(ViewfinderError):
    """A server-side failure that is not the client's fault (e.g. the disk refused a save)."""

    http_status = 500


class ServiceBusyError(ViewfinderError):
    """The inference queue is full: the client should retry after ``retry_after_s`` seconds."""

    http_status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
