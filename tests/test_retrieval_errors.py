"""Bad input and bad folders: RetrievalIndexError whose message names the problem."""
from __future__ import annotations

import pickle
import shutil

import faiss
import numpy as np
import pytest
import yaml

from viewfinder.errors import RetrievalIndexError, ViewfinderError
from viewfinder.retrieval import IndexData

DIM = 16


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((300, DIM)).astype(np.float32)


@pytest.fixture
def saved(x, tmp_path):
    idx = IndexData.build(x, [f"l{i}" for i in range(len(x))], index_type="HNSW32")
    idx.remove([1, 2])
    path = tmp_path / "idx"
    idx.save(path)
    return path


def test_error_type_is_a_viewfinder_error():
    assert issubclass(RetrievalIndexError, ViewfinderError)


@pytest.mark.parametrize("index_type", ["Flat", "IVF", "HNSW32"])
def test_wrong_dimension_on_append_and_search(x, index_type):
    idx = IndexData.build(x, ["a"] * len(x), index_type=index_type)
    with pytest.raises(RetrievalIndexError, match="dimension 8, the index has dimension 16"):
        idx.append(np.zeros((2, 8), np.float32), ["a", "b"])
    with pytest.raises(RetrievalIndexError, match="dimension 17, the index has dimension 16"):
        idx.search(np.zeros(17, np.float32), 3)
    with pytest.raises(RetrievalIndexError, match="1-D vector or a 2-D"):
        idx.search(np.zeros((2, 2, DIM), np.float32), 3)
    assert len(idx) == len(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_non_finite_vectors_rejected(x, bad):
    feats = x[:10].astype(np.float64)
    feats[4, 3] = bad
    with pytest.raises(RetrievalIndexError, match=r"NaN or inf .*rows \[4\]"):
        IndexData.build(feats, ["a"] * 10)
    idx = IndexData.build(x[:10], ["a"] * 10, index_type="Flat")
    with pytest.raises(RetrievalIndexError, match="NaN or inf"):
        idx.append(feats, ["a"] * 10)
    with pytest.raises(RetrievalIndexError, match=r"queries contain NaN or inf"):
        idx.search(feats, 1)
    assert len(idx) == 10


@pytest.mark.parametrize("empty", [np.zeros((0, DIM), np.float32), [], np.zeros((0,), np.float32)])
def test_empty_build_rejected(empty):
    with pytest.raises(RetrievalIndexError, match="empty"):
        IndexData.build(empty, [])


def test_bad_feature_types():
    with pytest.raises(RetrievalIndexError, match="numeric array"):
        IndexData.build(np.array([["a", "b"]]), ["x"])
    with pytest.raises(RetrievalIndexError, match="numeric"):
        IndexData.build([[1.0, 2.0], [3.0]], ["x", "y"])  # ragged


def test_label_count_and_type_mismatch(x):
    with pytest.raises(RetrievalIndexError, match="got 10 vectors but 9 labels"):
        IndexData.build(x[:10], ["a"] * 9)
    idx = IndexData.build(x[:10], ["a"] * 10, index_type="Flat")
    with pytest.raises(RetrievalIndexError, match="got 2 vectors but 3 labels"):
        idx.append(x[:2], ["a", "b", "c"])
    with pytest.raises(RetrievalIndexError, match="label 1 must be a string"):
        idx.append(x[:2], ["a", None])
    with pytest.raises(RetrievalIndexError, match="labels must be a list"):
        idx.append(x[:2], "ab")
    with pytest.raises(RetrievalIndexError, match="got 2 vectors but 1 metadata"):
        idx.append(x[:2], ["a", "b"], metadata=["p"])
    with pytest.raises(RetrievalIndexError, match="metadata entry 0 is not JSON"):
        idx.append(x[:2], ["a", "b"], metadata=[object(), None])
    assert len(idx) == 10 and idx.next_id == 10


def test_bad_types_metrics_and_params(x):
    with pytest.raises(RetrievalIndexError, match="index_type 'IVFPQ' is not supported"):
        IndexData.build(x, ["a"] * len(x), index_type="IVFPQ")
    with pytest.raises(RetrievalIndexError, match="metric_type 'cosine' is not supported"):
        IndexData.build(x, ["a"] * len(x), metric_type="cosine")
    with pytest.raises(RetrievalIndexError, match="hamming indexes are not supported"):
        IndexData.build(x, ["a"] * len(x), metric_type="hamming")
    with pytest.raises(RetrievalIndexError, match="ef_search must be a positive integer"):
        IndexData.build(x, ["a"] * len(x), ef_search=0)
    with pytest.raises(RetrievalIndexError, match="compact_threshold"):
        IndexData.build(x, ["a"] * len(x), compact_threshold=1.5)
    idx = IndexData.build(x[:5], ["a"] * 5, index_type="Flat")
    with pytest.raises(RetrievalIndexError, match="k must be a positive integer"):
        idx.search(x[:1], 0)


@pytest.mark.parametrize("index_type", ["Flat", "IVF", "HNSW32"])
def test_remove_unknown_ids_reports_them_and_changes_nothing(x, index_type):
    idx = IndexData.build(x, ["a"] * len(x), index_type=index_type)
    idx.remove([5])
    before = idx.search(x[:20], 5)[1]
    with pytest.raises(RetrievalIndexError, match=r"never added or already removed\): \[5, 999\]; nothing"):
        idx.remove([5, 6, 999])
    assert 6 in idx and len(idx) == len(x) - 1
    np.testing.assert_array_equal(idx.search(x[:20], 5)[1], before)
    assert idx.remove([6, 999], ignore_missing=True).tolist() == [6]
    with pytest.raises(RetrievalIndexError, match="ids must be integers"):
        idx.remove(["7"])
    with pytest.raises(RetrievalIndexError, match="ids must be integers"):
        idx.remove([7.5])


# ------------------------------------------------------------------ broken folders
def test_missing_folder_and_files(saved, tmp_path):
    with pytest.raises(RetrievalIndexError, match="index folder not found"):
        IndexData.load(tmp_path / "nope")
    (saved / "id_map.yaml").unlink()
    with pytest.raises(RetrievalIndexError, match=r"missing id_map.yaml \(or index_info.yaml\)"):
        IndexData.load(saved)
    (saved / "vector.index").unlink()
    with pytest.raises(RetrievalIndexError, match="missing vector.index"):
        IndexData.load(saved)


def test_truncated_vector_index(saved):
    data = (saved / "vector.index").read_bytes()
    (saved / "vector.index").write_bytes(data[: len(data) // 2])
    with pytest.raises(RetrievalIndexError, match=r"vector.index is truncated: \d+ bytes, id_map.yaml expects \d+"):
        IndexData.load(saved)


def test_truncated_vector_index_of_a_paddlex_folder(x, tmp_path):
    raw = faiss.IndexIDMap2(faiss.index_factory(DIM, "Flat", faiss.METRIC_INNER_PRODUCT))
    raw.add_with_ids(x, np.arange(len(x), dtype=np.int64))
    data = faiss.serialize_index(raw).tobytes()
    (tmp_path / "vector.index").write_bytes(data[:1000])
    (tmp_path / "id_map.yaml").write_text(yaml.dump(
        {"index_type": "Flat", "metric_type": "IP", "id_map": {i: "a" for i in range(len(x))}}))
    with pytest.raises(RetrievalIndexError, match="not a readable faiss index"):
        IndexData.load(tmp_path)


def test_vector_index_from_another_save(saved, x, tmp_path):
    other = tmp_path / "other"
    idx = IndexData.build(x + 1, [f"l{i}" for i in range(len(x))], index_type="HNSW32")
    idx.remove([1, 2])
    idx.save(other)
    shutil.copy(other / "vector.index", saved / "vector.index")
    with pytest.raises(RetrievalIndexError, match="do not belong together"):
        IndexData.load(saved)


def _edit_yaml(path, edit):
    doc = yaml.load((path / "id_map.yaml").read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    edit(doc)
    (path / "id_map.yaml").write_text(yaml.dump(doc, allow_unicode=True), encoding="utf-8")


def test_id_map_count_mismatch(saved):
    _edit_yaml(saved, lambda d: d["id_map"].pop(7))
    with pytest.raises(RetrievalIndexError, match=r"vector.index holds 300 vectors but the id map has 297 entries \+ 2 deleted"):
        IndexData.load(saved)


def test_id_set_mismatch(saved):
    def edit(d):
        d["id_map"][5000] = d["id_map"].pop(7)
    _edit_yaml(saved, edit)
    with pytest.raises(RetrievalIndexError, match=r"only in vector.index \[7\], only in the id map \[5000\]"):
        IndexData.load(saved)


@pytest.mark.parametrize("key,value,message", [
    ("metric_type", "cosine", "metric_type 'cosine' is not supported"),
    ("metric_type", "L2", "metric_type says L2 but vector.index uses IP"),
    ("index_type", "Flat", "index_type says Flat but vector.index holds a HNSW32 index"),
    ("index_type", "LSH", "index_type 'LSH' is not supported"),
    ("dim", 64, "dim says 64 but vector.index has dimension 16"),
    ("next_id", 3, "next_id 3 would reuse ids"),
    ("deleted_ids", [], "holds 300 vectors but the id map has 298 entries"),
    ("format_version", 99, "newer or different program"),
])
def test_inconsistent_yaml_values(saved, key, value, message):
    _edit_yaml(saved, lambda d: d.__setitem__(key, value))
    with pytest.raises(RetrievalIndexError, match=message):
        IndexData.load(saved)


def test_yaml_missing_keys_and_garbage(saved):
    _edit_yaml(saved, lambda d: d.pop("metric_type"))
    with pytest.raises(RetrievalIndexError, match="missing key\\(s\\) metric_type"):
        IndexData.load(saved)
    (saved / "id_map.yaml").write_text("index_type: [unclosed\n")
    with pytest.raises(RetrievalIndexError, match="not valid YAML"):
        IndexData.load(saved)
    (saved / "id_map.yaml").write_text("- just\n- a list\n")
    with pytest.raises(RetrievalIndexError, match="expected a mapping"):
        IndexData.load(saved)
    (saved / "id_map.yaml").write_text("index_type: HNSW32\nmetric_type: IP\nid_map: {a: b}\n")
    with pytest.raises(RetrievalIndexError, match="id_map key 'a' is not an integer id"):
        IndexData.load(saved)


# ------------------------------------------------------------------ broken blobs
def test_from_bytes_rejects_bad_blobs(x):
    blob = IndexData.build(x, ["a"] * len(x), index_type="Flat").to_bytes()
    with pytest.raises(RetrievalIndexError, match="truncated"):
        IndexData.from_bytes(blob[:-10])
    with pytest.raises(RetrievalIndexError, match="bad magic"):
        IndexData.from_bytes(b"hello world, not an index at all")
    flipped = bytearray(blob)
    flipped[-5] ^= 0xFF
    with pytest.raises(RetrievalIndexError, match="does not match its checksum"):
        IndexData.from_bytes(bytes(flipped))
    with pytest.raises(RetrievalIndexError, match="never unpickles"):
        IndexData.from_bytes(pickle.dumps((np.zeros(3, np.uint8), {"id_map": {}})))
    with pytest.raises(RetrievalIndexError, match="expects bytes"):
        IndexData.from_bytes("text")


def test_save_onto_a_file_and_bad_dim(x, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    idx = IndexData.build(x[:5], ["a"] * 5, index_type="Flat")
    with pytest.raises(RetrievalIndexError, match="exists and is not a folder"):
        idx.save(target)
    assert target.read_text() == "not a folder"
    with pytest.raises(RetrievalIndexError, match="dim must be a positive integer"):
        IndexData(0)
