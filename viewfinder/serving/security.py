"""URL policy and a fetcher that enforces it (SSRF guard), index-key and API-key checks.

An ``image`` URL is fetched only over http/https, and only from addresses the policy
allows: the host name is resolved once, *every* resolved address is checked, and the
connection is made to one of those checked addresses (so a DNS answer that changes
between the check and the connect cannot slip a private address in). Redirects are
followed by hand, each target checked again. Connect, read and total timeouts and a
byte cap bound what one URL can cost.
"""
from __future__ import annotations

import hmac
import http.client
import ipaddress
import re
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from ..errors import InputError, RequestTooLargeError, UrlRefusedError
from .config import UrlPolicy

# Cloud metadata services (AWS/GCP/Azure/OpenStack, AWS ECS, Alibaba, AWS IPv6).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"))

#: uuid4 keys as we issue them, or any short name of letters, digits, ``-`` and ``_``:
#: no dots, slashes or other characters that could leave the storage folder.
INDEX_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_INDEX_KEY_RE = re.compile(INDEX_KEY_PATTERN)
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024


def valid_index_key(key: str) -> bool:
    return isinstance(key, str) and bool(_INDEX_KEY_RE.fullmatch(key))


def address_refusal(address: str, policy: UrlPolicy) -> str | None:
    """Why ``address`` may not be contacted under ``policy``, or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES and not policy.allow_metadata:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if ip.is_link_local:
        return None if policy.allow_link_local else "a link-local address"
    if ip.is_unspecified or ip.is_multicast:
        return "an unspecified or multicast address"
    if not ip.is_global:
        return None if policy.allow_private else "a private or reserved address"
    return None


def _resolve(host: str, port: int, policy: UrlPolicy) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"cannot resolve host {host!r}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise InputError(f"host {host!r} has no address")
    for address in addresses:
        reason = address_refusal(address, policy)
        if reason:
            raise UrlRefusedError(f"refused to fetch from {host!r}: it resolves to {address}, {reason}")
    return addresses


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to an already-checked address; Host header and URL keep the name."""

    def __init__(self, host: str, port: int, address: str, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(host, port, timeout=connect_timeout)
        self._address, self._read_timeout = address, read_timeout

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.settimeout(self._read_timeout)
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPS(_PinnedHTTP):
    default_port = 443

    def __init__(self, *args: object, context: ssl.SSLContext, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._context = context

    def connect(self) -> None:
        # Certificate and SNI are checked against the host name, not the pinned address.
        self.sock = self._context.wrap_socket(self._open(), server_hostname=self.host)


def _check_url(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket: "http://[::1"
        raise InputError(f"URL {url[:200]!r} cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefusedError(f"refused URL {url[:200]!r}: only http:// and https:// are fetched")
    if not host:
        raise InputError(f"URL {url[:200]!r} has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise InputError(f"URL {url[:200]!r} has an invalid port") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port, path


def fetch_url(url: str, policy: UrlPolicy) -> bytes:
    """The body of ``url`` under ``policy``; raises :class:`UrlRefusedError`, :class:`InputError`
    or :class:`RequestTooLargeError`."""
    deadline = time.monotonic() + policy.total_timeout_s
    current = url
    for _hop in range(policy.max_redirects + 1):
        scheme, host, port, path = _check_url(current)
        address = _resolve(host, port, policy)[0]
        if scheme == "https":
            connection: _PinnedHTTP = _PinnedHTTPS(host, port, address, policy.connect_timeout_s,
                                                   policy.read_timeout_s, context=ssl.create_default_context())
        else:
            connection = _PinnedHTTP(host, port, address, policy.connect_timeout_s, policy.read_timeout_s)
        try:
            connection.request("GET", path, headers={"User-Agent": "viewfinder-serving", "Accept": "image/*"})
            response = connection.getresponse()
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise InputError(f"{current[:200]}: HTTP {response.status} redirect without a Location")
                current = urljoin(current, location)
                continue
            if response.status != 200:
                raise InputError(f"{current[:200]}: HTTP {response.status} {response.reason}")
            return _read_body(response, current, policy, deadline)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # ValueError: a path http.client refuses (control characters), a Location urljoin cannot parse
            raise InputError(f"{current[:200]}: download failed ({type(exc).__name__}: {exc})") from None
        finally:
            connection.close()
    raise InputError(f"{url[:200]}: more than {policy.max_redirects} redirects")


def _read_body(response: http.client.HTTPResponse, url: str, policy: UrlPolicy, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise RequestTooLargeError(f"{url[:200]}: {declared} bytes is above the {policy.max_bytes}-byte download limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise InputError(f"{url[:200]}: download took longer than {policy.total_timeout_s:g} s")
        chunk = response.read(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > policy.max_bytes:
            raise RequestTooLargeError(f"{url[:200]}: body is above the {policy.max_bytes}-byte download limit")
        chunks.append(chunk)
    return b"".join(chunks)


def api_key_matches(expected: str, headers: dict[str, str]) -> bool:
    """``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, compared in constant time."""
    given = headers.get("x-api-key")
    auth = headers.get("authorization")
    if given is None and auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            given = token.strip()
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
