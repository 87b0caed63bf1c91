"""PaddleClas-era index folders (vector.index + id_map.pkl) load through a restricted unpickler."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from viewfinder.errors import RetrievalIndexError
from viewfinder.retrieval import IndexData
from viewfinder.retrieval.legacy_pickle import safe_load_id_map, split_entry

DIM = 16


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def paddleclas_folder(folder: Path, id_map: dict, factory: str = "HNSW32",
                      metric: int = faiss.METRIC_INNER_PRODUCT) -> np.ndarray:
    """A folder as PaddleClas's build_gallery.py writes it: IndexIDMap2(index_factory(...)) + pickled id map."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = _vectors(len(id_map))
    index = faiss.IndexIDMap2(faiss.index_factory(DIM, factory, metric))
    index.train(vectors)
    index.add_with_ids(vectors, np.array([int(k) for k in id_map], dtype=np.int64))
    faiss.write_index(index, str(folder / "vector.index"))
    with open(folder / "id_map.pkl", "wb") as fh:
        pickle.dump(id_map, fh)
    return vectors


def test_paddleclas_gallery_lines_become_labels_and_paths(tmp_path):
    # PaddleClas keys by numpy int64 (np.arange) and stores the whole gallery line
    id_map = {np.int64(i): f"gallery/{i}.jpg\t{'红牛' if i % 2 else 'cola'}" for i in range(6)}
    vectors = paddleclas_folder(tmp_path / "idx", id_map)
    index = IndexData.load(tmp_path / "idx")
    assert (index.index_type, index.metric_type, index.dim, len(index)) == ("HNSW32", "IP", DIM, 6)
    assert index.id_map == {i: ("红牛" if i % 2 else "cola") for i in range(6)}
    assert index.metadata[3] == {"path": "gallery/3.jpg"}
    scores, ids, labels = index.search(vectors[:2], 1)
    assert ids[:, 0].tolist() == [0, 1] and labels == [["cola"], ["红牛"]]


def test_paddlex_beta_label_only_map_flat_l2_and_ivf(tmp_path):
    paddleclas_folder(tmp_path / "flat", {0: "a", 1: "b", 2: "c"}, "Flat", faiss.METRIC_L2)
    flat = IndexData.load(tmp_path / "flat")
    assert (flat.index_type, flat.metric_type, flat.id_map) == ("Flat", "L2", {0: "a", 1: "b", 2: "c"})
    ivf_map = {i: f"label{i % 4}" for i in range(64)}
    paddleclas_folder(tmp_path / "ivf", ivf_map, "IVF8,Flat")
    ivf = IndexData.load(tmp_path / "ivf")
    assert ivf.index_type == "IVF" and len(ivf) == 64


def test_a_loaded_folder_saves_as_id_map_yaml_and_reads_back(tmp_path):
    paddleclas_folder(tmp_path / "idx", {0: "a", 1: "b"}, "Flat")
    index = IndexData.load(tmp_path / "idx")
    index.append(_vectors(1, seed=3), ["c"])
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "id_map.yaml").is_file()
    assert IndexData.load(tmp_path / "idx").id_map == {0: "a", 1: "b", 2: "c"}  # the YAML wins from now on


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", [
    lambda marker: {0: _RunsACommand(marker)},
    lambda marker: _RunsACommand(marker),
    lambda marker: {0: "a", 1: _RunsACommand(marker)},
])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, payload):
    marker = tmp_path / "pwned"
    paddleclas_folder(tmp_path / "idx", {0: "a", 1: "b"}, "Flat")
    (tmp_path / "idx" / "id_map.pkl").write_bytes(pickle.dumps(payload(marker)))
    with pytest.raises(RetrievalIndexError, match=r"was refused: global (posix|os)\.system is not allowed"):
        IndexData.load(tmp_path / "idx")
    assert not marker.exists()


class _ObjectDtype:
    def __reduce__(self):
        return np.dtype, ("O8", False, True)


@pytest.mark.parametrize("content, protocol, message", [
    ({0: "a", 1: {"nested": 1}}, None, "is a dict, not a string"),
    ([1, 2], None, "holds a list, not a dict"),
    ({"zero": "a"}, None, "is not an integer"),
    ({0: "a", 1: b"bytes"}, None, "not a string"),
    ({0: "a", 1: {1, 2}}, None, "is a set, not a string"),
    ({0: "a", 1: {1, 2}}, 2, "global builtins.set is not allowed"),  # protocol 2 names the class
    ({0: "a", 1: np.array([1, 2])}, None, "is not allowed"),  # arrays rebuild through other numpy globals
    ({0: _ObjectDtype()}, None, "numpy dtype object is not allowed"),
    ({np.float64(1.0): "a"}, None, "is not an integer"),  # numbers pass the unpickler, a float is no id
])
def test_other_content_is_refused(tmp_path, content, protocol, message):
    path = tmp_path / "id_map.pkl"
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    with pytest.raises(RetrievalIndexError, match=message):
        safe_load_id_map(path)


def test_a_damaged_file_is_named_so(tmp_path):
    path = tmp_path / "id_map.pkl"
    path.write_bytes(b"not a pickle")
    with pytest.raises(RetrievalIndexError, match="not a readable id map pickle"):
        safe_load_id_map(path)
    path.write_bytes(pickle.dumps({0: "a"})[:-3])
    with pytest.raises(RetrievalIndexError, match="not a readable id map pickle"):
        safe_load_id_map(path)


def test_split_entry_forms():
    assert split_entry("gallery/x.jpg\t红牛 强化型") == ("gallery/x.jpg", "红牛 强化型")
    assert split_entry("gallery/x.jpg cola") == ("gallery/x.jpg", "cola")
    assert split_entry("Red Bull") == (None, "Red Bull")


def test_cli_index_info_reads_a_paddleclas_folder(tmp_path):
    import json

    from viewfinder.cli import cli

    paddleclas_folder(tmp_path / "idx", {0: "a", 1: "b"}, "Flat")
    result = CliRunner().invoke(cli, ["index", "info", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["size"] == 2 and "id_map.pkl" in info["files"]
    (tmp_path / "idx" / "id_map.pkl").write_bytes(pickle.dumps({0: _RunsACommand(tmp_path / "m")}))
    refused = CliRunner().invoke(cli, ["index", "info", str(tmp_path / "idx")])
    assert refused.exit_code != 0 and "is not allowed" in refused.stderr and not (tmp_path / "m").exists()
