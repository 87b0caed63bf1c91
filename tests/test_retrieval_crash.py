"""Saves are crash-safe: killing a saver at any point leaves a loadable, consistent index."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval import IndexData, storage

REPO = Path(__file__).resolve().parents[1]
BASE = {"Flat": 20_000, "HNSW32": 4_000}  # Flat: a 5 MB vector.index, so a save takes a while

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from viewfinder.retrieval import IndexData
    folder, kind, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
    x = np.random.default_rng(0).standard_normal((base, 64)).astype("float32")
    idx = IndexData.build(x, ["base"] * len(x), index_type=kind, ef_construction=16)
    i = 0
    while True:
        idx.append(x[i:i + 1], ["v%d" % i])  # version i = appended v0..vi
        if kind == "HNSW32":
            idx.remove([i])  # and removed base ids 0..i (tombstones must persist too)
        idx.save(folder)
        print(i, flush=True)
        i += 1
""")


def _check_version(folder: Path, kind: str, last_printed: int) -> int:
    idx = IndexData.load(folder)
    base = BASE[kind]
    appended = {i: lab for i, lab in idx.id_map.items() if i >= base}
    version = len(appended) - 1
    assert appended == {base + j: f"v{j}" for j in range(version + 1)}, "appended items out of sync"
    # the save that printed is complete; at most one more may have committed before the kill
    assert last_printed <= version <= last_printed + 1
    if kind == "HNSW32":
        removed = set(range(version + 1))
        assert not removed & idx.id_map.keys() and idx.deleted_count == version + 1
        _, ids, _ = idx.search(np.random.default_rng(0).standard_normal((1, 64)).astype("float32"), 50)
        assert not np.isin(ids, list(removed)).any()
    assert len(idx) == (base + version + 1 - (version + 1 if kind == "HNSW32" else 0))
    return version


@pytest.mark.parametrize("kind,rounds", [("Flat", 2), ("HNSW32", 1)])
def test_sigkill_mid_save_leaves_old_or_new_version(tmp_path, kind, rounds):
    script = tmp_path / "saver.py"
    script.write_text(CHILD)
    folder = tmp_path / "index"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rng = random.Random(kind)
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, str(script), str(folder), kind, str(BASE[kind])],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True)
        try:
            first = proc.stdout.readline()  # one complete save exists (or the previous round's)
            assert first.strip().isdigit(), proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.4))  # land somewhere inside a later save
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        printed = [int(s) for s in ([first] + out.split()) if s.strip()]
        assert proc.returncode == -signal.SIGKILL
        _check_version(folder, kind, printed[-1])
    # a later save over the debris of killed saves works and cleans up
    idx = IndexData.load(folder)
    idx.save(folder)
    assert IndexData.load(folder).id_map == idx.id_map
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".vf-tmp-") or p.name.endswith(".pending")]


class _CrashAt:
    """Make the n-th os.replace of a save raise, as if the process died right there."""

    def __init__(self, monkeypatch, n: int) -> None:
        self.calls = 0
        real = os.replace

        def replace(src, dst):
            self.calls += 1
            if self.calls == n:
                raise OSError("simulated crash")
            return real(src, dst)

        monkeypatch.setattr(storage.os, "replace", replace)


@pytest.fixture
def two_versions(tmp_path):
    x = np.random.default_rng(1).standard_normal((200, 8)).astype(np.float32)
    old = IndexData.build(x, ["old"] * 200, index_type="HNSW32")
    folder = tmp_path / "idx"
    old.save(folder)
    new = IndexData.build(x[:150], ["new"] * 150, index_type="HNSW32")
    new.remove([0, 1])
    return folder, old, new


@pytest.mark.parametrize("crash_at,expect", [(1, "old"), (2, "old"), (3, "new")])
def test_crash_between_renames(monkeypatch, two_versions, crash_at, expect):
    """1: before the YAML is staged; 2: staged, vector.index not yet replaced; 3: only the YAML rename left."""
    folder, old, new = two_versions
    crash = _CrashAt(monkeypatch, crash_at)
    with pytest.raises(RetrievalIndexError, match="simulated crash"):
        new.save(folder)
    monkeypatch.undo()
    assert crash.calls == crash_at
    loaded = IndexData.load(folder)
    want = old if expect == "old" else new
    assert loaded.id_map == want.id_map and loaded.deleted_count == want.deleted_count
    # the next save recovers whatever state the crash left
    new.save(folder)
    assert IndexData.load(folder).id_map == new.id_map
    assert not (folder / storage.PENDING_FILE).exists()


def test_stale_temp_files_are_ignored_and_cleaned(two_versions):
    folder, old, new = two_versions
    (folder / ".vf-tmp-deadbeef").write_bytes(b"half a faiss index")
    assert IndexData.load(folder).id_map == old.id_map
    new.save(folder)
    assert not (folder / ".vf-tmp-deadbeef").exists()


def test_concurrent_saves_and_loads_do_not_mix_versions(tmp_path):
    """Savers in several threads serialise on the folder lock; a loader always sees one version."""
    import threading

    x = np.random.default_rng(2).standard_normal((2000, 16)).astype(np.float32)
    versions = [IndexData.build(x[: 1000 + 100 * v], [f"v{v}"] * (1000 + 100 * v), index_type="Flat")
                for v in range(3)]
    folder = tmp_path / "idx"
    versions[0].save(folder)
    errors: list[BaseException] = []

    def saver(v: int) -> None:
        try:
            for _ in range(5):
                versions[v].save(folder)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(v,)) for v in range(3)]
    for t in threads:
        t.start()
    seen = set()
    while any(t.is_alive() for t in threads):
        loaded = IndexData.load(folder)
        labels = set(loaded.id_map.values())
        assert len(labels) == 1
        v = int(labels.pop()[1:])
        assert len(loaded) == 1000 + 100 * v
        seen.add(v)
    for t in threads:
        t.join()
    assert not errors, errors[0]
    final = IndexData.load(folder)
    assert len(set(final.id_map.values())) == 1 and seen <= {0, 1, 2}
