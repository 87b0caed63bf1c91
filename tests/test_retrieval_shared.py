"""Index folders shared by several processes: the writer lock and version checks (no models)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from viewfinder.retrieval import FolderVersion, IndexData, IndexFolderGone, writer_lock
from viewfinder.errors import IndexNotFoundError
from viewfinder.serving.storage import IndexStore

REPO = Path(__file__).resolve().parents[1]
DIM = 16

# Each child appends one vector per cycle: load, append, save under the writer lock.
APPENDER = textwrap.dedent("""
    import os
    import sys
    import time
    import numpy as np
    from viewfinder.retrieval import IndexData, writer_lock
    folder, name, cycles, locked = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    open(f"{folder}.ready-{name}", "w").close()
    while not os.path.exists(f"{folder}.go"):  # all children start their cycles together
        time.sleep(0.01)
    for i in range(cycles):
        def cycle():
            idx = IndexData.load(folder)
            idx.append(rng.standard_normal((1, 16)).astype("float32"), [f"{name}-{i}"])
            idx.save(folder)
        if locked:
            with writer_lock(folder):
                cycle()
        else:
            cycle()
""")


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype("float32")


def _index(n: int = 4) -> IndexData:
    return IndexData.build(_vectors(n), [f"item{i}" for i in range(n)], index_type="Flat", metric_type="IP")


def _run_appenders(folder: Path, locked: bool, cycles: int = 12) -> dict[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for stale in (f"{folder}.go", *(f"{folder}.ready-{name}" for name in "abc")):
        Path(stale).unlink(missing_ok=True)
    children = [subprocess.Popen([sys.executable, "-c", APPENDER, str(folder), name, str(cycles), "1" if locked else "0"],
                                 cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) for name in ("a", "b", "c")]
    go = Path(f"{folder}.go")
    deadline = time.monotonic() + 120
    while not all(Path(f"{folder}.ready-{name}").exists() for name in "abc") and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
    return IndexData.load(folder).id_map


def test_writer_lock_keeps_every_append_from_three_processes(tmp_path):
    _index().save(tmp_path / "idx")
    id_map = _run_appenders(tmp_path / "idx", locked=True)
    appended = sorted(label for label in id_map.values() if not label.startswith("item"))
    assert appended == sorted(f"{name}-{i}" for name in "abc" for i in range(12))
    assert sorted(id_map) == list(range(4 + 36))  # ids handed out once each, none reused


def test_without_the_lock_appends_are_lost(tmp_path):
    """The failure the lock prevents (if this ever stops losing appends, the test above proves less)."""
    _index().save(tmp_path / "idx")
    lost = 0
    for attempt in range(3):
        id_map = _run_appenders(tmp_path / "idx", locked=False)
        lost = 4 + 36 * (attempt + 1) - len(id_map)
        if lost:
            break
    assert lost > 0


def test_writer_lock_waits_and_refuses_a_deleted_folder(tmp_path):
    folder = tmp_path / "idx"
    _index().save(folder)
    order: list[str] = []
    with writer_lock(folder):
        def second() -> None:
            try:
                with writer_lock(folder):
                    order.append("got it")
            except IndexFolderGone as exc:
                order.append(f"gone: {exc}")

        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        assert order == []  # still waiting
        os.replace(folder, tmp_path / "trash")  # what deleting an index does, under the lock
    waiter.join(10)
    assert len(order) == 1 and order[0].startswith("gone:") and "deleted" in order[0]
    with pytest.raises(IndexFolderGone, match="not found"):
        with writer_lock(tmp_path / "never-there"):
            pass


def test_folder_version_changes_with_every_save(tmp_path):
    folder = tmp_path / "idx"
    index = _index()
    index.save(folder)
    version = FolderVersion(folder)
    assert version.is_current()
    index.save(folder)  # same content, new file
    assert not version.is_current()
    again = FolderVersion(folder)
    assert again.is_current()
    os.replace(folder, tmp_path / "elsewhere")
    assert not again.is_current()
    with pytest.raises(IndexFolderGone):
        FolderVersion(folder)


# ---------------------------------------------------------------- two server replicas' stores on one folder
def test_two_stores_on_one_data_dir_see_each_others_changes(tmp_path):
    first, second = IndexStore(tmp_path), IndexStore(tmp_path)
    key = first.create(_index(4))
    assert len(second.get(key)) == 4

    first.update(key, lambda index: index.append(_vectors(1, seed=1), ["from-first"]))
    assert second.get(key).id_map[4] == "from-first"  # reloaded: another replica saved

    second.update(key, lambda index: index.append(_vectors(1, seed=2), ["from-second"]))
    assert first.get(key).id_map == {**{i: f"item{i}" for i in range(4)}, 4: "from-first", 5: "from-second"}

    first.update(key, lambda index: index.remove([0]))
    new_ids, after = second.update(key, lambda index: index.append(_vectors(1, seed=3), ["third"]))
    assert list(new_ids) == [6] and 0 not in after.id_map and after.id_map[6] == "third"  # started from the disk

    served = first.get(key)
    assert first.get(key) is served  # unchanged on disk: no reload
    assert first.describe(key)["size"] == 6

    kept = first.create(_index(2))
    second.delete(key)
    assert first.keys() == [kept] and key not in first._served  # listing forgets what another replica deleted
    with pytest.raises(IndexNotFoundError):
        first.get(key)
    with pytest.raises(IndexNotFoundError):
        first.update(key, lambda index: index.remove([1]))
    with pytest.raises(IndexNotFoundError):
        first.delete(key)
    first.delete(kept)
    assert first.keys() == [] and list(first.list()) == []


def test_store_sees_changes_made_by_the_cli(tmp_path):
    from click.testing import CliRunner

    from viewfinder.cli import cli

    store = IndexStore(tmp_path)
    key = store.create(_index(4))
    result = CliRunner().invoke(cli, ["index", "remove", "--index_dir", str(tmp_path / key), "--ids", "1,2"])
    assert result.exit_code == 0, result.output
    assert sorted(store.get(key).id_map) == [0, 3]
    missing = CliRunner().invoke(cli, ["index", "remove", "--index_dir", str(tmp_path / "nope"), "--ids", "1"])
    assert missing.exit_code != 0 and "index folder not found" in missing.output
    assert "Traceback" not in missing.output


def test_folder_version_without_file_descriptors(tmp_path, monkeypatch):
    """Out of descriptors (EMFILE), the version falls back to stat: still right, never an error."""
    import errno

    from viewfinder.retrieval import shared_folder

    folder = tmp_path / "idx"
    index = _index()
    index.save(folder)
    real_open = os.open

    def no_descriptors(path, *args, **kwargs):
        if str(path).endswith("vector.index"):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(shared_folder.os, "open", no_descriptors)
    version = FolderVersion(folder)
    assert not version.held_open and version.is_current()
    index.append(_vectors(1, seed=5), ["one more"])
    index.save(folder)
    assert not version.is_current()

    store = IndexStore(tmp_path / "store")
    key = store.create(_index(2))
    other = IndexStore(tmp_path / "store")
    other.update(key, lambda idx: idx.append(_vectors(1, seed=6), ["x"]))
    assert len(store.get(key)) == 3


def test_serve_raises_the_open_file_soft_limit():
    import resource

    from viewfinder.serving.server import raise_open_file_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
