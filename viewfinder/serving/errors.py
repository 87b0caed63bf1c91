"""Errors the service raises itself; each carries the HTTP status it is answered with."""
from __future__ import annotations

from ..errors import InputError, ViewfinderError


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
