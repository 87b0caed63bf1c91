"""The HTTP service through FastAPI's TestClient: classification endpoints, envelopes, errors, safety."""
from __future__ import annotations

import base64
import http.server
import io
import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from test_bad_inputs import bomb_png
from test_serving_ops import scrape
from viewfinder import create_pipeline
from viewfinder.errors import ConfigError, ViewfinderError
from viewfinder.serving import ServingConfig, UrlPolicy, create_app
from viewfinder.serving.config import from_pipeline_config
from viewfinder.serving.security import address_refusal


@pytest.fixture(scope="module")
def classifier(mobilenet_v2_weights):
    return create_pipeline("image_classification", device="cpu", config={"SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights), "engine": "torch"}}})


@pytest.fixture(scope="module")
def chelsea(photos) -> str:
    return base64.b64encode((photos / "chelsea.png").read_bytes()).decode()


def client_for(pipeline, **settings) -> TestClient:
    settings.setdefault("index_storage", "memory")
    return TestClient(create_app(pipeline, ServingConfig(**settings)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(classifier):
    with client_for(classifier) as c:
        yield c


# ------------------------------------------------------------------ image_classification
def test_health_and_openapi(client):
    health = client.get("/health").json()
    assert health["errorCode"] == 0 and health["errorMsg"] == "Healthy" and len(health["logId"]) == 36
    assert "result" not in health
    spec = client.get("/openapi.json").json()
    assert spec["paths"]["/image-classification"]["post"]["operationId"] == "infer"
    assert client.get("/docs").status_code == 200


def test_classification_paddlex_shape(client, chelsea):
    body = client.post("/image-classification", json={"image": chelsea, "topk": 3}).json()
    assert set(body) == {"logId", "errorCode", "errorMsg", "result"}
    assert body["errorCode"] == 0 and body["errorMsg"] == "Success"
    categories = body["result"]["categories"]
    assert [set(c) for c in categories] == [{"id", "name", "score"}] * 3
    assert categories[0]["name"] in {"Egyptian cat", "tabby, tabby cat", "tiger cat"}
    assert categories[0]["score"] >= categories[1]["score"] >= categories[2]["score"]
    picture = Image.open(io.BytesIO(base64.b64decode(body["result"]["image"])))
    assert picture.format == "JPEG" and picture.size == (451, 300)


def test_topk_forms_and_visualize_flag(client, classifier, chelsea, photos):
    default = client.post("/image-classification", json={"image": chelsea, "visualize": False}).json()["result"]
    assert len(default["categories"]) == classifier.topk and "image" not in default  # None fields left out
    old = client.post("/image-classification", json={"image": chelsea, "inferenceParams": {"topK": 2}}).json()
    assert len(old["result"]["categories"]) == 2
    direct = list(classifier.predict(str(photos / "chelsea.png"), topk=2))[0]
    assert [c["id"] for c in old["result"]["categories"]] == direct["class_ids"].tolist()
    assert [c["score"] for c in old["result"]["categories"]] == pytest.approx(direct["scores"].tolist(), abs=2e-5)
    data_uri = "data:image/png;base64," + chelsea
    assert client.post("/image-classification", json={"image": data_uri, "topk": 1}).json()["errorCode"] == 0
    unpadded = chelsea.rstrip("=")
    assert client.post("/image-classification", json={"image": unpadded, "topk": 1}).json()["errorCode"] == 0


def test_visualize_config_default(classifier, chelsea):
    with client_for(classifier, visualize=False) as c:
        assert "image" not in c.post("/image-classification", json={"image": chelsea}).json()["result"]
        assert "image" in c.post("/image-classification", json={"image": chelsea, "visualize": True}).json()["result"]


def test_concurrent_requests_are_micro_batched_and_answered_right(classifier, photos):
    names = ["chelsea.png", "dog.jpg", "horses.jpg", "kite.jpg", "coffee.png", "person.jpg"] * 2
    payloads = [base64.b64encode((photos / n).read_bytes()).decode() for n in names]
    with client_for(classifier, batch_window_ms=50, workers=1) as c:
        alone = [c.post("/image-classification", json={"image": p, "topk": 2, "visualize": False}).json()
                 for p in payloads[:6]]
        results: dict[int, dict] = {}

        def call(i: int) -> None:
            results[i] = c.post("/image-classification", json={"image": payloads[i], "topk": 1 + i % 3,
                                                                "visualize": i % 2 == 0}).json()

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = scrape(c)
    single = batches[("viewfinder_inference_batch_size_bucket", (("le", "1.0"),))]
    assert batches[("viewfinder_inference_batch_size_sum", ())] == len(payloads) + 6
    # several requests shared one forward pass
    assert single < batches[("viewfinder_inference_batch_size_count", ())], batches
    for i, body in results.items():
        assert body["errorCode"] == 0
        cats = body["result"]["categories"]
        assert len(cats) == 1 + i % 3 and ("image" in body["result"]) == (i % 2 == 0)
        reference = alone[i % 6]["result"]["categories"]
        assert cats[0]["id"] == reference[0]["id"]
        assert cats[0]["score"] == pytest.approx(reference[0]["score"], abs=1e-4)


# ------------------------------------------------------------------ errors
def test_schema_errors_are_422_with_a_readable_message(client, chelsea):
    cases = [({}, "image: Field required"), ({"image": chelsea, "topk": 0}, "topk"),
             ({"image": chelsea, "topk": "many"}, "topk"), ({"image": 5}, "image"),
             ({"image": chelsea, "inferenceParams": {"topK": -1}}, "inferenceParams.topK")]
    for body, fragment in cases:
        response = client.post("/image-classification", json=body)
        assert response.status_code == 422, body
        payload = response.json()
        assert payload["errorCode"] == 422 and fragment in payload["errorMsg"], payload
        assert "result" not in payload
    broken = client.post("/image-classification", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["errorCode"] == 422


def test_bad_images_are_400(client):
    for image in ["!!!not base64!!!", base64.b64encode(b"plain text, not an image").decode(),
                  base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50).decode(), "data:image/png,rawdata",
                  "ftp://example.com/x.png", "file:///etc/passwd", "é"]:
        response = client.post("/image-classification", json={"image": image})
        assert response.status_code == 400, (image, response.text)
        assert response.json()["errorCode"] == 400 and response.json()["errorMsg"]


def test_truncated_image_is_400(client, photos):
    data = (photos / "dog.jpg").read_bytes()
    response = client.post("/image-classification", json={"image": base64.b64encode(data[: len(data) // 3]).decode()})
    assert response.status_code == 400 and "truncated" in response.json()["errorMsg"]


def test_decompression_bomb_is_413(client):
    response = client.post("/image-classification", json={"image": base64.b64encode(bomb_png()).decode()})
    assert response.status_code == 413 and response.json()["errorCode"] == 413
    assert "pixel" in response.json()["errorMsg"]


def test_pixel_limit_is_configurable(classifier, chelsea):
    with client_for(classifier, max_image_pixels=100 * 100) as c:
        response = c.post("/image-classification", json={"image": chelsea})
        assert response.status_code == 413 and "451x300" in response.json()["errorMsg"]


def test_oversized_body_is_413_declared_or_chunked(classifier, chelsea):
    with client_for(classifier, max_body_bytes=len(chelsea) // 2) as c:
        response = c.post("/image-classification", json={"image": chelsea})
        assert response.status_code == 413 and response.json()["errorCode"] == 413

        def chunks():
            body = json.dumps({"image": chelsea}).encode()
            for i in range(0, len(body), 4096):
                yield body[i:i + 4096]

        chunked = c.post("/image-classification", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        assert c.post("/image-classification", json={"image": "abc"}).status_code == 400  # small bodies pass


def test_unknown_route_and_method(client):
    missing = client.post("/no-such-endpoint", json={})
    assert missing.status_code == 404 and missing.json()["errorCode"] == 404
    wrong = client.get("/image-classification")
    assert wrong.status_code == 405 and wrong.json()["errorCode"] == 405


class _ExplodingPipeline:
    name = "image_classification"
    topk = 5

    def predict(self, input, topk=None, batch_size=None):
        raise RuntimeError("secret internal detail /home/service/key.pem")


def test_internal_errors_are_500_without_details(chelsea, caplog):
    with client_for(_ExplodingPipeline()) as c:
        response = c.post("/image-classification", json={"image": chelsea})
    body = response.json()
    assert response.status_code == 500 and body["errorCode"] == 500
    assert body["logId"] in body["errorMsg"] and "Internal server error" in body["errorMsg"]
    assert "secret" not in response.text and "Traceback" not in response.text
    assert any("secret internal detail" in r.getMessage() or (r.exc_info and "secret" in str(r.exc_info[1]))
               for r in caplog.records)  # ... but it is in the server log


# ------------------------------------------------------------------ API key
def test_api_key_enforced_on_every_route_but_health(classifier, chelsea):
    with client_for(classifier, api_key="s3cret-key") as c:
        assert c.get("/health").status_code == 200
        for method, path in [("post", "/image-classification"), ("get", "/docs"), ("get", "/openapi.json")]:
            response = getattr(c, method)(path, **({"json": {"image": chelsea}} if method == "post" else {}))
            assert response.status_code == 401 and response.json()["errorCode"] == 401, path
        wrong = c.post("/image-classification", json={"image": chelsea}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        for headers in ({"Authorization": "Bearer s3cret-key"}, {"X-API-Key": "s3cret-key"}):
            ok = c.post("/image-classification", json={"image": chelsea, "topk": 1}, headers=headers)
            assert ok.status_code == 200, headers


def test_api_key_from_environment(monkeypatch):
    from viewfinder.serving.server import build_config

    monkeypatch.setenv("VIEWFINDER_API_KEY", "from-env")
    assert build_config(None).api_key == "from-env"
    assert build_config(None, api_key="flag").api_key == "flag"


# ------------------------------------------------------------------ URLs (SSRF guard)
@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.1", "10.1.2.3", "172.16.0.5", "192.168.1.1",
                                     "169.254.169.254", "169.254.1.1", "100.100.100.200", "0.0.0.0", "::1",
                                     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fe80::1", "fd00:ec2::254", "fc00::1",
                                     "224.0.0.1"])
def test_non_public_addresses_are_refused_by_default(address):
    assert address_refusal(address, UrlPolicy()) is not None


def test_public_addresses_pass_and_policy_flags_open_ranges():
    assert address_refusal("93.184.216.34", UrlPolicy()) is None
    assert address_refusal("2606:4700::1111", UrlPolicy()) is None
    assert address_refusal("127.0.0.1", UrlPolicy(allow_loopback=True)) is None
    assert address_refusal("10.0.0.1", UrlPolicy(allow_private=True)) is None
    # metadata stays refused when loopback or link-local is opened, unless named explicitly
    assert address_refusal("169.254.169.254", UrlPolicy(allow_loopback=True, allow_link_local=True)) is not None
    assert address_refusal("169.254.169.254", UrlPolicy(allow_link_local=True, allow_metadata=True)) is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/cat.png", "http://localhost/cat.png", "http://10.0.0.7/cat.png",
                                 "http://169.254.169.254/latest/meta-data/", "https://[::1]/x.png",
                                 "http://0x7f000001/x.png"])
def test_image_urls_to_internal_addresses_are_refused(client, url):
    response = client.post("/image-classification", json={"image": url})
    assert response.status_code == 400, response.text
    assert "refused" in response.json()["errorMsg"]


class _Handler(http.server.BaseHTTPRequestHandler):
    image = b""
    targets = {"/to-metadata": "http://169.254.169.254/latest/meta-data/", "/to-private": "http://10.0.0.1/x.png",
               "/relative": "/cat.png"}

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/cat.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.image)))
            self.end_headers()
            self.wfile.write(self.image)
        elif self.path in self.targets:
            self.send_response(302)
            self.send_header("Location", self.targets[self.path])
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(301)
            self.send_header("Location", "/loop")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def local_server(photos):
    _Handler.image = (photos / "chelsea.png").read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_rechecked(classifier, local_server):
    # The test server itself is on loopback, so loopback is allowed for this test only.
    with client_for(classifier, url_policy=UrlPolicy(allow_loopback=True)) as c:
        ok = c.post("/image-classification", json={"image": f"{local_server}/cat.png", "topk": 1})
        assert ok.status_code == 200 and ok.json()["result"]["categories"][0]["name"] in {
            "Egyptian cat", "tabby, tabby cat", "tiger cat"}
        assert c.post("/image-classification", json={"image": f"{local_server}/relative"}).status_code == 200
        for path, address in [("/to-metadata", "169.254.169.254"), ("/to-private", "10.0.0.1")]:
            response = c.post("/image-classification", json={"image": f"{local_server}{path}"})
            assert response.status_code == 400, response.text
            assert "refused" in response.json()["errorMsg"] and address in response.json()["errorMsg"]
        loop = c.post("/image-classification", json={"image": f"{local_server}/loop"})
        assert loop.status_code == 400 and "redirects" in loop.json()["errorMsg"]
        missing = c.post("/image-classification", json={"image": f"{local_server}/nothing.png"})
        assert missing.status_code == 400 and "404" in missing.json()["errorMsg"]
    with client_for(classifier) as strict:  # default policy: the loopback server itself is refused
        assert strict.post("/image-classification", json={"image": f"{local_server}/cat.png"}).status_code == 400


def test_download_size_cap(classifier, local_server):
    with client_for(classifier, url_policy=UrlPolicy(allow_loopback=True, max_bytes=1000)) as c:
        response = c.post("/image-classification", json={"image": f"{local_server}/cat.png"})
        assert response.status_code == 413 and "download limit" in response.json()["errorMsg"]


# ------------------------------------------------------------------ multi-label
@pytest.fixture(scope="module")
def multilabel():
    return create_pipeline("multi_label_image_classification", device="cpu", pretrained=False, config={
        "SubModules": {"ImageMultiLabelClassification": {"model_name": "PP-LCNet_x1_0_ML", "engine": "torch"}}})


def test_multilabel_endpoint_threshold_forms(multilabel, chelsea):
    with client_for(multilabel) as c:
        assert c.post("/image-classification", json={"image": chelsea}).status_code == 404  # only its own route
        low = c.post("/multilabel-image-classification", json={"image": chelsea, "threshold": 0.0}).json()
        assert low["errorCode"] == 0 and len(low["result"]["categories"]) == 80
        assert "image" in low["result"]
        scores = {cat["id"]: cat["score"] for cat in low["result"]["categories"]}
        assert [cat["score"] for cat in low["result"]["categories"]] == sorted(scores.values(), reverse=True)
        top_id = low["result"]["categories"][0]["id"]
        none = c.post("/multilabel-image-classification", json={"image": chelsea, "threshold": 1.0}).json()
        assert none["result"]["categories"] == []
        only_top = c.post("/multilabel-image-classification", json={
            "image": chelsea, "threshold": {"default": 1.0, str(top_id): 0.0}, "visualize": False}).json()
        assert [cat["id"] for cat in only_top["result"]["categories"]] == [top_id]
        as_list = [1.0] * 80
        as_list[top_id] = 0.0
        listed = c.post("/multilabel-image-classification", json={"image": chelsea, "threshold": as_list}).json()
        assert [cat["id"] for cat in listed["result"]["categories"]] == [top_id]
        short = c.post("/multilabel-image-classification", json={"image": chelsea, "threshold": [0.5, 0.5]})
        assert short.status_code == 400 and "80" in short.json()["errorMsg"]
        bad = c.post("/multilabel-image-classification", json={"image": chelsea, "threshold": {"nope": 0.5}})
        assert bad.status_code == 422


# ------------------------------------------------------------------ config and CLI
def test_serving_block_of_the_pipeline_yaml():
    config = from_pipeline_config({"Serving": {"visualize": False, "max_batch": 4,
                                               "extra": {"index_storage": {"type": "file_system", "directory": "/x"}},
                                               "url_policy": {"allow_private": True}}})
    assert config.visualize is False and config.max_batch == 4 and config.data_dir == Path("/x")
    assert config.url_policy.allow_private and not config.url_policy.allow_loopback
    assert from_pipeline_config({"Serving": {"extra": {"index_storage": {"type": "memory"}}}}).index_storage == "memory"
    assert from_pipeline_config({}).index_storage == "file_system"
    for bad in [{"Serving": {"nope": 1}}, {"Serving": {"extra": {"index_storage": {"type": "bos"}}}},
                {"Serving": {"workers": 0}}, {"Serving": {"url_policy": {"allow_everything": True}}}]:
        with pytest.raises(ConfigError):
            from_pipeline_config(bad)


def test_cli_exposes_serve_both_ways():
    from click.testing import CliRunner

    from viewfinder.cli import cli

    runner = CliRunner()
    sub = runner.invoke(cli, ["serve", "--help"])
    assert sub.exit_code == 0
    for flag in ("--pipeline", "--host", "--port", "--device", "--use_hpip", "--data_dir", "--api_key"):
        assert flag in sub.output
    root = runner.invoke(cli, ["--help"])
    for flag in ("--serve", "--host", "--port", "--api_key", "--data_dir"):
        assert flag in root.output
    missing = runner.invoke(cli, ["--serve"])
    assert missing.exit_code != 0 and "--pipeline is required" in missing.output
    for args in (["serve", "--pipeline", "no_such_pipeline", "--port", "1"],
                 ["--serve", "--pipeline", "no_such_pipeline", "--port", "1"]):
        unknown = runner.invoke(cli, args)
        assert unknown.exit_code != 0 and "unknown pipeline 'no_such_pipeline'" in unknown.output, args



def test_serve_processes_refuses_bad_settings(tmp_path):
    """Refused before any server process starts (and before any model loads, where it can be)."""
    from click.testing import CliRunner

    from viewfinder.cli import cli

    runner = CliRunner()
    zero = runner.invoke(cli, ["serve", "--pipeline", "image_classification", "--processes", "0", "--port", "1"])
    assert zero.exit_code == 2 and "Serving.processes must be a positive integer, got 0" in zero.output
    memory = runner.invoke(cli, ["serve", "--pipeline", "PP-ShiTuV2", "--processes", "2", "--memory_index",
                                 "--port", "1"])
    assert memory.exit_code == 2 and "memory indexes live inside one process" in memory.output
    import yaml

    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"pipeline_name": "image_classification", "SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": str(tmp_path / "missing.pth")}}}))
    missing = runner.invoke(cli, ["serve", "--pipeline", str(config), "--processes", "2", "--port", "1"])
    assert missing.exit_code == 2 and "missing.pth" in missing.output  # from the check process, one line
    assert "Traceback" not in missing.output


def test_engine_threads_share_the_cores_between_processes():
    from viewfinder.engines.threads import physical_cores

    cores = physical_cores()
    assert ServingConfig(workers=1, processes=1).engine_threads == cores
    assert ServingConfig(workers=1, processes=cores).engine_threads == 1
    assert ServingConfig(workers=2, processes=cores * 4).engine_threads == 1


# ------------------------------------------------------------------ micro-batcher
def test_micro_batcher_spreads_bursts_over_workers_and_isolates_failures():
    import asyncio
    import time as _time

    from viewfinder.serving.batching import MicroBatcher, WorkerPool

    seen: list[list[int]] = []

    def run(items: list[int]) -> list[object]:
        seen.append(list(items))
        _time.sleep(0.05)
        return [ValueError(f"bad {i}") if i == 5 else i * 10 for i in items]

    pool = WorkerPool(2)
    batcher = MicroBatcher(run, pool, max_batch=8, window_s=0.01)

    async def main() -> list[object]:
        async def one(i: int) -> object:
            with batcher.incoming():
                try:
                    return await batcher.submit(i, key=i % 2)
                except ValueError as exc:
                    return str(exc)

        return await asyncio.gather(*(one(i) for i in range(12)))

    try:
        results = asyncio.run(main())
    finally:
        pool.shutdown()
    assert results == [0, 10, 20, 30, 40, "bad 5", 60, 70, 80, 90, 100, 110]
    assert all(len({i % 2 for i in batch}) == 1 for batch in seen)  # one key per batch
    # The burst meets two idle workers: the first takes half of its key's 6; the second, its peer
    # busy, takes all 6 of the other key (large batches cost less per image); the rest follow.
    assert [0, 2, 4] in seen and [1, 3, 5, 7, 9, 11] in seen, seen
    assert sorted(i for batch in seen for i in batch) == list(range(12))


def test_base64_may_be_wrapped_or_url_safe():
    from viewfinder.serving.images import decode_base64

    payload = bytes(range(256)) * 40
    text = base64.b64encode(payload).decode()
    wrapped = "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))  # MIME line length
    assert decode_base64(wrapped) == payload
    assert decode_base64(" \t" + wrapped.replace("\r\n", "\n ") + "\x0b\x0c") == payload
    assert decode_base64(base64.urlsafe_b64encode(payload).decode().rstrip("=")) == payload
    assert decode_base64("data:image/png;base64," + text) == payload
    for bad in ("abc$", "é" + text):
        with pytest.raises(ViewfinderError, match="neither an http"):
            decode_base64(bad)
