"""Connections to Milvus (pymilvus ``MilvusClient``): one per URI per process, short connect timeout,
every failure as a RetrievalIndexError that names the location and never the token.

Imported only when a Milvus location is used: the plain install has no pymilvus.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from viewfinder.errors import ConfigError, IndexBackendError, RetrievalIndexError
from viewfinder.retrieval.location import MilvusLocation

INSTALL_HINT = 'Milvus index locations need pymilvus: pip install "viewfinder[milvus]"'
CONNECT_TIMEOUT_S = 5.0   # an unreachable server is reported in seconds, never a hang
CALL_TIMEOUT_S = 120.0    # a reachable server that stops answering mid-call
BULK_TIMEOUT_S = 3600.0   # writing a whole gallery: inserts, then the flush that builds its index
# pymilvus pings every 10 s; a gRPC server's default policy (Milvus Lite's) allows one ping per
# 5 min while a call sends no data, and answers a long call (a flush building an index) with
# GOAWAY "too_many_pings", which breaks it. Hangs are bounded by the call timeouts above instead.
_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}
T = TypeVar("T")

try:
    import pymilvus
    from pymilvus import DataType, MilvusClient
    from pymilvus.exceptions import MilvusException
except ImportError:  # pragma: no cover - exercised by tests through a blocked import
    raise ConfigError(INSTALL_HINT) from None

# pymilvus configures its own loggers on import and logs every failed call with a traceback at
# ERROR (and iterator fallbacks at WARNING), then raises; we raise one clear error instead (the CLI
# prints one line), so its loggers (and Milvus Lite's, which logs a traceback for a locked file) are
# turned down here. Set them back after import to debug pymilvus.
for _name in ("pymilvus", "pymilvus.milvus_client", "milvus_lite"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()

__all__ = ["BULK_TIMEOUT_S", "CALL_TIMEOUT_S", "DataType", "MilvusClient", "MilvusException", "call",
           "client_for", "close_all", "pymilvus", "translate"]


def _message(exc: BaseException) -> str:
    if isinstance(exc, MilvusException):
        return str(getattr(exc, "message", "") or exc)
    return str(exc) or type(exc).__name__


def client_for(location: MilvusLocation) -> Any:
    """The process's client for ``location``'s server or Lite file (made on first use)."""
    token = location.token
    key = (location.uri, token)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        if location.embedded:
            try:
                import milvus_lite  # noqa: F401  - pymilvus starts it for .db URIs
            except ImportError:
                raise ConfigError(f"{INSTALL_HINT} (Milvus Lite, for milvus:/// files, comes with it)") from None
            location.lite_path.parent.mkdir(parents=True, exist_ok=True)
            # Embedded Lite serves gRPC from this process; a call it does not implement (pymilvus's
            # AllocTimestamp after a flush, which pymilvus then does without) would log a traceback here.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        try:
            client = MilvusClient(uri=location.uri, token=token, timeout=CONNECT_TIMEOUT_S,
                                  grpc_options=dict(_GRPC_OPTIONS))
        except Exception as exc:  # noqa: BLE001 - pymilvus raises MilvusException, grpc and OS errors alike
            raise IndexBackendError(_unreachable(location, exc)) from None
        _clients[key] = client
        return client


def close_all() -> None:
    """Close this process's clients and stop the Milvus Lite servers it started (their threads,
    which compact in the background, stop too): for tests, and for a clean shutdown."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_all()


def _unreachable(location: MilvusLocation, exc: BaseException) -> str:
    where = str(location.lite_path) if location.embedded else location.uri
    if location.embedded:
        return (f"cannot open Milvus Lite file {where}: {_message(exc)} (a Lite file is open in one process at a "
                f"time; to share it, run `milvus-lite server --data-dir {where}` and use milvus://127.0.0.1:19530)")
    return f"cannot reach Milvus at {where} within {CONNECT_TIMEOUT_S:g} s: {_message(exc)}"


@contextmanager
def translate(location: MilvusLocation, what: str) -> Iterator[None]:
    """Turn a Milvus failure inside the block into RetrievalIndexError naming ``what`` and the location."""
    try:
        yield
    except (RetrievalIndexError, ConfigError):
        raise
    except MilvusException as exc:
        raise IndexBackendError(f"Milvus {what} failed at {location}: {_message(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - grpc errors (server gone) and the like
        raise IndexBackendError(f"Milvus {what} failed at {location}: {type(exc).__name__}: {_message(exc)}") from None


def call(location: MilvusLocation, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A client method ``fn(*args, **kwargs)`` with a timeout, failures translated (:func:`translate`)."""
    kwargs.setdefault("timeout", CALL_TIMEOUT_S)
    with translate(location, what):
        return fn(*args, **kwargs)


def is_missing_collection(exc: BaseException) -> bool:
    text = _message(exc).lower()
    return ("not exist" in text or "not found" in text) and "collection" in text
