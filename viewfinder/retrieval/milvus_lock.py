"""A cross-process lock for one Milvus gallery, made of Milvus itself.

Milvus has no transactions and no compare-and-set on data: an insert with an existing primary
key silently replaces the row. Handing out ids "once" across processes therefore needs mutual
exclusion around "read the counter, write counter + n". The one atomic test-and-set Milvus
offers every client is DDL: creating a collection whose name exists fails (Milvus Lite always;
a Milvus server when the request differs from the existing one, which the owner token in the
description and properties ensures). So the lock is a tiny collection ``<gallery>__vf_lock``:
created = acquired, dropped = released.

A holder that dies (SIGKILL) leaves the lock behind; its properties carry an expiry (the lease),
after which one waiter breaks it. Breaking is itself guarded by a test-and-set (a marker
collection per dead owner), so two waiters never both break and both take it. The lease is far
longer than the few milliseconds the lock is held (two metadata calls), and expiry compares wall
clocks, so machines sharing a server need roughly synchronised clocks (NTP).
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval.location import LOCK_SUFFIX, MilvusLocation
from viewfinder.retrieval.milvus_client import DataType, MilvusClient, MilvusException, translate

LEASE_S = 10.0
WAIT_S = 60.0
_PROPERTY = "viewfinder.lock"
_local: dict[tuple[str, str], threading.Lock] = {}  # threads of one process queue here, not on Milvus
_local_guard = threading.Lock()


def lock_name(collection: str) -> str:
    return f"{collection}{LOCK_SUFFIX}"


def _thread_lock(location: MilvusLocation, name: str) -> threading.Lock:
    with _local_guard:
        return _local.setdefault((location.uri, name), threading.Lock())


def _schema(owner: str) -> Any:
    # Real Milvus treats a create that equals the existing collection as a no-op success: the owner
    # in the description (and a field description) makes every request differ.
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=f"lock {owner}")
    schema.add_field("id", DataType.INT64, is_primary=True, description=owner)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus servers require a vector field
    return schema


def _try_create(client: Any, name: str, owner: str, lease_s: float) -> bool:
    record = json.dumps({"owner": owner, "expires": time.time() + lease_s})
    try:
        client.create_collection(name, schema=_schema(owner), properties={_PROPERTY: record}, timeout=30)
        return True
    except MilvusException as exc:
        if "exist" in str(getattr(exc, "message", exc)).lower():
            return False
        raise


def _holder(client: Any, name: str) -> dict[str, Any] | None:
    """The lock's {owner, expires}, or None when it is gone (or unreadable: treat as expired)."""
    try:
        properties = client.describe_collection(name, timeout=30).get("properties") or {}
    except MilvusException:
        return None
    try:
        record = json.loads(properties.get(_PROPERTY, ""))
        return record if isinstance(record, dict) and "owner" in record else {"owner": "?", "expires": 0}
    except ValueError:
        return {"owner": "?", "expires": 0}


def _drop_quietly(client: Any, name: str) -> None:
    try:
        client.drop_collection(name, timeout=30)
    except MilvusException:
        pass


def _break(client: Any, name: str, stale: dict[str, Any]) -> None:
    """Remove a lock whose lease ran out, unless another waiter is already doing so."""
    owner = str(stale.get("owner", "?"))
    marker = f"{name}_brk_{uuid.uuid5(uuid.NAMESPACE_OID, owner).hex}"
    if not _try_create(client, marker, uuid.uuid4().hex, LEASE_S):
        holder = _holder(client, marker)  # a breaker that died itself: its marker expires too
        if holder is not None and holder.get("expires", 0) < time.time():
            _drop_quietly(client, marker)
        return
    try:
        now = _holder(client, name)
        if now is not None and now.get("owner") == stale.get("owner"):
            _drop_quietly(client, name)
    finally:
        _drop_quietly(client, marker)


@contextmanager
def gallery_lock(client: Any, location: MilvusLocation, collection: str, *, wait_s: float = WAIT_S,
                 lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the gallery's cross-process lock (threads of this process queue on a local lock first)."""
    name = lock_name(collection)
    with _thread_lock(location, name):
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        delay = 0.002
        while True:
            with translate(location, "lock"):
                if _try_create(client, name, owner, lease_s):
                    break
                holder = _holder(client, name)
                if holder is not None and float(holder.get("expires", 0)) < time.time():
                    _break(client, name, holder)
                    continue
            if time.monotonic() > deadline:
                raise RetrievalIndexError(f"timed out after {wait_s:g} s waiting for the write lock of {location} "
                                          f"(collection {name}); another process holds it")
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            if (_holder(client, name) or {}).get("owner") == owner:  # never drop a lock broken and re-taken
                _drop_quietly(client, name)
