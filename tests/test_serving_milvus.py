"""The PP-ShiTuV2 service with its indexes in Milvus (``--index_store``).

In process (TestClient, Milvus Lite embedded in a tmp file): the PaddleX endpoints and ours answer
exactly as with ``--data_dir`` - the folder store's own tests run here again on a Milvus store.

Two ``viewfinder serve`` processes sharing one ``milvus-lite server`` on 127.0.0.1: an add through
one is found through the other at once; concurrent adds through both hand out every id once; a
SIGKILL after acknowledged writes loses none of them.
"""
from __future__ import annotations

import sys
import threading
import time

import httpx
import pytest
import yaml

from milvus_server import MilvusLiteServer, free_port
from test_serving_e2e import Server, b64, run_clients
from test_serving_shitu import (  # noqa: F401 - fixtures and tests, run here on a Milvus store
    EXTRA,
    GALLERY,
    build,
    images,
    make_client,
    pipeline,
    test_changed_only_returns_just_the_changes,
    test_concurrent_writers_and_readers_keep_every_change,
    test_index_errors,
    test_list_info_delete,
    test_rejected_box_has_empty_rec_results_not_500,
)
from viewfinder.retrieval import open_gallery
from viewfinder.serving.milvus_store import collection_for, key_for

@pytest.fixture()
def client(pipeline, tmp_path):  # noqa: F811 - the folder store's tests get a Milvus store
    with make_client(pipeline, tmp_path, index_store=f"milvus://{tmp_path}/store.db") as c:
        yield c


def test_key_to_collection_names_round_trip():
    for key in ("0b8f4a52-4a4e-4c55-9a8e-1f2f3a4b5c6d", "a_b-c", "A1__--_"):
        assert key_for(collection_for(key)) == key
    assert collection_for("a_b-c") == "vf_a_0b_1c"
    assert key_for("shop") is None and key_for("vf_a_2") is None


def test_paddlex_flow_lives_in_milvus_and_survives_a_new_app(pipeline, images, tmp_path):  # noqa: F811
    store = f"milvus://{tmp_path}/store.db"
    with make_client(pipeline, tmp_path, index_store=store) as first:
        key = build(first, images)["indexKey"]
        added = first.post("/shitu-index-add", json={"indexKey": key, "imageLabelPairs": [
            {"image": images[EXTRA[0]], "label": EXTRA[1]}]}).json()
        assert added["result"]["idMap"] == {"0": "cat", "1": "dog", "2": "horse", "3": "kite"}
        removed = first.post("/shitu-index-remove", json={"indexKey": key, "ids": [1]}).json()["result"]
        assert removed == {"idMap": {"0": "cat", "2": "horse", "3": "kite"}}
        assert not (tmp_path / "indexes").exists()  # nothing in --data_dir
    stored = open_gallery(f"{store}?collection={collection_for(key)}")
    assert stored.id_map == {0: "cat", 2: "horse", 3: "kite"} and stored.index_type == "Flat"
    with make_client(pipeline, tmp_path, index_store=store) as second:
        body = second.post("/shitu-infer", json={"image": images["chelsea.png"], "indexKey": key, "topk": 2}).json()
        top = body["result"]["detectedObjects"][0]["recResults"][0]
        assert top["label"] == "cat" and top["score"] == pytest.approx(1.0, abs=1e-4)
        assert second.get(f"/shitu-index/{key}").json()["result"]["nextId"] == 4
        assert second.get("/health/ready").status_code == 200


# ------------------------------------------------------------------ two server processes, one Milvus
@pytest.fixture(scope="module")
def cluster(mobilenet_v2_weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    config = folder / "shitu.yaml"
    config.write_text(yaml.safe_dump({"pipeline_name": "PP-ShiTuV2", "SubModules": {"Detection": None, "Recognition": {
        "model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights), "engine": "torch"}}}))
    servers = []
    with MilvusLiteServer(folder) as milvus:
        try:
            for name in ("a", "b"):
                port = free_port()
                servers.append(Server([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config),
                                       "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                       "--index_store", milvus.store, "--log_level", "warning"],
                                      port, folder / f"{name}.log"))
            for server in servers:
                server.wait_ready()
            yield servers
        finally:
            for server in servers:
                server.stop()
    for server in servers:
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


def test_an_add_through_one_process_is_found_through_the_other_at_once(cluster, photos):
    a, b = cluster
    pairs = [{"image": b64(photos / "horses.jpg"), "label": "horse"},
             {"image": b64(photos / "dog.jpg"), "label": "dog"}]
    key = a.post("/shitu-index-build", {"imageLabelPairs": pairs})["indexKey"]
    added = a.post("/shitu-index-add", {"indexKey": key, "changedOnly": True,
                                        "imageLabelPairs": [{"image": b64(photos / "kite.jpg"), "label": "kite"}]})
    assert added == {"idMap": {"2": "kite"}, "addedIds": [2], "indexSize": 3}
    found = b.post("/shitu-infer", {"image": b64(photos / "kite.jpg"), "indexKey": key, "visualize": False})
    assert found["detectedObjects"][0]["recResults"][0]["label"] == "kite"
    listed = httpx.get(f"{b.url}/shitu-indexes", timeout=30).json()["result"]["indexes"]
    assert key in [row["indexKey"] for row in listed]
    removed = b.post("/shitu-index-remove", {"indexKey": key, "ids": [0], "changedOnly": True})
    assert removed == {"idMap": {"0": "horse"}, "removedIds": [0], "indexSize": 2}
    info = httpx.get(f"{a.url}/shitu-index/{key}", params={"withIdMap": "true"}, timeout=30).json()["result"]
    assert info["idMap"] == {"1": "dog", "2": "kite"} and info["nextId"] == 3
    assert httpx.delete(f"{b.url}/shitu-index/{key}", timeout=30).status_code == 200
    assert httpx.get(f"{a.url}/shitu-index/{key}", timeout=30).status_code == 404
    response = httpx.post(f"{a.url}/shitu-infer", json={"image": b64(photos / "kite.jpg"), "indexKey": key}, timeout=30)
    assert response.status_code == 404


def test_concurrent_adds_through_both_hand_out_every_id_once(cluster, photos):
    a, b = cluster
    key = a.post("/shitu-index-build", {"imageLabelPairs": [{"image": b64(photos / "horses.jpg"),
                                                             "label": "horse"}]})["indexKey"]
    kite = b64(photos / "kite.jpg")
    added: dict[int, str] = {}
    failures: list[str] = []

    def client(n: int) -> None:
        server = (a, b)[n % 2]
        try:
            for i in range(3):
                label = f"k{n}-{i}"
                result = server.post("/shitu-index-add", {"indexKey": key, "changedOnly": True,
                                                          "imageLabelPairs": [{"image": kite, "label": label},
                                                                              {"image": kite, "label": label}]})
                for i_d in result["addedIds"]:
                    assert i_d not in added, f"id {i_d} handed out twice"
                    added[i_d] = label
        except (AssertionError, httpx.HTTPError) as exc:
            failures.append(str(exc))

    run_clients(client, 6)
    assert not failures, failures
    assert sorted(added) == list(range(1, 37))  # 18 adds of 2 images, every id once, whichever process
    for server in (a, b):
        info = httpx.get(f"{server.url}/shitu-index/{key}", params={"withIdMap": "true"}, timeout=30).json()["result"]
        assert {int(k): v for k, v in info["idMap"].items()} == {0: "horse", **added}


def test_sigkill_after_acknowledged_writes_loses_none(cluster, photos):
    a, b = cluster
    key = b.post("/shitu-index-build", {"imageLabelPairs": [{"image": b64(photos / "horses.jpg"),
                                                             "label": "horse"}]})["indexKey"]
    kite = b64(photos / "kite.jpg")
    acknowledged: dict[int, str] = {}
    stop = threading.Event()

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            label = f"w{n}-{i}"
            try:
                response = httpx.post(f"{a.url}/shitu-index-add", json={"indexKey": key, "changedOnly": True,
                                      "imageLabelPairs": [{"image": kite, "label": label}]}, timeout=30)
            except httpx.HTTPError:
                return  # the process died under this request: not acknowledged
            if response.status_code == 200:
                for i_d in response.json()["result"]["addedIds"]:
                    acknowledged[i_d] = label
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    a.kill()  # SIGKILL, with writes in flight
    stop.set()
    for t in threads:
        t.join(60)
    assert len(acknowledged) >= 6
    served = httpx.get(f"{b.url}/shitu-index/{key}", params={"withIdMap": "true"}, timeout=30).json()["result"]
    kept = {int(k): v for k, v in served["idMap"].items()}
    assert {i: kept.get(i) for i in acknowledged} == acknowledged  # every acknowledged add is there
    # the survivor keeps adding (a lock the killed process held expires after its lease)
    started = time.monotonic()
    more = b.post("/shitu-index-add", {"indexKey": key, "changedOnly": True,
                                       "imageLabelPairs": [{"image": kite, "label": "after"}]})
    assert time.monotonic() - started < 30
    assert more["addedIds"][0] >= max(kept) + 1
