"""The Milvus gallery's id counter across processes (``retrieval.milvus_lock``), on a milvus-lite server.

Milvus has no compare-and-set: without the lock, two processes appending at once read the same
counter and the later insert silently replaces the earlier rows. These tests hammer it from
several processes, and check that a lock left by a killed holder is broken after its lease.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from milvus_server import MilvusLiteServer
from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval import IndexData, open_gallery, write_gallery

ROOT = Path(__file__).resolve().parent.parent
APPENDER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from viewfinder.retrieval import open_gallery
    gallery = open_gallery(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    got = []
    for i in range(int(sys.argv[3])):
        n = 1 + i % 3
        ids = gallery.append(rng.standard_normal((n, 8)).astype("float32"), [f"p{sys.argv[2]}-{i}"] * n)
        got.append(ids.tolist())
    print(json.dumps(got))
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with MilvusLiteServer(tmp_path_factory.mktemp("lock")) as running:
        yield running


def test_appends_from_three_processes_get_every_id_once(server):
    location = f"{server.store}?collection=hammered"
    write_gallery(IndexData.build(np.eye(2, 8, dtype=np.float32), ["a", "b"], index_type="Flat"), location)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-c", APPENDER, location, str(n), "20"], stdout=subprocess.PIPE,
                                text=True, env=env) for n in range(3)]
    batches = []
    for worker in workers:
        out, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0
        batches += json.loads(out)
    ids = [i for batch in batches for i in batch]
    assert all(batch == list(range(batch[0], batch[0] + len(batch))) for batch in batches)  # consecutive per append
    assert sorted(ids) == list(range(2, 2 + len(ids)))  # each id once, no gaps
    gallery = open_gallery(location)
    assert len(gallery) == 2 + len(ids) and gallery.next_id == 2 + len(ids)  # no insert replaced another


def test_a_lock_left_by_a_dead_holder_expires(server):
    from viewfinder.retrieval.milvus_client import client_for
    from viewfinder.retrieval.milvus_lock import _try_create, gallery_lock, lock_name

    location = f"{server.store}?collection=orphaned"
    gallery = write_gallery(IndexData.build(np.eye(2, 8, dtype=np.float32), ["a", "b"], index_type="Flat"), location)
    client = client_for(gallery.location)
    assert _try_create(client, lock_name("orphaned"), "dead-owner", lease_s=1.5)  # then "killed"
    with pytest.raises(RetrievalIndexError, match="waiting for the write lock"):
        with gallery_lock(client, gallery.location, "orphaned", wait_s=0.3):
            pass
    started = time.monotonic()
    assert gallery.append(np.ones((1, 8), np.float32), ["c"]).tolist() == [2]  # waits out the lease, breaks it
    assert 0.5 < time.monotonic() - started < 10
    assert not client.has_collection(lock_name("orphaned"))  # released after use
