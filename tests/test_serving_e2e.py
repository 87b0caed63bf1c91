"""The real server in a subprocess on 127.0.0.1: PaddleX-style client flows, and SIGKILL durability.

Both servers run through ``python -m viewfinder.cli serve``: image_classification
(MobileNetV2, real weights) and PP-ShiTuV2 (real CenterNet mainbody detector from
../shared/assets + MobileNetV2 features). They start together: startup is mostly imports.
"""
from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from test_serving_shitu import detector_config
from viewfinder.retrieval import IndexData

TESTS = Path(__file__).resolve().parent
STARTUP_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess; ``url`` once /health answers."""

    def __init__(self, command: list[str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=TESTS.parent)

    def wait_ready(self) -> "Server":
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).json()["errorMsg"] == "Healthy":
                    return self
            except (httpx.HTTPError, ValueError):
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server did not start in {STARTUP_TIMEOUT_S}s:\n{self.log.read_text()[-3000:]}")

    def post(self, path: str, body: dict, timeout: float = 60) -> dict:
        response = httpx.post(f"{self.url}{path}", json=body, timeout=timeout)
        assert response.status_code == 200, response.text
        return response.json()["result"]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def run_clients(client, count: int, timeout: float = 300) -> None:
    """``client(n)`` for n in 0..count-1, all at once; returns when every one has."""
    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def save_result_image(result: dict, path: Path) -> Image.Image:
    path.write_bytes(base64.b64decode(result["image"]))  # what PaddleX's client examples do
    return Image.open(path)


# ------------------------------------------------------------------ servers (started together: startup is mostly imports)
def start_shitu_server(config: Path, data_dir: Path, log: Path) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config), "--host", "127.0.0.1",
                   "--port", str(port), "--data_dir", str(data_dir), "--log_level", "warning"], port, log)


@pytest.fixture(scope="module")
def servers(mobilenet_v2_weights, shared_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("servers")
    shitu_config = folder / "shitu.yaml"
    shitu_config.write_text(yaml.safe_dump(detector_config(shared_dir, mobilenet_v2_weights), allow_unicode=True))
    config = folder / "classify.yaml"
    config.write_text(yaml.safe_dump({"pipeline_name": "image_classification", "SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights), "engine": "torch", "topk": 5}},
        "Serving": {"visualize": True}}))
    port = free_port()
    started = {
        "classify": Server([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config), "--host",
                            "127.0.0.1", "--port", str(port), "--api_key", "k3y", "--log_level", "warning"],
                           port, folder / "classify.log"),
        "shitu": start_shitu_server(shitu_config, folder / "indexes", folder / "shitu.log"),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


# ------------------------------------------------------------------ classification
def test_classification_server_client_flow(servers, photos, tmp_path):
    server = servers["classify"]
    auth = {"Authorization": "Bearer k3y"}
    response = httpx.post(f"{server.url}/image-classification", json={"image": b64(photos / "chelsea.png")},
                          headers=auth, timeout=60)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert len(result["categories"]) == 5
    assert result["categories"][0]["name"] in {"Egyptian cat", "tabby, tabby cat", "tiger cat"}
    picture = save_result_image(result, tmp_path / "out.jpg")
    assert picture.format == "JPEG" and picture.size == (451, 300)
    docs = httpx.get(f"{server.url}/docs", headers=auth, timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200  # no key needed
    no_key = httpx.post(f"{server.url}/image-classification", json={"image": b64(photos / "kite.jpg")}, timeout=10)
    assert no_key.status_code == 401 and no_key.json()["errorCode"] == 401
    refused = httpx.post(f"{server.url}/image-classification", json={"image": "http://127.0.0.1:1/x.png"},
                         headers=auth, timeout=10)
    assert refused.status_code == 400 and refused.json()["errorCode"] == 400
    assert "Traceback" not in server.log.read_text()


# ------------------------------------------------------------------ PP-ShiTuV2 index flow + durability
def test_index_flow_and_sigkill_durability(servers, photos, tmp_path):
    server = servers["shitu"]
    args = server.process.args
    config, data_dir, log = Path(args[args.index("--pipeline") + 1]), Path(args[args.index("--data_dir") + 1]), server.log
    try:
        # PaddleX's documented client flow: build from 3 images, add 1, remove id 1, infer.
        pairs = [{"image": b64(photos / name), "label": label}
                 for name, label in [("chelsea.png", "cat"), ("dog.jpg", "dog"), ("horses.jpg", "horse")]]
        built = server.post("/shitu-index-build", {"imageLabelPairs": pairs})
        key = built["indexKey"]
        assert len(built["idMap"]) == 3
        added = server.post("/shitu-index-add", {"imageLabelPairs": [{"image": b64(photos / "kite.jpg"),
                                                                      "label": "kite"}], "indexKey": key})
        assert len(added["idMap"]) == 4
        removed = server.post("/shitu-index-remove", {"ids": [1], "indexKey": key})
        assert removed["idMap"] == {"0": "cat", "2": "horse", "3": "kite"}
        inferred = server.post("/shitu-infer", {"image": b64(photos / "horses.jpg"), "indexKey": key})
        objects = inferred["detectedObjects"]
        assert len(objects) >= 2  # CenterNet's horses (+ the whole image: always_add_whole_image)
        for detected in objects:
            assert set(detected) == {"bbox", "recResults", "score", "rejected"} and len(detected["bbox"]) == 4
            assert all(set(r) == {"label", "score"} for r in detected["recResults"])
        best = max(objects, key=lambda o: o["score"])
        assert best["score"] > 0.3 and best["recResults"][0]["label"] == "horse"
        assert save_result_image(inferred, tmp_path / "shitu.jpg").format == "JPEG"

        # Concurrent writers; SIGKILL as soon as enough changes are acknowledged.
        expected = {int(k): v for k, v in removed["idMap"].items()}
        acked_adds: dict[int, str] = {}
        acked_removes: set[int] = set()
        in_flight_adds: set[str] = set()
        in_flight_removes: set[int] = set()
        guard = threading.Lock()
        stop = threading.Event()
        kite = b64(photos / "kite.jpg")

        def writer(n: int) -> None:
            mine: list[int] = []
            for i in range(100):
                if stop.is_set():
                    return
                label = f"w{n}-{i}"
                with guard:
                    in_flight_adds.add(label)
                try:
                    result = server.post("/shitu-index-add", {"indexKey": key, "changedOnly": True,
                                                              "imageLabelPairs": [{"image": kite, "label": label}]})
                except (httpx.HTTPError, AssertionError):
                    return  # the server was killed under us
                with guard:
                    acked_adds.update({int(k): v for k, v in result["idMap"].items()})
                    in_flight_adds.discard(label)
                mine.extend(result["addedIds"])
                if i % 2 == 1:
                    victim = mine.pop(0)
                    with guard:
                        in_flight_removes.add(victim)
                    try:
                        server.post("/shitu-index-remove", {"indexKey": key, "ids": [victim], "changedOnly": True})
                    except (httpx.HTTPError, AssertionError):
                        return
                    with guard:
                        acked_removes.add(victim)
                        in_flight_removes.discard(victim)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        while len(acked_adds) + len(acked_removes) < 16 and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        server.kill()
        stop.set()
        for t in threads:
            t.join(60)
        assert len(acked_adds) >= 8 and acked_removes
    finally:
        server.stop()

    # Restart on the same folder: every acknowledged change is there; in-flight ones may or may not be.
    server = start_shitu_server(config, data_dir, log).wait_ready()
    try:
        info = httpx.get(f"{server.url}/shitu-index/{key}", params={"withIdMap": "true"}, timeout=30).json()["result"]
        id_map = {int(k): v for k, v in info["idMap"].items()}
        must_have = {**expected, **{i: v for i, v in acked_adds.items() if i not in acked_removes}}
        for i, label in must_have.items():
            assert id_map.get(i) == label or i in in_flight_removes, (i, label)
        for i in acked_removes:
            assert i not in id_map
        for i, label in id_map.items():  # nothing that was never asked for
            assert must_have.get(i) == label or label in in_flight_adds, (i, label)
        assert info["size"] == len(id_map)
        hit = server.post("/shitu-infer", {"image": kite, "indexKey": key, "visualize": False})
        labels = {r["label"] for o in hit["detectedObjects"] for r in o["recResults"][:1]}
        assert any(label.startswith(("kite", "w")) for label in labels), labels

        # One more acknowledged add + remove, SIGKILL right after the last 200: the folder holds both.
        extra = server.post("/shitu-index-add", {"indexKey": key, "changedOnly": True,
                                                 "imageLabelPairs": [{"image": kite, "label": "last"}]})
        (new_id,) = extra["addedIds"]
        server.post("/shitu-index-remove", {"indexKey": key, "ids": [0], "changedOnly": True})
        server.kill()
        on_disk = IndexData.load(data_dir / key).id_map
        assert on_disk[new_id] == "last" and 0 not in on_disk
        assert on_disk == {**{i: v for i, v in id_map.items() if i != 0}, new_id: "last"}
    finally:
        server.stop()
    assert "Traceback" not in log.read_text()


# ------------------------------------------------------------------ two replicas on one data_dir
def test_two_replicas_share_one_data_dir(mobilenet_v2_weights, shared_dir, photos, tmp_path):
    """What a load balancer in front of two servers does: writes through either, reads through both."""
    config = tmp_path / "shitu.yaml"
    config.write_text(yaml.safe_dump(detector_config(shared_dir, mobilenet_v2_weights), allow_unicode=True))
    data_dir = tmp_path / "indexes"
    replicas = [start_shitu_server(config, data_dir, tmp_path / f"replica{n}.log") for n in range(2)]
    try:
        for replica in replicas:
            replica.wait_ready()
        first, second = replicas
        pairs = [{"image": b64(photos / name), "label": label}
                 for name, label in [("chelsea.png", "cat"), ("dog.jpg", "dog"), ("horses.jpg", "horse")]]
        key = first.post("/shitu-index-build", {"imageLabelPairs": pairs})["indexKey"]
        hit = second.post("/shitu-infer", {"image": b64(photos / "horses.jpg"), "indexKey": key, "visualize": False})
        assert max(hit["detectedObjects"], key=lambda o: o["score"])["recResults"][0]["label"] == "horse"

        # Four clients, two per replica, add and remove concurrently on the same index.
        kite = b64(photos / "kite.jpg")
        acked: dict[int, str] = {}
        removed: set[int] = set()
        guard = threading.Lock()
        failures: list[str] = []

        def client(n: int) -> None:
            replica = replicas[n % 2]
            try:
                for i in range(4):
                    result = replica.post("/shitu-index-add", {"indexKey": key, "changedOnly": True,
                                                               "imageLabelPairs": [{"image": kite, "label": f"c{n}-{i}"}]})
                    with guard:
                        assert not set(map(int, result["idMap"])) & set(acked), "an id was handed out twice"
                        acked.update({int(k): v for k, v in result["idMap"].items()})
                    if i == 1:
                        (victim,) = result["addedIds"]
                        replicas[(n + 1) % 2].post("/shitu-index-remove",  # through the other replica
                                                   {"indexKey": key, "ids": [victim], "changedOnly": True})
                        with guard:
                            removed.add(victim)
            except (AssertionError, httpx.HTTPError) as exc:
                failures.append(f"client {n}: {exc}")

        run_clients(client, 4)
        assert not failures, failures
        assert len(acked) == 16 and len(removed) == 4

        expected = {0: "cat", 1: "dog", 2: "horse", **{i: v for i, v in acked.items() if i not in removed}}
        for replica in replicas:  # both serve every acknowledged change, and nothing else
            info = httpx.get(f"{replica.url}/shitu-index/{key}", params={"withIdMap": "true"}, timeout=30).json()
            assert {int(k): v for k, v in info["result"]["idMap"].items()} == expected
        assert IndexData.load(data_dir / key).id_map == expected

        second.post("/shitu-index-remove", {"indexKey": key, "ids": [1]})
        hit = first.post("/shitu-infer", {"image": b64(photos / "dog.jpg"), "indexKey": key, "visualize": False})
        assert all(r["label"] != "dog" for o in hit["detectedObjects"] for r in o["recResults"])

        response = httpx.delete(f"{second.url}/shitu-index/{key}", timeout=30)
        assert response.status_code == 200, response.text
        gone = httpx.post(f"{first.url}/shitu-infer", json={"image": kite, "indexKey": key}, timeout=30)
        assert gone.status_code == 404 and gone.json()["errorCode"] == 404
        listed = httpx.get(f"{first.url}/shitu-indexes", timeout=30).json()["result"]
        assert key not in str(listed)
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        assert "Traceback" not in replica.log.read_text()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_processes_on_one_port(mobilenet_v2_weights, shared_dir, photos, tmp_path):
    """``serve --processes 2``: two server processes behind one port, indexes shared through the folder."""
    config = tmp_path / "shitu.yaml"
    config.write_text(yaml.safe_dump(detector_config(shared_dir, mobilenet_v2_weights), allow_unicode=True))
    port = free_port()
    server = Server([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config), "--host", "127.0.0.1",
                     "--port", str(port), "--data_dir", str(tmp_path / "indexes"), "--processes", "2",
                     "--log_level", "info"], port, tmp_path / "server.log")
    try:
        server.wait_ready()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S  # /health answers once the first process is up
        while server.log.read_text().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        servers = [c for c in _children(server.process.pid)
                   if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text() and "pipe_handle" in
                   Path(f"/proc/{c}/cmdline").read_text()]
        assert len(servers) == 2, server.log.read_text()[-2000:]

        key = server.post("/shitu-index-build", {"imageLabelPairs": [
            {"image": b64(photos / "horses.jpg"), "label": "horse"}]})["indexKey"]
        kite = b64(photos / "kite.jpg")
        added: list[int] = []
        failures: list[str] = []

        def client(n: int) -> None:
            try:
                for i in range(3):
                    result = server.post("/shitu-index-add", {"indexKey": key, "changedOnly": True,
                                                              "imageLabelPairs": [{"image": kite, "label": f"k{n}-{i}"}]})
                    added.extend(result["addedIds"])
            except (AssertionError, httpx.HTTPError) as exc:
                failures.append(str(exc))

        run_clients(client, 6)
        assert not failures, failures
        assert sorted(added) == list(range(1, 19))  # 18 adds, each id once, whichever process took it
        for _ in range(4):  # whichever process answers holds every add
            info = httpx.get(f"{server.url}/shitu-index/{key}", params={"withIdMap": "true"}, timeout=30).json()
            assert info["result"]["size"] == 19 and len(info["result"]["idMap"]) == 19
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log and log.count("Started server process") == 2


def test_processes_share_one_metrics_view_and_log_ids(mobilenet_v2_weights, photos, tmp_path):
    """``serve --processes 2``: whichever process answers ``/metrics`` reports every process's requests
    (prometheus-client's multiprocess mode); a killed process's counts stay, its live gauges go; the
    access log (ours, in place of uvicorn's) carries each answer's logId."""
    from prometheus_client.parser import text_string_to_metric_families

    from test_serving_ops import requests_total

    def scrape() -> dict:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def worker_pids(samples: dict) -> set[str]:
        return {dict(labels)["pid"] for name, labels in samples if name == "viewfinder_workers"}

    def server_processes() -> list[int]:
        return [c for c in _children(server.process.pid)
                if "pipe_handle" in Path(f"/proc/{c}/cmdline").read_text()]

    config = tmp_path / "classify.yaml"
    config.write_text(yaml.safe_dump({"pipeline_name": "image_classification", "SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights), "engine": "torch"}}}))
    port = free_port()
    server = Server([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config), "--host", "127.0.0.1",
                     "--port", str(port), "--processes", "2", "--workers", "1", "--log_level", "info"], port,
                    tmp_path / "server.log")
    image = b64(photos / "dog.jpg")
    log_ids: list[str] = []
    try:
        server.wait_ready()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while server.log.read_text().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        first = server_processes()
        assert len(first) == 2, server.log.read_text()[-2000:]
        for _ in range(8):  # a new connection each: the kernel hands them to either process
            response = httpx.post(f"{server.url}/image-classification", json={"image": image, "visualize": False},
                                  timeout=60)
            assert response.status_code == 200, response.text
            log_ids.append(response.json()["logId"])
        for _ in range(4):
            samples = scrape()
            assert requests_total(samples, "/image-classification", "POST", 200) == 8
            assert worker_pids(samples) == {str(pid) for pid in first}  # one scrape, both processes

        os.kill(first[0], signal.SIGKILL)  # uvicorn's supervisor starts a replacement
        while (server.log.read_text().count("Application startup complete") < 3 or len(server_processes()) < 2) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        now = server_processes()
        assert len(now) == 2 and first[0] not in now, server.log.read_text()[-2000:]
        samples = scrape()
        assert requests_total(samples, "/image-classification", "POST", 200) == 8  # the dead one's count stays
        assert worker_pids(samples) == {str(pid) for pid in now}  # its live gauge went with it
    finally:
        server.stop()
    lines = server.log.read_text().splitlines()
    for log_id in log_ids:
        line = next(line for line in lines if line.endswith(f"logId={log_id}"))
        assert '"POST /image-classification HTTP/1.1" 200 ' in line
    assert not [line for line in lines if line.endswith('" 200 OK')]  # uvicorn's own access log is off
