"""Index location strings: the one parser for Python, YAML, the CLI and the service.

* a folder path (faiss, PaddleX's layout) - the default: anything without a ``scheme://``;
* ``milvus:///ABS/PATH/gallery.db?collection=NAME`` - Milvus Lite embedded in this process (a file);
* ``milvus://HOST[:PORT]?collection=NAME`` - a Milvus server over gRPC (port 19530 by default);
* ``milvus+https://HOST[:PORT]?collection=NAME`` - the same over TLS.

A *store* (``viewfinder serve --index_store``) is the same string without ``collection=``: the
service keeps one collection per indexKey there. The token for a server comes from
``$MILVUS_TOKEN`` only, so that a location can be printed and logged as it is: credentials in the
URL are refused (without echoing them).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union
from urllib.parse import parse_qsl, urlsplit

from viewfinder.errors import ConfigError

TOKEN_ENV = "MILVUS_TOKEN"
DEFAULT_PORT = 19530
LOCK_SUFFIX = "__vf_lock"  # reserved: the id-counter lock collections (milvus_lock.py)
TEMP_MARK = "__vf_tmp_"     # reserved: galleries being written, renamed into place when complete
# Milvus collection names: a letter or underscore first, then letters, digits, underscores (<= 255);
# ours stay short enough for the reserved suffixes above to fit.
_COLLECTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
_SCHEMES = {"milvus": "http", "milvus+http": "http", "milvus+https": "https"}
_FORMS = ("a folder path, milvus:///ABS/PATH/gallery.db?collection=NAME, "
          "milvus://HOST:PORT?collection=NAME or milvus+https://HOST:PORT?collection=NAME")


@dataclass(frozen=True)
class FolderLocation:
    """A faiss index folder (``vector.index`` + ``id_map.yaml``)."""

    path: Path

    @property
    def backend(self) -> str:
        return "faiss"

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class MilvusLocation:
    """A Milvus collection (``collection`` set) or a store of them (``collection`` None)."""

    uri: str                       # what pymilvus connects to: the .db path, or http(s)://host:port
    collection: str | None = None
    lite_path: Path | None = None  # the Milvus Lite file, for the embedded form

    @property
    def backend(self) -> str:
        return "milvus"

    @property
    def embedded(self) -> bool:
        return self.lite_path is not None

    @property
    def token(self) -> str:
        """From ``$MILVUS_TOKEN`` (empty: no authentication). Never part of ``str(location)``."""
        return "" if self.embedded else os.environ.get(TOKEN_ENV, "")

    def with_collection(self, name: str) -> "MilvusLocation":
        return MilvusLocation(self.uri, check_collection_name(name), self.lite_path)

    def __str__(self) -> str:
        if self.embedded:
            base = f"milvus://{self.lite_path}"
        else:
            scheme = "milvus+https" if self.uri.startswith("https://") else "milvus"
            base = f"{scheme}://{self.uri.split('://', 1)[1]}"
        return base + (f"?collection={self.collection}" if self.collection else "")


Location = Union[FolderLocation, MilvusLocation]


def check_collection_name(name: str) -> str:
    if not _COLLECTION_RE.fullmatch(name or ""):
        raise ConfigError(f"collection name {name[:80]!r} is not valid for Milvus: use letters, digits and "
                          "underscores, starting with a letter or underscore, at most 200 characters")
    if LOCK_SUFFIX in name or TEMP_MARK in name:
        raise ConfigError(f"collection name {name!r} uses a mark viewfinder reserves ({LOCK_SUFFIX}, {TEMP_MARK})")
    return name


def is_milvus(value: object) -> bool:
    """Whether ``value`` is a Milvus location string (cheap; no validation)."""
    return isinstance(value, str) and value.strip().lower().split("://", 1)[0] in _SCHEMES and "://" in value


def parse_location(value: "str | os.PathLike[str] | Location", *, store: bool = False) -> Location:
    """A location string -> :class:`FolderLocation` or :class:`MilvusLocation`.

    ``store=True`` parses a service's index store prefix (no ``collection=``); otherwise a
    Milvus location must name its collection. Malformed strings raise ConfigError naming the problem.
    """
    if isinstance(value, (FolderLocation, MilvusLocation)):
        return value
    if isinstance(value, os.PathLike):
        return FolderLocation(Path(value))
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"an index location must be a non-empty string ({_FORMS}), got {value!r}")
    text = value.strip()
    if "://" not in text:
        return FolderLocation(Path(text))
    scheme = text.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ConfigError(f"unsupported index location scheme {scheme[:20]!r}: use {_FORMS}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed Milvus location: {exc}") from None
    if parts.username is not None or parts.password is not None:
        # Never echo the string: it holds a secret.
        raise ConfigError(f"credentials in a Milvus location are not accepted: put the token in ${TOKEN_ENV}")
    if parts.fragment:
        raise ConfigError("a Milvus location takes no #fragment")
    params = _query(parts.query)
    collection = params.pop("collection", None)
    if params:
        raise ConfigError(f"unknown Milvus location parameter(s) {sorted(params)}; the only one is collection=NAME")
    if store and collection is not None:
        raise ConfigError("an index store keeps one collection per indexKey: leave collection= out of it")
    if not store and collection is None:
        raise ConfigError(f"a Milvus index location must name its collection: add ?collection=NAME to {text[:200]}")
    if collection is not None:
        check_collection_name(collection)

    if not parts.netloc:  # milvus:///abs/path/file.db - Milvus Lite in this process
        if scheme != "milvus":
            raise ConfigError(f"{scheme}:// needs a host; the embedded Milvus Lite form is milvus:///ABS/PATH/gallery.db")
        path = Path(parts.path)
        if not parts.path.startswith("/") or not path.is_absolute():
            raise ConfigError("a Milvus Lite location needs an absolute path: milvus:///ABS/PATH/gallery.db")
        if path.suffix != ".db":
            raise ConfigError(f"a Milvus Lite file must end in .db (pymilvus tells Lite from a server by it), "
                              f"got {path.name!r}")
        return MilvusLocation(str(path), collection, path)
    if parts.path not in ("", "/"):
        raise ConfigError(f"a Milvus server location has no path ({parts.path[:80]!r}); "
                          "the database is the default one, the collection is ?collection=NAME")
    host = parts.hostname
    if not host:
        raise ConfigError("a Milvus server location needs a host: milvus://HOST:PORT?collection=NAME")
    if port == 0:
        raise ConfigError("a Milvus server location needs a port between 1 and 65535")
    web = _SCHEMES[scheme]
    shown_host = f"[{host}]" if ":" in host else host
    return MilvusLocation(f"{web}://{shown_host}:{port or DEFAULT_PORT}", collection)


def _query(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"malformed Milvus location query {query[:80]!r}: expected collection=NAME") from None
    for key, val in pairs:
        if key in out:
            raise ConfigError(f"Milvus location parameter {key!r} is given twice")
        out[key] = val
    return out
