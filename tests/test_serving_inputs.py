"""Bounded, strict request inputs (issue 24, item 2): one test per defect the hostile-input probe found.

topk bounded by a setting and by the index size, gallery labels validated, thresholds finite and
in range, ids strict int64, booleans strict, unparseable URLs a 400, a failed drawing never a
500, and request images decoded (bad ones refused) before they queue for an inference worker.
"""
from __future__ import annotations

import base64
import http.server
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from viewfinder import create_pipeline
from viewfinder.io import DecodedImage, decode_image
from viewfinder.serving import ServingConfig, UrlPolicy, create_app
from viewfinder.serving.adapters.base import PipelineAdapter
from viewfinder.serving.images import decode_bgr
from viewfinder.serving.schemas import ID_MAX

GALLERY = [("chelsea.png", "cat"), ("dog.jpg", "dog"), ("horses.jpg", "horse")]
RELEASE_GUARD_S = 20  # only so that a broken build fails instead of hanging: no test waits this long when it passes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client_for(pipeline: Any, **settings: Any) -> TestClient:
    settings.setdefault("index_storage", "memory")
    return TestClient(create_app(pipeline, ServingConfig(**settings)), raise_server_exceptions=False)


def post_json_text(client: TestClient, path: str, text: str):
    """POST a JSON text as it is (``Infinity``/``NaN`` tokens, which httpx refuses to encode)."""
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def classifier(mobilenet_v2_weights):
    return create_pipeline("image_classification", device="cpu", config={"SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights), "engine": "torch"}}})


@pytest.fixture(scope="module")
def shitu(mobilenet_v2_weights):
    return create_pipeline("PP-ShiTuV2", device="cpu", config={"SubModules": {
        "Detection": None,
        "Recognition": {"model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights), "engine": "torch"}}})


@pytest.fixture(scope="module")
def images(photos) -> dict[str, str]:
    return {name: b64((photos / name).read_bytes()) for name, _ in GALLERY}


@pytest.fixture(scope="module")
def truncated_jpeg(photos) -> str:
    data = (photos / "dog.jpg").read_bytes()
    return b64(data[: len(data) // 2])  # the header is intact: only a full decode finds the damage


@pytest.fixture()
def shitu_client(shitu):
    with client_for(shitu) as c:
        yield c


def build(client: TestClient, images: dict[str, str]) -> str:
    pairs = [{"image": images[name], "label": label} for name, label in GALLERY]
    response = client.post("/shitu-index-build", json={"imageLabelPairs": pairs})
    assert response.status_code == 200, response.text
    return response.json()["result"]["indexKey"]


def assert_422(response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errorCode"] == 422 and field in body["errorMsg"], body


# ------------------------------------------------------------------ topk
def test_topk_above_the_configured_cap_is_422(classifier, shitu, images):
    with client_for(classifier) as c:
        assert_422(c.post("/image-classification", json={"image": images["dog.jpg"], "topk": 101}), "topk")
        assert_422(c.post("/image-classification", json={"image": images["dog.jpg"],
                                                          "inferenceParams": {"topK": 10 ** 6}}), "topK")
        assert c.post("/image-classification", json={"image": images["dog.jpg"], "topk": 100}).status_code == 200
        spec = c.get("/openapi.json").json()["components"]["schemas"]
        assert spec["ImageClassificationRequest"]["properties"]["topk"]["anyOf"][0]["maximum"] == 100
    with client_for(classifier, max_topk=3) as c:  # Serving.max_topk
        assert_422(c.post("/image-classification", json={"image": images["dog.jpg"], "topk": 4}), "topk")
        assert len(c.post("/image-classification", json={"image": images["dog.jpg"], "topk": 3}
                          ).json()["result"]["categories"]) == 3
    with client_for(shitu) as c:
        key = build(c, images)
        for topk in (101, 10 ** 6, 10 ** 9, 10 ** 30):
            assert_422(c.post("/shitu-infer", json={"image": images["dog.jpg"], "indexKey": key, "topk": topk}),
                       "topk")


def test_shitu_never_searches_for_more_than_the_index_holds(shitu, shitu_client, images, monkeypatch):
    key = build(shitu_client, images)
    asked: list[Any] = []
    real_predict = shitu.predict

    def spy(inputs, **params):
        asked.append(params.get("rec_topk"))
        return real_predict(inputs, **params)

    monkeypatch.setattr(shitu, "predict", spy)
    response = shitu_client.post("/shitu-infer", json={"image": images["dog.jpg"], "indexKey": key, "topk": 50,
                                                       "recThreshold": -1.0, "visualize": False})
    assert response.status_code == 200, response.text
    assert asked == [3]  # the index holds 3 items
    assert len(response.json()["result"]["detectedObjects"][0]["recResults"]) == 3


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("label", ["a\x1cb", "a\x1db", "a\x85b", "a\x00b", "a\x7fb", "line\nbreak", "a\u2028b",
                                   "a\u2029b", "\x1e"])
def test_labels_with_control_characters_are_refused(shitu_client, images, label):
    key = build(shitu_client, images)
    pair = {"image": images["dog.jpg"], "label": label}
    built = shitu_client.post("/shitu-index-build", json={"imageLabelPairs": [pair]})
    assert_422(built, "imageLabelPairs.0.label")
    assert f"U+{ord(next(ch for ch in label if not ch.isalnum())):04X}" in built.json()["errorMsg"]
    assert_422(shitu_client.post("/shitu-index-add", json={"indexKey": key, "imageLabelPairs": [pair]}), "label")
    assert len(shitu_client.get("/shitu-indexes").json()["result"]["indexes"]) == 1  # nothing was built
    assert shitu_client.get(f"/shitu-index/{key}").json()["result"]["size"] == 3  # nothing was added


def test_label_length_is_limited_and_unicode_labels_are_kept(shitu, images):
    with client_for(shitu) as c:
        key = build(c, images)
        long_pair = {"image": images["dog.jpg"], "label": "x" * 257}
        assert_422(c.post("/shitu-index-add", json={"indexKey": key, "imageLabelPairs": [long_pair]}), "256")
        unicode_label = "猫 Ünïcødé — كلب 🐕\u200d🦺"
        added = c.post("/shitu-index-add", json={"indexKey": key, "changedOnly": True, "imageLabelPairs": [
            {"image": images["dog.jpg"], "label": unicode_label}, {"image": images["dog.jpg"], "label": "y" * 256}]})
        assert added.status_code == 200, added.text
        assert added.json()["result"]["idMap"] == {"3": unicode_label, "4": "y" * 256}
    with client_for(shitu, max_label_length=5) as c:  # Serving.max_label_length
        assert_422(c.post("/shitu-index-build", json={"imageLabelPairs": [
            {"image": images["dog.jpg"], "label": "kitten"}]}), "at most 5 characters")


def test_an_index_holding_a_control_character_label_still_draws(shitu, images, photos):
    """Labels written through the Python API are not checked: a visualised infer on them must not fail."""
    gallery = [decode_bgr((photos / name).read_bytes()) for name, _ in GALLERY]
    index = shitu.build_index(gallery, ["cat\x1cfile", "dog\x85", "horse\u2029" + "h" * 100_000],
                              metric_type="IP", index_type="Flat")
    with client_for(shitu) as c:
        key = c.app.state.adapter.store.create(index)
        for name in ("chelsea.png", "dog.jpg", "horses.jpg"):
            response = c.post("/shitu-infer", json={"image": images[name], "indexKey": key, "visualize": True})
            assert response.status_code == 200, response.text
            result = response.json()["result"]
            assert result["detectedObjects"][0]["recResults"][0]["label"] in index.id_map.values()
            assert decode_image(base64.b64decode(result["image"])).original_size == \
                decode_image(base64.b64decode(images[name])).original_size


def test_drawn_text_shows_control_characters_as_escapes_and_is_cut():
    from viewfinder.visualize import MAX_DRAWN_CHARS, drawable

    assert drawable("cat\x1cfile 0.9") == "cat\\x1cfile 0.9"
    assert drawable("a\x85b\u2028c\nd") == "a\\x85b\\u2028c\\nd"
    assert drawable("猫 Ünïcødé 0.5") == "猫 Ünïcødé 0.5"
    cut = drawable("h" * 100_000)
    assert len(cut) == MAX_DRAWN_CHARS and cut.endswith("\u2026")


class _Drawn(dict):
    ok = True

    @property
    def img(self):
        raise RuntimeError("raqm_layout() failed.")


def test_a_drawing_that_fails_leaves_the_image_out_not_the_answer(caplog):
    runtime = SimpleNamespace(encode_image=lambda image: "jpeg")
    adapter = PipelineAdapter(SimpleNamespace(predict=lambda inputs: iter(())), runtime)
    with caplog.at_level(logging.WARNING, logger="viewfinder.serving.adapters.base"):
        outcomes = adapter.answer_each([_Drawn(label="cat")], [True],
                                       lambda result: SimpleNamespace(label=result["label"], image=None))
    assert len(outcomes) == 1 and not isinstance(outcomes[0], Exception), outcomes
    assert outcomes[0].label == "cat" and outcomes[0].image is None
    assert any("raqm_layout() failed" in record.getMessage() for record in caplog.records)


# ------------------------------------------------------------------ thresholds, ids, booleans
@pytest.mark.parametrize("field, value", [
    ("recThreshold", "Infinity"), ("recThreshold", "-Infinity"), ("recThreshold", "NaN"), ("recThreshold", "5"),
    ("detThreshold", "NaN"), ("detThreshold", "1.5"), ("hammingRadius", "-1"), ("hammingRadius", "Infinity"),
    ("recThreshold", "true"), ("recThreshold", '"0.5"'),
])
def test_shitu_thresholds_must_be_finite_and_in_range(shitu_client, images, field, value):
    key = build(shitu_client, images)
    text = f'{{"image": "{images["dog.jpg"]}", "indexKey": "{key}", "{field}": {value}}}'
    assert_422(post_json_text(shitu_client, "/shitu-infer", text), field)


@pytest.mark.parametrize("threshold", ["Infinity", "NaN", "true", '{"default": 0.5, "3": Infinity}', "[true]"])
def test_multilabel_thresholds_must_be_finite_numbers(threshold):
    class _Never:  # the schema refuses these before any model runs
        name = "image_multilabel_classification"

        def predict(self, input, threshold=None, batch_size=None):
            raise AssertionError("predict() reached")

    with client_for(_Never()) as c:
        text = f'{{"image": "aGVsbG8=", "threshold": {threshold}}}'
        assert_422(post_json_text(c, "/multilabel-image-classification", text), "threshold")


@pytest.mark.parametrize("ids", [[True], [2 ** 53], [2 ** 63], [2 ** 64 + 1], [1.5], ["1"], [-1]])
def test_remove_ids_are_strict_int64(shitu_client, images, ids):
    key = build(shitu_client, images)
    response = shitu_client.post("/shitu-index-remove", json={"indexKey": key, "ids": ids})
    assert_422(response, "ids.0")
    assert shitu_client.get(f"/shitu-index/{key}?withIdMap=true").json()["result"]["idMap"] == \
        {"0": "cat", "1": "dog", "2": "horse"}  # id 1 (== True) is still there


def test_largest_id_is_a_400_not_an_overflow(shitu_client, images):
    key = build(shitu_client, images)
    response = shitu_client.post("/shitu-index-remove", json={"indexKey": key, "ids": [ID_MAX]})
    assert response.status_code == 400 and str(ID_MAX) in response.json()["errorMsg"], response.text


def test_booleans_and_integers_are_strict(classifier, shitu_client, images):
    key = build(shitu_client, images)
    # (2.0 is an integer, as JSON Schema says; 2.5 is not)
    for body in ({"visualize": "yes"}, {"visualize": 1}, {"topk": True}, {"topk": 2.5}, {"topk": "2"}):
        assert_422(shitu_client.post("/shitu-infer", json={"image": images["dog.jpg"], "indexKey": key, **body}),
                   next(iter(body)))
    for body in ({"changedOnly": "yes"}, {"changedOnly": 0}):
        assert_422(shitu_client.post("/shitu-index-remove", json={"indexKey": key, "ids": [0], **body}),
                   "changedOnly")
    with client_for(classifier) as c:
        for body in ({"visualize": "no"}, {"topk": True}, {"inferenceParams": {"topK": False}}):
            assert_422(c.post("/image-classification", json={"image": images["dog.jpg"], **body}),
                       next(iter(body)))


# ------------------------------------------------------------------ URLs
class _BadRedirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", "http://[::1/cat.png")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def bad_redirect():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadRedirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cat.png"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("url", ["http://[::1", "https://[not-an-address]/a.jpg", "redirect"])
def test_unparseable_urls_are_400_on_both_pipelines(classifier, shitu, images, bad_redirect, url):
    url = bad_redirect if url == "redirect" else url  # a redirect to an unparseable Location
    policy = UrlPolicy(allow_loopback=True)  # the redirecting server is on loopback
    with client_for(classifier, url_policy=policy) as c:
        response = c.post("/image-classification", json={"image": url})
        assert response.status_code == 400 and response.json()["errorCode"] == 400, response.text
    with client_for(shitu, url_policy=policy) as c:
        key = build(c, images)
        for path, body in [("/shitu-infer", {"image": url, "indexKey": key}),
                           ("/shitu-index-build", {"imageLabelPairs": [{"image": url, "label": "x"}]})]:
            response = c.post(path, json=body)
            assert response.status_code == 400 and response.json()["errorCode"] == 400, (path, response.text)


# ------------------------------------------------------------------ decode before queueing
class _Blocking:
    """A real pipeline whose ``predict`` holds its worker until released."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def predict(self, input: Any, **params: Any):
        self.calls += 1
        self.entered.set()
        self.release.wait(RELEASE_GUARD_S)
        return self._inner.predict(input, **params)


def _refused_while_blocked(client: TestClient, blocking: _Blocking, good: tuple[str, dict],
                           bad: list[tuple[str, dict]]) -> None:
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(client.post(good[0], json=good[1])))
    worker.start()
    try:
        assert blocking.entered.wait(RELEASE_GUARD_S), "the good request never reached predict()"
        for path, body in bad:
            response = client.post(path, json=body)
            assert response.status_code == 400 and "truncated" in response.json()["errorMsg"], response.text
            # answered while the only worker is still held by the good request, which it never queued behind
            assert not blocking.release.is_set() and worker.is_alive() and blocking.calls == 1
    finally:
        blocking.release.set()
        worker.join()
    assert answers[0].status_code == 200, answers[0].text


def test_undecodable_image_is_refused_before_it_queues_for_classification(classifier, images, truncated_jpeg):
    blocking = _Blocking(classifier)
    with client_for(blocking, workers=1) as c:
        _refused_while_blocked(c, blocking, ("/image-classification", {"image": images["dog.jpg"]}),
                               [("/image-classification", {"image": truncated_jpeg})])


def test_undecodable_image_is_refused_before_it_queues_for_shitu(shitu, images, truncated_jpeg):
    blocking = _Blocking(shitu)
    with client_for(blocking, workers=1) as c:
        key = build(c, images)
        blocking.entered.clear()
        _refused_while_blocked(c, blocking, ("/shitu-infer", {"image": images["dog.jpg"], "indexKey": key}), [
            ("/shitu-infer", {"image": truncated_jpeg, "indexKey": key}),
            ("/shitu-index-add", {"indexKey": key, "imageLabelPairs": [{"image": truncated_jpeg, "label": "x"}]}),
            ("/shitu-index-build", {"imageLabelPairs": [{"image": truncated_jpeg, "label": "x"}]}),
        ])


@pytest.mark.parametrize("name", ["kite.jpg", "chelsea.png"])
def test_predict_takes_the_decoded_image_and_answers_as_from_bytes(classifier, shitu, photos, name):
    """The service decodes once, before queueing, with the pipeline's own decode: same answers as from bytes."""
    data = (photos / name).read_bytes()
    decoded = classifier.decode_input(data)
    assert isinstance(decoded, DecodedImage)
    if name == "kite.jpg":  # a large JPEG: decoded at the reduced scale the model allows, as predict() does
        assert decoded.reduced and decoded.encoded == data
    from_bytes = list(classifier.predict(data, topk=5))[0]
    from_decoded = list(classifier.predict(decoded, topk=5))[0]
    assert from_decoded["class_ids"].tolist() == from_bytes["class_ids"].tolist()
    assert from_decoded["scores"].tolist() == pytest.approx(from_bytes["scores"].tolist(), abs=1e-6)
    assert from_decoded.img["res"].size == from_bytes.img["res"].size

    gallery = shitu.build_index([decode_bgr(data)], ["it"], metric_type="IP", index_type="Flat")
    shitu_bytes = list(shitu.predict(data, index=gallery))[0]
    shitu_decoded = list(shitu.predict(shitu.decode_input(data), index=gallery))[0]
    assert shitu_decoded["boxes"] == shitu_bytes["boxes"]


def test_a_decoded_image_is_not_decoded_again(photos):
    decoded = decode_image((photos / "dog.jpg").read_bytes(), keep_pil=True)
    assert decoded.rgb is None and decoded.pil is not None
    as_array = decode_image(decoded)  # an array is asked for: made from the Pillow image, no file decode
    assert as_array is not decoded and as_array.pil is None
    assert as_array.rgb.shape == (decoded.pil.size[1], decoded.pil.size[0], 3)
    kept = decode_image(decoded, keep_pil=True)
    assert kept is not decoded and kept.pil is decoded.pil  # a copy holding the same pixels
