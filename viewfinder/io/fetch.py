"""Download an http(s) input with a timeout and a size cap."""
from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlparse

from ..errors import InputError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def fetch_url(url: str, timeout: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Return the body of ``url``; raises :class:`InputError` on any failure or oversize body."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"{url}: only http:// and https:// URLs are supported")
    request = urllib.request.Request(url, headers={"User-Agent": "viewfinder"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise InputError(f"{url}: body of {declared} bytes is above the {max_bytes}-byte limit")
            body = response.read(max_bytes + 1)
    except InputError:
        raise
    except urllib.error.HTTPError as exc:
        raise InputError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"{url}: download failed ({reason})") from None
    if len(body) > max_bytes:
        raise InputError(f"{url}: body is above the {max_bytes}-byte limit")
    return body
