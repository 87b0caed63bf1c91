"""The web console as the service serves it (no browser: tests/test_console_browser.py drives it), and
what the console needs from the API: item listing with sources. The console must cost the API nothing:
no middleware, its routes after every API route, the spec unchanged."""
from __future__ import annotations

import base64
import functools
import http.server
import re
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving_apps import ErrorEnvelope, classifier_pipeline, shitu_pipeline
from viewfinder.errors import ConfigError
from viewfinder.serving import ServingConfig, UrlPolicy, create_app
from viewfinder.serving import console
from viewfinder.serving.access import AccessMiddleware
from viewfinder.serving.adapters.shitu import item_source
from viewfinder.serving.config import from_pipeline_config
from viewfinder.serving.json_body import JsonBodyMiddleware
from viewfinder.serving.limits import LoadLimitMiddleware
from viewfinder.serving.middleware import ServiceMiddleware

KEY = "console-test-key"
FILES = ("app.js", "api.js", "draw.js", "galleries.js", "style.css")  # the page, index.html, is sent by GET /


@pytest.fixture(scope="module")
def classifier(mobilenet_v2_weights):
    return classifier_pipeline(mobilenet_v2_weights)


@pytest.fixture(scope="module")
def shitu(mobilenet_v2_weights):
    return shitu_pipeline(mobilenet_v2_weights)


@pytest.fixture(scope="module")
def photo_server(photos):
    handler = functools.partial(_Quiet, directory=str(photos))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


# ------------------------------------------------------------------ the files
def test_the_package_ships_the_console_files():
    assert sorted(f.name for f in console.STATIC.iterdir()) == sorted(FILES)
    assert (console.HERE / "index.html").is_file()
    assert console.console_paths() == {"/"} | {f"/console/{name}" for name in FILES}
    # Every module the page imports is one of them (no build step, no bundler: what is here is what runs).
    for script in console.STATIC.glob("*.js"):
        for imported in re.findall(r'from "\./([\w.]+)"', script.read_text()):
            assert (console.STATIC / imported).is_file(), (script.name, imported)


def test_console_served_without_the_key_api_still_needs_it(classifier):
    with TestClient(create_app(classifier, ServingConfig(api_key=KEY))) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "console/app.js" in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        for name in FILES:
            response = client.get(f"/console/{name}")
            assert response.status_code == 200, name
        assert "javascript" in client.get("/console/app.js").headers["content-type"]
        assert client.get("/console/style.css").headers["content-type"].startswith("text/css")

        # Only the console's own files are open: anything else under /console, and every API path, needs the key.
        assert client.get("/console/secret.js").status_code == 401
        assert client.get("/console/index.html").status_code == 401  # the page is at /, with its headers
        refused = client.get("/openapi.json")
        assert refused.status_code == 401 and ErrorEnvelope.model_validate(refused.json()).errorCode == 401
        assert client.get("/openapi.json", headers={"X-API-Key": KEY}).status_code == 200


def test_console_adds_no_middleware_and_routes_after_the_api(classifier):
    with_console = create_app(classifier, ServingConfig(index_storage="memory"))
    without = create_app(classifier, ServingConfig(index_storage="memory", console=False))
    stack = [AccessMiddleware, ServiceMiddleware, JsonBodyMiddleware, LoadLimitMiddleware]  # outermost first
    for app in (with_console, without):
        assert [m.cls for m in app.user_middleware] == stack
    api_routes = [getattr(r, "path", None) for r in without.router.routes]
    routes = [getattr(r, "path", None) for r in with_console.router.routes]
    assert routes == api_routes + ["/", "/console"]  # an API path matches before the console is looked at
    assert with_console.openapi() == without.openapi()  # the spec is the API's alone
    with TestClient(without) as client:
        missing = client.get("/")
        assert missing.status_code == 404 and ErrorEnvelope.model_validate(missing.json()).errorCode == 404


def test_unknown_paths_and_methods_keep_their_envelopes(classifier):
    with TestClient(create_app(classifier, ServingConfig(index_storage="memory"))) as client:
        assert client.get("/nope").status_code == 404
        assert client.post("/nope", json={}).json()["errorCode"] == 404
        post_page = client.post("/", json={})
        assert post_page.status_code == 405 and post_page.headers["allow"] == "GET"
        assert ErrorEnvelope.model_validate(post_page.json()).errorCode == 405


def test_the_console_can_be_turned_off_in_the_yaml():
    assert from_pipeline_config({"Serving": {"console": False}}).console is False
    assert ServingConfig().console is True
    with pytest.raises(ConfigError, match="Serving.console"):
        from_pipeline_config({"Serving": {"console": "no"}})


# ------------------------------------------------------------------ items: what the gallery browser shows
def test_items_page_filters_by_label_and_records_url_sources(shitu, photos, photo_server, tmp_path):
    config = ServingConfig(data_dir=tmp_path / "indexes", url_policy=UrlPolicy(allow_loopback=True))
    with TestClient(create_app(shitu, config)) as client:
        built = client.post("/shitu-index-build", json={"imageLabelPairs": [
            {"image": b64(photos / "chelsea.png"), "label": "Cat"},
            {"image": f"{photo_server}/dog.jpg", "label": "dog"},
            {"image": b64(photos / "eagle.jpg"), "label": "bald eagle"}]})
        assert built.status_code == 200, built.text
        key = built.json()["result"]["indexKey"]
        added = client.post("/shitu-index-add", json={"indexKey": key, "changedOnly": True, "imageLabelPairs": [
            {"image": f"{photo_server}/giraffe.jpg", "label": "giraffe"},
            {"image": b64(photos / "kite.jpg"), "label": "kite"}]})
        assert added.json()["result"]["addedIds"] == [3, 4]

        page = client.get(f"/shitu-index/{key}/items").json()["result"]
        assert page["total"] == 5 and page["offset"] == 0
        assert page["items"] == [{"id": 0, "label": "Cat"}, {"id": 1, "label": "dog", "source": f"{photo_server}/dog.jpg"},
                                 {"id": 2, "label": "bald eagle"},
                                 {"id": 3, "label": "giraffe", "source": f"{photo_server}/giraffe.jpg"},
                                 {"id": 4, "label": "kite"}]
        found = client.get(f"/shitu-index/{key}/items", params={"label": "CA"}).json()["result"]
        assert [item["id"] for item in found["items"]] == [0] and found["total"] == 1
        second = client.get(f"/shitu-index/{key}/items", params={"offset": 2, "limit": 2}).json()["result"]
        assert [item["id"] for item in second["items"]] == [2, 3] and second["total"] == 5

        # A gallery built from a URL recognises like any other (its items embedded by the same model).
        inferred = client.post("/shitu-infer", json={"image": b64(photos / "dog.jpg"), "indexKey": key})
        assert inferred.json()["result"]["detectedObjects"][0]["recResults"][0]["label"] == "dog"
        client.post("/shitu-index-remove", json={"indexKey": key, "ids": [1]})
        assert [i["id"] for i in client.get(f"/shitu-index/{key}/items").json()["result"]["items"]] == [0, 2, 3, 4]

        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"label": "x" * 1025}):
            response = client.get(f"/shitu-index/{key}/items", params=bad)
            assert response.status_code == 422 and ErrorEnvelope.model_validate(response.json()).errorCode == 422
        missing = client.get("/shitu-index/no-such-index/items")
        assert missing.status_code == 404 and "no-such-index" in missing.json()["errorMsg"]


def test_item_source_reads_what_each_writer_records():
    assert item_source({"source": "https://example.com/a.jpg"}) == "https://example.com/a.jpg"
    assert item_source({"path": "/data/gallery/a.jpg"}) == "/data/gallery/a.jpg"  # the CLI, the Python API
    assert item_source("/data/b.jpg") == "/data/b.jpg"
    assert item_source({}) is None and item_source(None) is None and item_source({"source": 3}) is None
