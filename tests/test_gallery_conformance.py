"""One suite, both gallery backends: a faiss folder and Milvus (Milvus Lite embedded in a tmp file).

Every test gets a location string and uses only the backend-neutral API (``viewfinder.retrieval``:
write/open/update/delete/info by location, and the gallery interface), so the two backends are
held to the same semantics: ids, removal by id and by label, search order and thresholds, refusals.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from viewfinder.errors import ConfigError, RetrievalIndexError
from viewfinder.retrieval import (
    IndexData,
    check_feature_model,
    delete_gallery,
    gallery_info,
    list_galleries,
    migrate,
    open_gallery,
    update_gallery,
    write_gallery,
)

DIM = 16
MODEL = {"model_name": "MobileNetV2_x1_0", "feature_dim": DIM}
_names = itertools.count()


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory) -> str:
    # One Milvus Lite file for the module (it runs in this process); a collection per test.
    return str(tmp_path_factory.mktemp("milvus") / "galleries.db")


@pytest.fixture(params=["faiss", "milvus"])
def where(request, tmp_path, lite_file) -> str:
    if request.param == "faiss":
        return str(tmp_path / f"gallery{next(_names)}")
    return f"milvus://{lite_file}?collection=g{next(_names)}"


def built(where: str, n: int = 12, index_type: str = "Flat", metric_type: str = "IP", seed: int = 0):
    x = unit(n, seed)
    source = IndexData.build(x, [f"L{i % 4}" for i in range(n)], index_type=index_type, metric_type=metric_type,
                             metadata=[{"path": f"g/{i}.jpg"} if i % 3 else f"s{i}" for i in range(n)])
    source.feature_model = dict(MODEL)
    write_gallery(source, where)
    return x, open_gallery(where)


@pytest.mark.parametrize("index_type", ["Flat", "IVF", "HNSW32"])
def test_build_append_remove_search_info_delete(where, index_type):
    x, g = built(where, index_type=index_type)
    assert (len(g), g.next_id, g.dim, g.index_type, g.metric_type) == (12, 12, DIM, index_type, "IP")
    assert g.id_map == {i: f"L{i % 4}" for i in range(12)}
    assert g.get_metadata([1, 3, 99]) == [{"path": "g/1.jpg"}, "s3", None]
    assert g.feature_model == MODEL

    new, after = update_gallery(where, lambda gallery: gallery.append(unit(3, 1), ["a", "b", "c"],
                                                                      metadata=[None, {"k": [1, 2]}, "m"]))
    assert new.tolist() == [12, 13, 14] and new.dtype == np.int64 and len(after) == 15
    removed, _ = update_gallery(where, lambda gallery: gallery.remove([14, 0]))
    assert removed.tolist() == [0, 14]
    # unknown ids: an error naming them, and nothing removed
    with pytest.raises(RetrievalIndexError, match=r"\[0\].*nothing was removed"):
        update_gallery(where, lambda gallery: gallery.remove([1, 0]))
    assert len(open_gallery(where)) == 13 and 1 in open_gallery(where).id_map
    # by label: every item with it; an unknown label is an error and removes nothing
    by_label, _ = update_gallery(where, lambda gallery: gallery.remove_labels(["L1"]))
    assert by_label.tolist() == [1, 5, 9]
    with pytest.raises(RetrievalIndexError, match="no item has the label.*nope"):
        update_gallery(where, lambda gallery: gallery.remove_labels(["L2", "nope"]))
    assert sorted(open_gallery(where).id_map) == [2, 3, 4, 6, 7, 8, 10, 11, 12, 13]

    # reopened: same ids, and the counter never hands out a removed id again (14 was the largest)
    again = open_gallery(where)
    assert again.next_id == 15 and again.get_labels([13, 14, 12]) == ["b", None, "a"]
    assert again.get_metadata([13]) == [{"k": [1, 2]}]
    assert update_gallery(where, lambda gallery: gallery.append(unit(1, 2), ["d"]))[0].tolist() == [15]

    scores, ids, labels = open_gallery(where).search(x[2:4], k=3)
    assert ids[:, 0].tolist() == [2, 3] and labels[0][0] == "L2"
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    info = gallery_info(where)
    assert (info["size"], info["next_id"], info["index_type"], info["metric_type"], info["dim"]) == \
        (11, 16, index_type, "IP", DIM)
    assert info["feature_model"] == MODEL and info["backend"] in ("faiss", "milvus")

    delete_gallery(where)
    with pytest.raises(RetrievalIndexError):
        open_gallery(where)


@pytest.mark.parametrize("metric_type", ["IP", "L2"])
def test_ordering_thresholds_and_empty_slots(where, metric_type):
    x, g = built(where, n=6, metric_type=metric_type)
    scores, ids, labels = g.search(x[0] * 0.9 + x[1] * 0.1, k=10)  # a 1-D query is one query
    live = ids[0] >= 0
    assert live.sum() == 6 and ids[0, 0] == 0
    ordered = scores[0, live]
    if metric_type == "IP":  # similarities, best (highest) first
        assert g.higher_is_better and np.all(np.diff(ordered) <= 1e-6)
        assert g.passes(0.5, 0.4) and not g.passes(0.3, 0.4) and g.is_better(0.9, 0.8)
    else:  # squared distances, best (lowest) first
        assert not g.higher_is_better and np.all(np.diff(ordered) >= -1e-6)
        assert g.passes(0.3, 0.4) and not g.passes(0.5, 0.4) and g.is_better(0.1, 0.2)
        assert scores[0, 0] == pytest.approx(float(((x[0] - (x[0] * 0.9 + x[1] * 0.1)) ** 2).sum()), abs=1e-5)
    # fewer live items than k: id -1, label None, the worst score
    assert ids[0, 6:].tolist() == [-1] * 4 and labels[0][6:] == [None] * 4
    assert np.all(scores[0, 6:] == g.worst_score) and not g.passes(None, 0.0)


def test_empty_results_after_removing_everything(where):
    x, g = built(where, n=4)
    update_gallery(where, lambda gallery: gallery.remove_labels(["L0", "L1", "L2", "L3"]))
    g = open_gallery(where)
    scores, ids, labels = g.search(x[:2], k=3)
    assert len(g) == 0 and ids.tolist() == [[-1] * 3] * 2 and labels == [[None] * 3] * 2
    assert np.all(np.isneginf(scores))
    assert g.next_id == 4 and g.id_map == {}


def test_wrong_dimension_and_wrong_model_are_refused(where):
    x, g = built(where, n=4)
    with pytest.raises(RetrievalIndexError, match="queries have dimension 8, the index has dimension 16"):
        g.search(np.ones((1, 8), np.float32))
    with pytest.raises(RetrievalIndexError, match="dimension 8"):
        g.append(np.ones((1, 8), np.float32), ["x"])
    with pytest.raises(ConfigError, match="holds 16-d vectors but PP-LCNetV2 gives 512-d"):
        check_feature_model(g, {"model_name": "PP-LCNetV2", "feature_dim": 512})
    with pytest.raises(ConfigError, match="built with MobileNetV2_x1_0 features but this pipeline recognises with"):
        check_feature_model(g, {"model_name": "Other16", "feature_dim": DIM})
    check_feature_model(g, dict(MODEL))  # the same model passes
    assert len(open_gallery(where)) == 4


def test_migrate_keeps_ids_labels_metadata_and_counter(where, tmp_path, lite_file):
    x, g = built(where, n=8, index_type="HNSW32")
    update_gallery(where, lambda gallery: gallery.remove([7, 2]))
    other = str(tmp_path / "copy") if where.startswith("milvus") else f"milvus://{lite_file}?collection=c{next(_names)}"
    copy = migrate(where, other)
    assert copy.id_map == open_gallery(where).id_map and copy.next_id == 8 and copy.feature_model == MODEL
    assert copy.index_type == "HNSW32" and open_gallery(other).get_metadata([3, 1]) == ["s3", {"path": "g/1.jpg"}]
    assert update_gallery(other, lambda gallery: gallery.append(x[:1], ["new"]))[0].tolist() == [8]
    with pytest.raises(RetrievalIndexError, match="already holds a gallery"):
        migrate(where, other)
    migrate(where, other, overwrite=True)
    assert len(open_gallery(other)) == 6


def test_faiss_flat_and_milvus_flat_agree(tmp_path, lite_file):
    x = unit(300, 5)
    labels = [f"c{i % 37}" for i in range(300)]
    for metric_type in ("IP", "L2"):
        faiss_index = IndexData.build(x, labels, index_type="Flat", metric_type=metric_type)
        milvus = write_gallery(faiss_index, f"milvus://{lite_file}?collection=agree_{metric_type}")
        queries = unit(40, 6)
        s1, i1, l1 = faiss_index.search(queries, k=5)
        s2, i2, l2 = milvus.search(queries, k=5)
        assert [row[0] for row in l1] == [row[0] for row in l2]
        assert np.array_equal(i1[:, 0], i2[:, 0])
        assert np.abs(s1 - s2).max() < 1e-5


def test_list_galleries(tmp_path, lite_file):
    one = IndexData.build(unit(2, 0), ["a", "b"], index_type="Flat")
    write_gallery(one, tmp_path / "store" / "first")
    (tmp_path / "store" / "not-an-index").mkdir()
    assert list_galleries(str(tmp_path / "store")) == [str(tmp_path / "store" / "first")]
    store = f"milvus://{tmp_path}/listed.db"
    write_gallery(one, f"{store}?collection=zeta")
    write_gallery(one, f"{store}?collection=alpha")
    assert list_galleries(store) == [f"{store}?collection=alpha", f"{store}?collection=zeta"]


@pytest.mark.parametrize("index_type, milvus_type", [("HNSW32", "HNSW"), ("IVF", "IVF_FLAT"), ("Flat", "FLAT")])
def test_milvus_indexes_are_built_like_the_faiss_defaults(lite_file, index_type, milvus_type):
    x = unit(3000, 7)
    faiss_index = IndexData.build(x, ["a"] * 3000, index_type=index_type)
    milvus = write_gallery(faiss_index, f"milvus://{lite_file}?collection=kind_{index_type}")
    described = milvus.info()["milvus_index"]
    params = {"HNSW32": {"M": 32, "efConstruction": 80}, "IVF": {"nlist": faiss_index.nlist}}.get(index_type)
    assert described["index_type"] == milvus_type and described.get("params") == params
    if index_type == "IVF":
        assert milvus.info()["search_params"] == {"nprobe": faiss_index.nprobe}
    queries = unit(200, 8)
    truth = IndexData.build(x, ["a"] * 3000, index_type="Flat").search(queries, 1)[1][:, 0]
    recall = {name: float(np.mean(g.search(queries, 5)[1][:, 0] == truth)) for name, g in
              (("faiss", faiss_index), ("milvus", milvus))}
    assert recall["milvus"] >= recall["faiss"] - 0.03, recall
