"""PP-ShiTuV2 endpoints through FastAPI's TestClient, on the real pipeline.

Most tests serve the pipeline without a detector (whole images, MobileNetV2 features
with the real ImageNet weights): fast and deterministic. One test adds the real COCO
CenterNet from ../shared/assets as the mainbody detector.
"""
from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from viewfinder import create_pipeline
from viewfinder.retrieval import IndexData

ROOT = Path(__file__).resolve().parent.parent
GALLERY = [("chelsea.png", "cat"), ("dog.jpg", "dog"), ("horses.jpg", "horse")]
EXTRA = ("kite.jpg", "kite")


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def detector_config(shared_dir: Path, weights: Path) -> dict[str, Any]:
    """examples/configs/PP-ShiTuV2_offline.yaml (CenterNet + MobileNetV2) with absolute paths."""
    config = yaml.safe_load((ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml").read_text())
    config["SubModules"]["Detection"]["spec"]["onnx"] = str(shared_dir / "assets" / "centernet.onnx")
    config["SubModules"]["Recognition"].update(weights=str(weights), engine="torch")
    return config


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def pipeline(mobilenet_v2_weights):
    return create_pipeline("PP-ShiTuV2", device="cpu", config={"SubModules": {
        "Detection": None,
        "Recognition": {"model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights), "engine": "torch",
                        "batch_size": 8}}})


@pytest.fixture(scope="module")
def images(photos) -> dict[str, str]:
    return {name: b64(photos / name) for name, _ in GALLERY + [EXTRA]}


def make_client(pipeline, tmp_path, **settings):
    from fastapi.testclient import TestClient

    from viewfinder.serving import ServingConfig, create_app

    settings.setdefault("data_dir", tmp_path / "indexes")
    return TestClient(create_app(pipeline, ServingConfig(**settings)), raise_server_exceptions=False)


@pytest.fixture()
def client(pipeline, tmp_path):
    with make_client(pipeline, tmp_path) as c:
        yield c


def build(client, images) -> dict[str, Any]:
    pairs = [{"image": images[name], "label": label} for name, label in GALLERY]
    response = client.post("/shitu-index-build", json={"imageLabelPairs": pairs})
    assert response.status_code == 200, response.text
    return response.json()["result"]


# ------------------------------------------------------------------------------ tests
def test_build_add_remove_infer_paddlex_flow(client, images, tmp_path):
    built = build(client, images)
    key = built["indexKey"]
    assert built["idMap"] == {"0": "cat", "1": "dog", "2": "horse"}
    assert len(key) == 36 and key.count("-") == 4  # a uuid4
    assert (tmp_path / "indexes" / key / "vector.index").is_file()

    added = client.post("/shitu-index-add", json={"indexKey": key, "imageLabelPairs": [
        {"image": images[EXTRA[0]], "label": EXTRA[1]}]}).json()
    assert added["errorCode"] == 0 and added["result"]["idMap"] == {"0": "cat", "1": "dog", "2": "horse", "3": "kite"}

    removed = client.post("/shitu-index-remove", json={"indexKey": key, "ids": [1]}).json()["result"]
    assert removed == {"idMap": {"0": "cat", "2": "horse", "3": "kite"}}

    body = client.post("/shitu-infer", json={"image": images["chelsea.png"], "indexKey": key, "topk": 2}).json()
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success"
    objects = body["result"]["detectedObjects"]
    assert len(objects) == 1 and set(objects[0]) == {"bbox", "recResults", "score", "rejected"}
    assert objects[0]["bbox"] == [0.0, 0.0, 451.0, 300.0]
    assert [r["label"] for r in objects[0]["recResults"]][0] == "cat"
    assert objects[0]["recResults"][0]["score"] == pytest.approx(1.0, abs=1e-4)  # the same photo
    assert len(objects[0]["recResults"]) == 2  # topk reaches the pipeline as rec_topk
    picture = Image.open(io.BytesIO(base64.b64decode(body["result"]["image"])))
    assert picture.format == "JPEG" and picture.size == (451, 300)
    # the removed dog is never returned
    dog = client.post("/shitu-infer", json={"image": images["dog.jpg"], "indexKey": key, "recThreshold": 0.0,
                                            "visualize": False}).json()["result"]
    assert "image" not in dog
    assert "dog" not in [r["label"] for r in dog["detectedObjects"][0]["recResults"]]


def test_rejected_box_has_empty_rec_results_not_500(client, images):
    key = build(client, images)["indexKey"]
    response = client.post("/shitu-infer", json={"image": images["kite.jpg"], "indexKey": key,
                                                 "recThreshold": 0.999, "visualize": True})
    assert response.status_code == 200, response.text
    objects = response.json()["result"]["detectedObjects"]
    assert objects[0]["recResults"] == [] and objects[0]["score"] == 0.0


def test_changed_only_returns_just_the_changes(client, images):
    key = build(client, images)["indexKey"]
    added = client.post("/shitu-index-add", json={"indexKey": key, "changedOnly": True, "imageLabelPairs": [
        {"image": images["kite.jpg"], "label": "kite"}, {"image": images["dog.jpg"], "label": "dog2"}]}).json()
    assert added["result"] == {"idMap": {"3": "kite", "4": "dog2"}, "addedIds": [3, 4], "indexSize": 5}
    removed = client.post("/shitu-index-remove", json={"indexKey": key, "ids": [0, 4], "changedOnly": True}).json()
    assert removed["result"] == {"idMap": {"0": "cat", "4": "dog2"}, "removedIds": [0, 4], "indexSize": 3}


def test_list_info_delete(client, images, tmp_path):
    first, second = build(client, images)["indexKey"], build(client, images)["indexKey"]
    listed = client.get("/shitu-indexes").json()["result"]["indexes"]
    assert {row["indexKey"]: row["size"] for row in listed} == {first: 3, second: 3}
    info = client.get(f"/shitu-index/{first}").json()["result"]
    assert info == {"indexKey": first, "size": 3, "dim": 1280, "indexType": "Flat", "metricType": "IP",
                    "nextId": 3, "labels": 3, "persistent": True}
    deleted = client.delete(f"/shitu-index/{first}").json()
    assert deleted["result"] == {"indexKey": first, "deleted": True}
    assert not (tmp_path / "indexes" / first).exists()
    assert client.get(f"/shitu-index/{first}").status_code == 404
    assert client.delete(f"/shitu-index/{first}").status_code == 404
    assert [row["indexKey"] for row in client.get("/shitu-indexes").json()["result"]["indexes"]] == [second]


def test_index_errors(client, images):
    key = build(client, images)["indexKey"]
    unknown = "0b8f4a52-4a4e-4c55-9a8e-1f2f3a4b5c6d"
    for path, body in [("/shitu-index-add", {"indexKey": unknown, "imageLabelPairs": [{"image": images["kite.jpg"],
                                                                                       "label": "k"}]}),
                       ("/shitu-index-remove", {"indexKey": unknown, "ids": [0]}),
                       ("/shitu-infer", {"indexKey": unknown, "image": images["kite.jpg"]})]:
        response = client.post(path, json=body)
        assert response.status_code == 404 and response.json()["errorCode"] == 404, path
        assert unknown in response.json()["errorMsg"]
    # path traversal and malformed keys are schema errors
    for bad in ["../etc", "..", "a/b", "x" * 200, "", ".hidden"]:
        response = client.post("/shitu-index-remove", json={"indexKey": bad, "ids": [0]})
        assert response.status_code == 422, bad
        assert "indexKey" in response.json()["errorMsg"]
    assert client.get("/shitu-index/..%2F..%2Fetc").status_code in (404, 422)
    assert client.get("/shitu-index/.hidden").status_code == 422
    # removing ids that are not there changes nothing
    response = client.post("/shitu-index-remove", json={"indexKey": key, "ids": [7]})
    assert response.status_code == 400 and "7" in response.json()["errorMsg"]
    assert client.get(f"/shitu-index/{key}").json()["result"]["size"] == 3
    # no index at all: without a default index in the config, indexKey is a required field (the spec says so)
    response = client.post("/shitu-infer", json={"image": images["kite.jpg"]})
    assert response.status_code == 422 and "indexKey: Field required" in response.json()["errorMsg"]
    # an undecodable gallery image fails the build and stores nothing
    before = len(client.get("/shitu-indexes").json()["result"]["indexes"])
    response = client.post("/shitu-index-build", json={"imageLabelPairs": [{"image": "bm90IGFuIGltYWdl",
                                                                           "label": "x"}]})
    assert response.status_code == 400
    assert len(client.get("/shitu-indexes").json()["result"]["indexes"]) == before
    assert client.post("/shitu-index-build", json={"imageLabelPairs": []}).status_code == 422


def test_memory_storage_and_restart_from_disk(pipeline, images, tmp_path):
    with make_client(pipeline, tmp_path, index_storage="memory") as memory:
        key = build(memory, images)["indexKey"]
        assert memory.get(f"/shitu-index/{key}").json()["result"]["persistent"] is False
    assert not (tmp_path / "indexes").exists()
    with make_client(pipeline, tmp_path) as first:
        key = build(first, images)["indexKey"]
        first.post("/shitu-index-remove", json={"indexKey": key, "ids": [2]})
    with make_client(pipeline, tmp_path) as second:  # a new app on the same folder
        assert second.get(f"/shitu-index/{key}").json()["result"]["size"] == 2
        body = second.post("/shitu-infer", json={"image": images["dog.jpg"], "indexKey": key}).json()
        assert body["result"]["detectedObjects"][0]["recResults"][0]["label"] == "dog"


def test_concurrent_writers_and_readers_keep_every_change(client, images):
    key = build(client, images)["indexKey"]
    errors: list[str] = []
    added: list[int] = []

    def writer(n: int) -> None:
        body = client.post("/shitu-index-add", json={"indexKey": key, "changedOnly": True, "imageLabelPairs": [
            {"image": images["kite.jpg"], "label": f"kite{n}"}]}).json()
        if body["errorCode"]:
            errors.append(body["errorMsg"])
        else:
            added.extend(body["result"]["addedIds"])

    def reader() -> None:
        body = client.post("/shitu-infer", json={"image": images["dog.jpg"], "indexKey": key,
                                                 "visualize": False}).json()
        if body["errorCode"]:
            errors.append(body["errorMsg"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(added) == [3, 4, 5, 6]
    final = client.post("/shitu-index-remove", json={"indexKey": key, "ids": [0]}).json()["result"]["idMap"]
    assert sorted(int(i) for i in final) == [1, 2, 3, 4, 5, 6]


def test_changes_that_queue_up_are_saved_together(client, images, monkeypatch):
    """A burst of adds (and one bad remove) on one index: every good change lands, in fewer saves."""
    key = build(client, images)["indexKey"]
    saves: list[int] = []
    real_save = IndexData.save

    def counting_save(self, directory):
        saves.append(len(self))
        if len(saves) == 1:
            # A slow first save (a disk or object store under load): the adds that finish
            # embedding meanwhile queue behind it. Without this the test depended on the
            # machine's speed: on a fast one each add could land before the next one was ready.
            time.sleep(0.5)
        real_save(self, directory)

    monkeypatch.setattr(IndexData, "save", counting_save)
    start = threading.Barrier(9)
    answers: dict[str, Any] = {}

    def add(n: int) -> None:
        start.wait()
        answers[f"add{n}"] = client.post("/shitu-index-add", json={"indexKey": key, "changedOnly": True,
                                         "imageLabelPairs": [{"image": images["kite.jpg"], "label": f"kite{n}"}]})

    def bad_remove() -> None:
        start.wait()
        answers["remove"] = client.post("/shitu-index-remove", json={"indexKey": key, "ids": [999]})

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)] + [threading.Thread(target=bad_remove)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = answers.pop("remove")
    assert 400 <= bad.status_code < 500 and "999" in bad.json()["errorMsg"]
    added = {}
    for name, response in answers.items():
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert len(result["addedIds"]) == 1 and result["idMap"][str(result["addedIds"][0])] == f"kite{name[3:]}"
        added[result["addedIds"][0]] = f"kite{name[3:]}"
    assert sorted(added) == list(range(3, 11))  # each id handed out once
    print("index sizes saved:", saves)
    assert len(saves) < 8, saves  # group commits: the adds that queued behind one save shared the next
    monkeypatch.undo()
    expected = {0: "cat", 1: "dog", 2: "horse", **added}
    served = client.get(f"/shitu-index/{key}", params={"withIdMap": "true"}).json()["result"]["idMap"]
    assert {int(k): v for k, v in served.items()} == expected
    assert IndexData.load(client.app.state.runtime.store.root / key).id_map == expected


def test_failed_save_is_not_acknowledged_and_not_served(client, images, monkeypatch, caplog):
    key = build(client, images)["indexKey"]

    def broken_save(self, directory):
        raise __import__("viewfinder.errors", fromlist=["x"]).RetrievalIndexError("disk full")

    monkeypatch.setattr(IndexData, "save", broken_save)
    response = client.post("/shitu-index-remove", json={"indexKey": key, "ids": [0]})
    assert response.status_code == 500 and "could not be saved" in response.json()["errorMsg"]
    assert "disk full" in caplog.text and "disk full" not in response.text  # details in the log only
    monkeypatch.undo()
    assert client.get(f"/shitu-index/{key}").json()["result"]["size"] == 3


def test_real_detector_boxes(shared_dir, mobilenet_v2_weights, photos, images, tmp_path):
    detecting = create_pipeline("PP-ShiTuV2", device="cpu",
                                config=detector_config(shared_dir, mobilenet_v2_weights))
    with make_client(detecting, tmp_path) as c:
        key = build(c, images)["indexKey"]
        body = c.post("/shitu-infer", json={"image": images["horses.jpg"], "indexKey": key, "detThreshold": 0.3,
                                            "recThreshold": 0.0, "topk": 1}).json()
    assert body["errorCode"] == 0, body
    objects = body["result"]["detectedObjects"]
    width, height = Image.open(photos / "horses.jpg").size
    detected = [o for o in objects if o["score"] > 0]
    assert len(detected) >= 2  # CenterNet sees several horses
    for o in objects:
        x1, y1, x2, y2 = o["bbox"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert len(o["recResults"]) == 1 and o["recResults"][0]["label"] in {"cat", "dog", "horse"}
    assert max(detected, key=lambda o: o["score"])["recResults"][0]["label"] == "horse"


def test_corrupt_stored_index_is_a_500_and_listed_with_its_error(pipeline, images, tmp_path):
    with make_client(pipeline, tmp_path) as first:
        key = build(first, images)["indexKey"]
    vector = tmp_path / "indexes" / key / "vector.index"
    vector.write_bytes(vector.read_bytes()[:100])  # damaged behind the server's back
    with make_client(pipeline, tmp_path) as second:
        response = second.get(f"/shitu-index/{key}")
        assert response.status_code == 500 and "cannot be loaded" in response.json()["errorMsg"]
        assert str(tmp_path) not in response.text
        (row,) = second.get("/shitu-indexes").json()["result"]["indexes"]
        assert row["indexKey"] == key and "cannot be loaded" in row["error"]


def test_group_commit_survives_a_cancelled_request():
    """If the request that runs a commit is cancelled (client gone, shutdown), the commit still
    finishes and answers every request that queued behind it: none waits forever."""
    import asyncio
    import time as _time
    from types import SimpleNamespace

    from viewfinder.serving.adapters.shitu import ShiTuAdapter
    from viewfinder.serving.batching import WorkerPool

    commits: list[int] = []

    class SlowStore:
        def update_many(self, key, changes):
            _time.sleep(0.2)  # a save
            commits.append(len(changes))
            return [(change(None), "after") for change in changes]

    adapter = ShiTuAdapter.__new__(ShiTuAdapter)
    adapter.store, adapter.runtime = SlowStore(), SimpleNamespace(pool=WorkerPool(2))
    adapter._writers, adapter._queued = {}, {}

    async def scenario():
        first = asyncio.create_task(adapter._commit("k", lambda index: "first"))
        await asyncio.sleep(0.05)  # the first commit (0.2 s) is running; three more queue behind it
        queued = [asyncio.create_task(adapter._commit("k", lambda index, n=n: f"queued{n}")) for n in range(3)]
        await asyncio.sleep(0.25)  # the first is answered; queued[0] now runs the commit of all three
        queued[0].cancel()
        rest = await asyncio.wait_for(asyncio.gather(*queued[1:]), timeout=10)
        return await first, rest, queued[0]

    first, rest, cancelled = asyncio.run(scenario())
    assert first[0] == "first" and cancelled.cancelled()
    assert [value for value, _ in rest] == ["queued1", "queued2"]
    assert commits == [1, 3]  # the three that queued shared one commit, which the cancel did not stop


# ------------------------------------------------------------------------------ operability (issue 24)
def test_metrics_report_index_sizes_and_route_templates(pipeline, images, tmp_path):
    from test_serving_ops import requests_total, scrape

    with make_client(pipeline, tmp_path) as client:
        key = build(client, images)["indexKey"]
        other = build(client, images)["indexKey"]
        client.post("/shitu-index-add", json={"indexKey": key, "imageLabelPairs": [
            {"image": images[EXTRA[0]], "label": EXTRA[1]}]})
        client.post("/shitu-index-remove", json={"indexKey": other, "ids": [0, 1]})
        client.get(f"/shitu-index/{key}")
        sizes = {labels[0][1]: v for (name, labels), v in scrape(client).items() if name == "viewfinder_index_items"}
        assert sizes == {key: 4, other: 1}
        client.delete(f"/shitu-index/{other}")
        samples = scrape(client)
    assert {labels[0][1]: v for (name, labels), v in samples.items() if name == "viewfinder_index_items"} == {key: 4}
    assert requests_total(samples, "/shitu-index/{indexKey}", "GET", 200) == 1  # the template, not the key
    assert requests_total(samples, "/shitu-index/{indexKey}", "DELETE", 200) == 1
    assert requests_total(samples, "/shitu-index-build", "POST", 200) == 2
    with make_client(pipeline, tmp_path) as restarted:  # sizes come from the folders, no index loaded
        sizes = {labels[0][1]: v for (name, labels), v in scrape(restarted).items()
                 if name == "viewfinder_index_items"}
        assert sizes == {key: 4} and restarted.app.state.runtime.store._served == {}


def test_not_ready_while_the_index_folder_is_unreachable(pipeline, tmp_path):
    with make_client(pipeline, tmp_path) as client:
        assert client.get("/health/ready").status_code == 200
        (tmp_path / "indexes").rename(tmp_path / "moved")
        gone = client.get("/health/ready")
        assert gone.status_code == 503 and gone.json()["errorCode"] == 503
        assert gone.json()["errorMsg"] == "not ready: the index store is not reachable (see the server log)"
        assert str(tmp_path) not in gone.text
        assert client.get("/health/live").status_code == 200
        (tmp_path / "moved").rename(tmp_path / "indexes")
        assert client.get("/health/ready").status_code == 200
    with make_client(pipeline, tmp_path, index_storage="memory") as memory:
        assert memory.get("/health/ready").status_code == 200
