"""Exception types raised by viewfinder.

Every error a user can cause derives from :class:`ViewfinderError`; the CLI prints
such errors as one line and exits non-zero, the service maps them to HTTP 4xx.
Anything else escaping is a bug.
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


class IndexError_(ViewfinderError):
    """A retrieval index operation failed (bad vectors, ids, files)."""


# Public alias with a clearer name; ``IndexError_`` avoids shadowing the builtin.
RetrievalIndexError = IndexError_
