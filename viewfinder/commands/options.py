"""Flag values several commands parse the same way."""
from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError


def hpi_config_from_json(text: str | None) -> dict[str, Any] | None:
    """``--hpi_config`` as PaddleX's CLI takes it: a JSON object (None: not given)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--hpi_config must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--hpi_config must be a JSON object, got {text!r}")
    return value
