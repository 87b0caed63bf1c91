"""What the OpenAPI spec says about errors: each endpoint's real error statuses, with our envelope.

Endpoints name their statuses with :func:`error_responses` (FastAPI's ``responses=``); naming a
422 there also keeps FastAPI from documenting its own ``HTTPValidationError`` body, which the
service never sends. :func:`document_api_key` adds the 401 and the security schemes when the
service has an API key (the middleware answers 401 on every path but the open ones).
"""
from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI

from .middleware import OPEN_PATHS
from .schemas import ErrorEnvelope

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad input: an undecodable or truncated image, bad Base64, a refused or failed image URL, "
         "a parameter value the pipeline refuses",
    401: "API key missing or wrong (send `Authorization: Bearer <key>` or `X-API-Key: <key>`)",
    404: "No index with this indexKey",
    413: "Request body, image download, image pixels or image count above the service's limit",
    422: "Schema error: a missing field, a wrong type or range, a malformed indexKey, a body that is not JSON",
    500: "Internal error; the message names only the logId (the details are in the server log)",
    503: "The work queue is full (`max_queue`): nothing was done; retry after `Retry-After` seconds",
    504: "Not answered within `request_timeout_s`",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}},
}
#: what an endpoint that queues for inference can answer besides its result
INFER_ERRORS = (400, 413, 422, 500, 503, 504)


def error_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for ``statuses``, each with the envelope; ``descriptions`` (``e404="..."``)
    replace the generic text where an endpoint can say more."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorEnvelope,
                                 "description": descriptions.get(f"e{status}", ERROR_DESCRIPTIONS[status])}
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        responses[status] = entry
    return responses


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "the service's API key"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the service's API key"},
}


def document_api_key(app: FastAPI) -> None:
    """Make ``app``'s spec say that every operation outside ``OPEN_PATHS`` needs the key (else 401)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        spec.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
        for path, operations in spec.get("paths", {}).items():
            if path in OPEN_PATHS:
                continue
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
                operation["responses"]["401"] = {"description": ERROR_DESCRIPTIONS[401], "headers": _HEADERS[401],
                                                 "content": {"application/json": {"schema": envelope}}}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
