"""IndexData behaviour for every index type x metric: build/append/remove/search/save/load."""
from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest
import yaml

from viewfinder.retrieval import IndexData, VectorIndex, auto_nlist, index_info_command, set_num_threads
from viewfinder.retrieval.threads import faiss_threads, get_num_threads

TYPES = ["Flat", "IVF", "HNSW32"]
METRICS = ["IP", "L2"]
DIM = 32


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Clustered unit vectors (40 centres) plus queries that are noisy copies of gallery items."""
    rng = np.random.default_rng(7)
    centres = unit(rng.standard_normal((40, DIM)))
    owner = rng.integers(0, 40, 2000)
    x = unit(centres[owner] + 0.6 / np.sqrt(DIM) * rng.standard_normal((2000, DIM)))
    src = rng.choice(2000, 100, replace=False)
    q = unit(x[src] + 0.05 / np.sqrt(DIM) * rng.standard_normal((100, DIM)))
    return {"x": x, "labels": np.array([f"c{o}" for o in owner]), "q": q, "src": src}


def brute_force(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, metric: str):
    """The exact answer with numpy: (scores, ids) best-first."""
    if metric == "IP":
        s = q @ x.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), ids[order]


@pytest.mark.parametrize("index_type", TYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_round_trip(data, tmp_path, index_type, metric):
    x, labels, q = data["x"], data["labels"], data["q"]
    idx = IndexData.build(x[:1500], list(labels[:1500]), index_type=index_type, metric_type=metric,
                          metadata=[f"img/{i}.jpg" for i in range(1500)])
    assert (len(idx), idx.dim, idx.index_type, idx.metric_type) == (1500, DIM, index_type, metric)
    assert idx.id_map == {i: labels[i] for i in range(1500)}

    new = idx.append(x[1500:], list(labels[1500:]), metadata=[{"box": [i, 0, 1, 1]} for i in range(500)])
    assert new.dtype == np.int64 and new.tolist() == list(range(1500, 2000))

    removed = idx.remove([3, 1600, 42])
    assert removed.tolist() == [3, 42, 1600]
    assert len(idx) == 1997 and 3 not in idx.id_map and 1600 not in idx
    assert idx.next_id == 2000
    more = idx.append(x[:2], ["again", "again"])
    assert more.tolist() == [2000, 2001]  # removed ids are never reused

    scores, ids, labs = idx.search(q, 10)
    assert scores.shape == ids.shape == (100, 10) and scores.dtype == np.float32 and ids.dtype == np.int64
    assert not np.isin(ids, [3, 42, 1600]).any()
    id_map = idx.id_map
    assert all(lab == id_map[i] for row_i, row_l in zip(ids.tolist(), labs) for i, lab in zip(row_i, row_l))
    # best-first for the metric
    assert (np.diff(scores, axis=1) <= 1e-6).all() if metric == "IP" else (np.diff(scores, axis=1) >= -1e-6).all()

    path = tmp_path / "index"
    idx.save(path)
    assert (path / "vector.index").is_file() and (path / "id_map.yaml").is_file()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = yaml.load((path / "id_map.yaml").read_text(encoding="utf-8"), Loader=loader)  # plain YAML to PaddleX
    assert doc["index_type"] == index_type and doc["metric_type"] == metric and doc["id_map"][0] == labels[0]
    back = IndexData.load(path)
    assert back.id_map == idx.id_map and back.metadata == idx.metadata
    assert back.get_metadata([10, 1501, 3]) == ["img/10.jpg", {"box": [1, 0, 1, 1]}, None]
    assert back.next_id == 2002 and back.append(x[:1], ["x"]).tolist() == [2002]
    back.remove([2002])
    s2, i2, l2 = back.search(q, 10)
    np.testing.assert_array_equal(i2, ids)
    np.testing.assert_allclose(s2, scores, rtol=1e-5, atol=1e-5)
    assert l2 == labs

    blob = idx.to_bytes()
    assert isinstance(blob, bytes) and blob[:8] == b"VFINDEX1"  # our header, not a pickle
    again = IndexData.from_bytes(blob)
    assert again.id_map == idx.id_map and again.metadata == idx.metadata
    np.testing.assert_array_equal(again.search(q, 10)[1], ids)


@pytest.mark.parametrize("index_type", TYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_search_matches_brute_force_or_finds_source(data, index_type, metric):
    x, q, src = data["x"], data["q"], data["src"]
    idx = IndexData.build(x, [str(i) for i in range(len(x))], index_type=index_type, metric_type=metric)
    scores, ids, labels = idx.search(q, 5)
    exact_s, exact_i = brute_force(x, np.arange(len(x)), q, 5, metric)
    if index_type == "Flat":
        np.testing.assert_array_equal(ids, exact_i)
        np.testing.assert_allclose(scores, exact_s, rtol=1e-4, atol=1e-4)
    else:  # approximate, but on clustered data the noisy copy's source must come first
        np.testing.assert_array_equal(ids[:, 0], src)
        recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids.tolist(), exact_i.tolist())])
        assert recall >= 0.95
    assert labels[0][0] == str(ids[0, 0])


@pytest.mark.parametrize("index_type", TYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_removed_ids_never_returned(data, tmp_path, index_type, metric):
    x = data["x"][:600]
    idx = IndexData.build(x, ["a"] * 600, index_type=index_type, metric_type=metric)
    gone = np.arange(0, 600, 4)  # 25% removed: below the HNSW compaction threshold
    idx.remove(gone)
    assert idx.deleted_count == (150 if index_type == "HNSW32" else 0)
    live_ids = np.setdiff1d(np.arange(600), gone)
    for index in (idx, _reload(idx, tmp_path)):
        scores, ids, _ = index.search(x[gone], 20)
        assert not np.isin(ids, gone).any()
        assert (ids >= 0).all(), "k valid results must come back despite tombstones"
        _, exact = brute_force(x[live_ids], live_ids, x[gone], 1, metric)
        assert (ids[:, 0] == exact[:, 0]).mean() >= 0.97


def _reload(idx: IndexData, tmp_path) -> IndexData:
    path = tmp_path / f"reload-{idx.index_type}-{idx.metric_type}"
    idx.save(path)
    return IndexData.load(path)


@pytest.mark.parametrize("metric", METRICS)
def test_hnsw_heavy_deletion_without_compaction_still_fills_k(data, metric):
    x = data["x"][:1000]
    idx = IndexData.build(x, ["a"] * 1000, index_type="HNSW32", metric_type=metric, compact_threshold=1.0)
    gone = np.arange(1000)[np.arange(1000) % 10 != 0]  # 90% tombstoned, graph untouched
    idx.remove(gone)
    assert len(idx) == 100 and idx.ntotal == 1000
    _, ids, labels = idx.search(x[:50], 30)
    assert (ids >= 0).all() and not np.isin(ids, gone).any()
    assert all(lab == "a" for row in labels for lab in row)


@pytest.mark.parametrize("metric", METRICS)
def test_hnsw_compacts_past_threshold_and_ids_stay_stable(data, tmp_path, metric):
    x = data["x"][:1000]
    idx = IndexData.build(x, [f"l{i}" for i in range(1000)], index_type="HNSW32", metric_type=metric)
    idx.remove(np.arange(250))  # 25%: tombstones only
    assert (idx.deleted_count, idx.ntotal) == (250, 1000)
    idx.remove(np.arange(250, 400))  # 40% > 0.3: graph rebuilt without them
    assert (idx.deleted_count, idx.ntotal, len(idx)) == (0, 600, 600)
    assert idx.id_map == {i: f"l{i}" for i in range(400, 1000)}
    _, ids, _ = idx.search(x[400:500], 1)
    assert ids[:, 0].tolist() == list(range(400, 500))  # same ids as before compaction
    assert idx.append(x[:1], ["new"]).tolist() == [1000]
    back = _reload(idx, tmp_path)
    _, ids, _ = back.search(x[:400], 5)
    assert not np.isin(ids, np.arange(400)[1:]).any()
    assert ids[0, 0] == 1000  # x[0] re-added under a new id


@pytest.mark.parametrize("index_type", TYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_small_and_empty_indexes(index_type, metric):
    rng = np.random.default_rng(1)
    x = unit(rng.standard_normal((3, 8)))
    idx = IndexData.build(x, ["a", "b", "c"], index_type=index_type, metric_type=metric)  # PaddleX IVF fails < 8
    scores, ids, labels = idx.search(x[1], 5)  # 1-D query = one query; k larger than the index
    assert ids.shape == (1, 5) and ids[0, 0] == 1 and labels[0][0] == "b"
    assert (ids[0, 3:] == -1).all() and labels[0][3:] == [None, None]
    empty = -np.inf if metric == "IP" else np.inf
    assert (scores[0, 3:] == empty).all()
    idx.remove([0, 1, 2])
    assert len(idx) == 0
    scores, ids, labels = idx.search(x, 2)
    assert (ids == -1).all() and labels == [[None, None]] * 3
    assert idx.append(x[:1], ["d"]).tolist() == [3]
    assert idx.search(x[0], 1)[1][0, 0] == 3


def test_ivf_grows_its_lists_as_the_gallery_grows(data):
    x = data["x"]
    idx = IndexData.build(x[:100], ["a"] * 100, index_type="IVF")
    assert idx.nlist == auto_nlist(100) == 2 and idx.nprobe == 2
    for start in range(100, 2000, 300):
        idx.append(x[start:start + 300], ["a"] * len(x[start:start + 300]))
    assert idx.nlist == auto_nlist(len(idx)) >= 16  # retrained, not stuck at 2 lists
    assert idx.nprobe >= 16
    _, ids, _ = idx.search(data["q"], 1)
    np.testing.assert_array_equal(ids[:, 0], data["src"])
    assert auto_nlist(7) == 1 and auto_nlist(100_000) == 1264


def test_ivf_fixed_nlist_and_search_params(data):
    x = data["x"]
    idx = IndexData.build(x, ["a"] * len(x), index_type="ivf", nlist=20, nprobe=1)
    assert (idx.index_type, idx.nlist, idx.nprobe) == ("IVF", 20, 1)
    _, wide, _ = idx.search(data["q"], 1, nprobe=20)  # per-call override: exhaustive
    np.testing.assert_array_equal(wide[:, 0], data["src"])
    idx.set_search_params(nprobe=20)
    assert idx.nprobe == 20
    idx.set_search_params(nprobe=1)
    scores, ids, _ = idx.search(data["q"][:5], 300)  # one list cannot hold 300: probes widen
    assert (ids >= 0).all() and all(len(set(row)) == 300 for row in ids.tolist())
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_hnsw_speed_knob_and_spellings(data):
    x = data["x"][:500]
    for spelling in ("hnsw", "HNSW32", "Hnsw32"):
        assert IndexData.build(x[:10], ["a"] * 10, index_type=spelling, metric_type="ip").index_type == "HNSW32"
    idx = IndexData.build(x, ["a"] * 500, index_type="HNSW32", ef_construction=40, ef_search=16)
    assert idx.ef_search == 16 and idx.info()["params"]["ef_construction"] == 40
    _, ids, _ = idx.search(x[:20], 3, ef_search=200)
    assert ids[:, 0].tolist() == list(range(20))
    idx.set_search_params(ef_search=64)
    assert idx.ef_search == 64 and idx.index.ntotal == 500


@pytest.mark.parametrize("metric", METRICS)
def test_threshold_helpers_follow_the_metric(metric):
    idx = IndexData(4, "Flat", metric)
    if metric == "IP":
        assert idx.higher_is_better and idx.passes(0.8, 0.5) and not idx.passes(0.4, 0.5)
        assert idx.is_better(0.9, 0.8) and idx.worst_score == -np.inf
    else:
        assert not idx.higher_is_better and idx.passes(0.4, 0.5) and not idx.passes(0.8, 0.5)
        assert idx.is_better(0.1, 0.2) and idx.worst_score == np.inf
    assert not idx.passes(None, 0.5) and not idx.passes(float("nan"), 0.5)


def test_info_and_cli_helper(data, tmp_path):
    idx = VectorIndex.build(data["x"][:300], ["a", "b", "c"] * 100, index_type="HNSW32", metric_type="L2",
                            metadata=["p"] * 300)
    idx.remove([0, 1])
    info = idx.info()
    assert info["index_type"] == "HNSW32" and info["metric_type"] == "L2" and info["dim"] == DIM
    assert (info["size"], info["ntotal"], info["deleted"], info["labels"]) == (298, 300, 2, 3)
    assert "lower is better" in info["score"]
    idx.save(tmp_path / "i")
    out = index_info_command(tmp_path / "i")
    assert out["size"] == 298 and out["files"]["vector.index"] > 0 and "id_map.yaml" in out["files"]
    import json
    json.dumps(out)


@pytest.mark.parametrize("index_type,factory", [("Flat", "Flat"), ("IVF", "IVF4,Flat"), ("HNSW32", "HNSW32")])
@pytest.mark.parametrize("yaml_name", ["id_map.yaml", "index_info.yaml"])
def test_loads_paddlex_folders(data, tmp_path, index_type, factory, yaml_name):
    """A folder laid out exactly as PaddleX's FaissBuilder/IndexData.save writes it."""
    x = data["x"][:400]
    raw = faiss.IndexIDMap2(faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT))
    if not raw.is_trained:
        raw.train(x)
    raw.add_with_ids(x, np.arange(400, dtype=np.int64))
    faiss.write_index(raw, str(tmp_path / "vector.index"))
    info = {"index_type": index_type, "metric_type": "IP", "id_map": {i: f"lab{i % 5}" for i in range(400)}}
    with open(tmp_path / yaml_name, "w", encoding="utf-8") as fh:
        yaml.dump(info, fh, allow_unicode=True)  # PaddleX's call
    idx = IndexData.load(tmp_path)
    assert len(idx) == 400 and idx.id_map[7] == "lab2" and idx.next_id == 400
    _, ids, labels = idx.search(x[:20], 1)
    assert ids[:, 0].tolist() == list(range(20)) and labels[3] == ["lab3"]
    idx.remove([5, 6])  # PaddleX's IDMap2-over-IVF breaks here; ours keeps working
    _, ids, _ = idx.search(x[:20], 1)
    assert ids[:, 0].tolist() == [i for i in range(20) if i not in (5, 6)] or \
        (not np.isin(ids, [5, 6]).any() and (ids[[0, 1, 2, 3, 4, 7]] >= 0).all())
    assert idx.append(x[:1], ["n"]).tolist() == [400]


def test_concurrent_searches_with_a_writer(data):
    x = data["x"]
    idx = IndexData.build(x[:1000], ["a"] * 1000, index_type="HNSW32")
    removed: set[int] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                snapshot = set(removed)  # removed before this search started
                _, ids, labels = idx.search(x[:32], 5)
                assert not np.isin(ids, list(snapshot)).any()
                assert all(lab is not None for row in labels for lab in row)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(0, 400, 20):
        idx.remove(np.arange(start, start + 20))
        removed.update(range(start, start + 20))
        idx.append(x[1000 + start:1000 + start + 20], ["b"] * 20)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(idx) == 1000 and idx.next_id == 1400


def test_thread_cap_applies_in_every_calling_thread(data):
    """faiss's OpenMP setting is per thread: a worker thread must be capped too (PaddleClas #3204)."""
    idx = IndexData.build(data["x"][:100], ["a"] * 100, index_type="Flat")
    seen: list[int] = []

    def worker() -> None:
        idx.search(data["q"], 3)
        seen.append(faiss.omp_get_max_threads())
        with faiss_threads(2):
            seen.append(faiss.omp_get_max_threads())
        seen.append(faiss.omp_get_max_threads())

    before = get_num_threads()
    try:
        set_num_threads(1)
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    finally:
        set_num_threads(before)
    assert seen == [1, 2, 1]


@pytest.mark.parametrize("kind", ["Flat", "HNSW32", "IVF"])
@pytest.mark.parametrize("metric", ["IP", "L2"])
def test_copy_is_identical_and_independent(kind, metric):
    rng = np.random.default_rng(7)
    x = unit(rng.standard_normal((300, 32)).astype("float32"))
    original = IndexData.build(x, [f"l{i % 7}" for i in range(300)], index_type=kind, metric_type=metric,
                               metadata=[{"tags": [i]} for i in range(300)])
    if kind == "HNSW32":
        original.remove([3, 5])  # tombstones are copied too
    original.feature_model = {"model_name": "m", "dim": 32}
    twin = original.copy()
    assert twin.to_bytes() == original.to_bytes()  # same vectors, ids, labels, metadata, params
    found = twin.search(x[:8], 5)
    assert all(np.array_equal(a, b) for a, b in zip(found, original.search(x[:8], 5)))

    before = original.to_bytes()
    twin.append(x[:2], ["new", "new"])
    twin.remove([0, 1])
    twin.set_search_params(**({"ef_search": 99} if kind == "HNSW32" else {"nprobe": 3} if kind == "IVF" else {}))
    assert original.to_bytes() == before  # the copy shares nothing the writer can change
    assert len(twin) == len(original) and twin.next_id == original.next_id + 2
