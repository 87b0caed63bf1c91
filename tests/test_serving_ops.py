"""Operability (issue 24, item 4) through FastAPI's TestClient: ``/metrics``, ``/health/live`` and
``/health/ready``, the bounded work queue, the request time limit, the logId in the access log.

The slow requests come from a pipeline whose ``predict`` blocks until the test sets an Event:
what the tests check is the order of events (refused while the worker is still blocked), never
how long something took.
"""
from __future__ import annotations

import asyncio
import base64
import io
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from viewfinder.errors import ConfigError, ServiceBusyError
from viewfinder.serving import ServingConfig, create_app
from viewfinder.serving.batching import MicroBatcher, WorkerPool
from viewfinder.serving.config import from_pipeline_config
from viewfinder.serving.workqueue import WorkQueue

CLASSIFY = "/image-classification"
EVENT_WAIT_S = 30  # only a bound for a broken test: every wait below ends on an event


def scrape(client: TestClient, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``GET /metrics`` parsed with prometheus-client's parser: {(sample name, sorted labels): value}."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_total(samples: dict, endpoint: str, method: str, status: int) -> float:
    labels = (("endpoint", endpoint), ("method", method), ("status", str(status)))
    return samples.get(("viewfinder_http_requests_total", labels), 0.0)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + EVENT_WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


class GatedClassifier:
    """An image_classification pipeline whose predict reports that it started, then waits for ``release``."""

    name = "image_classification"
    topk = 5

    def __init__(self, released: bool = False) -> None:
        self.started: queue.Queue[int] = queue.Queue()
        self.release = threading.Event()
        if released:
            self.release.set()

    def predict(self, inputs: list[Any], topk: int | None = None, batch_size: int | None = None) -> list[dict]:
        self.started.put(len(inputs))
        assert self.release.wait(EVENT_WAIT_S), "the test never released predict"
        return [{"class_ids": [3, 1], "scores": [0.75, 0.25], "label_names": ["three", "one"]} for _ in inputs]

    def wait_started(self) -> None:
        self.started.get(timeout=EVENT_WAIT_S)


class _FailingWarmup(GatedClassifier):
    def predict(self, inputs: list[Any], topk: int | None = None, batch_size: int | None = None) -> list[dict]:
        raise RuntimeError("no such kernel")


@pytest.fixture(scope="module")
def image() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def client_for(pipeline: Any, warmup: bool = False, **settings: Any) -> TestClient:
    settings.setdefault("index_storage", "memory")
    return TestClient(create_app(pipeline, ServingConfig(**settings), warmup=warmup), raise_server_exceptions=False)


def post_in_background(client: TestClient, body: dict, answers: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(client.post(CLASSIFY, json=body)))
    thread.start()
    return thread


# ------------------------------------------------------------------ the bounded work queue
def test_full_queue_refuses_at_once_while_liveness_answers(image):
    gated = GatedClassifier()
    body = {"image": image, "visualize": False}
    with client_for(gated, workers=1, max_batch=1, max_queue=2) as client:
        work_queue = client.app.state.runtime.pool.queue
        answers: list = []
        threads = [post_in_background(client, body, answers)]
        gated.wait_started()  # the only worker is now blocked in predict
        threads += [post_in_background(client, body, answers) for _ in range(2)]
        wait_until(lambda: work_queue.depth == 2, "two requests queued behind the blocked worker")

        surplus = client.post(CLASSIFY, json=body)  # answered although the worker is still blocked
        assert surplus.status_code == 503 and surplus.headers["retry-after"] == "1"
        refused = surplus.json()
        assert refused["errorCode"] == 503 and "Serving.max_queue = 2" in refused["errorMsg"]
        assert len(refused["logId"]) == 36 and "result" not in refused
        live = client.get("/health/live")
        assert live.status_code == 200 and live.json()["errorMsg"] == "Alive"
        assert not gated.release.is_set() and not answers  # nothing was answered by the queued ones meanwhile

        during = scrape(client)
        assert during[("viewfinder_queue_depth", ())] == 2 and during[("viewfinder_queue_limit", ())] == 2
        assert during[("viewfinder_queue_rejections_total", ())] == 1
        assert requests_total(during, CLASSIFY, "POST", 503) == 1

        gated.release.set()
        for thread in threads:
            thread.join(EVENT_WAIT_S)
        assert [a.status_code for a in answers] == [200, 200, 200]
        after = scrape(client)
    assert after[("viewfinder_queue_depth", ())] == 0
    assert requests_total(after, CLASSIFY, "POST", 200) == 3 and requests_total(after, CLASSIFY, "POST", 503) == 1


def test_the_queue_bound_holds_where_requests_queue():
    """The middleware's early refusal is an optimisation: submit() itself refuses past the limit, and a
    request that gives up while queued (timeout, client gone) frees its place."""
    started, release = threading.Event(), threading.Event()

    def run(items: list[int]) -> list[int]:
        started.set()
        release.wait(EVENT_WAIT_S)
        return items

    pool = WorkerPool(1, WorkQueue(1))
    batcher = MicroBatcher(run, pool, max_batch=1, window_s=0)

    async def scenario() -> list[Any]:
        running = asyncio.ensure_future(batcher.submit(1))
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, EVENT_WAIT_S)  # on the worker
        assert pool.queue.depth == 0
        waiting = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        assert pool.queue.depth == 1
        with pytest.raises(ServiceBusyError) as refused:
            await batcher.submit(3)
        assert refused.value.http_status == 503 and refused.value.retry_after_s == 1
        with pytest.raises(ServiceBusyError):
            await pool.execute(int)  # a direct worker call waits in the same queue
        waiting.cancel()
        await asyncio.sleep(0)
        assert pool.queue.depth == 0  # the cancelled request left the queue
        release.set()
        return [await running, await batcher.submit(4), await pool.execute(int, "5")]

    try:
        assert asyncio.run(scenario()) == [1, 4, 5]
    finally:
        release.set()
        pool.shutdown()
    assert pool.queue.depth == 0


# ------------------------------------------------------------------ the time limit
def test_request_over_the_time_limit_gets_504_with_the_envelope(image):
    gated = GatedClassifier()
    body = {"image": image, "visualize": False}
    with client_for(gated, workers=1, max_batch=1, request_timeout_s=0.3) as client:
        on_worker = client.post(CLASSIFY, json=body)  # predict blocks past the limit
        assert on_worker.status_code == 504
        answer = on_worker.json()
        assert answer["errorCode"] == 504 and "not answered within 0.3 s" in answer["errorMsg"]
        assert len(answer["logId"]) == 36
        queued = client.post(CLASSIFY, json=body)  # waits behind the still-blocked worker, then gives up
        assert queued.status_code == 504
        assert client.app.state.runtime.pool.queue.depth == 0
        assert client.get("/health/live").status_code == 200
        gated.release.set()
        assert client.post(CLASSIFY, json=body).status_code == 200  # the worker came back
        samples = scrape(client)
    assert requests_total(samples, CLASSIFY, "POST", 504) == 2 and requests_total(samples, CLASSIFY, "POST", 200) == 1


# ------------------------------------------------------------------ readiness
def test_ready_only_after_warm_up(image):
    gated = GatedClassifier()
    with client_for(gated, warmup=True) as client:
        gated.wait_started()  # the warm-up's predict is running (and blocked)
        not_ready = client.get("/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["errorCode"] == 503 and not_ready.json()["errorMsg"] == "not ready: warm-up in progress"
        assert client.get("/health/live").status_code == 200
        assert client.get("/health").json()["errorMsg"] == "Healthy"  # unchanged: the models are loaded
        gated.release.set()
        wait_until(lambda: client.get("/health/ready").status_code == 200, "ready after the warm-up")
        ready = client.get("/health/ready").json()
        assert ready["errorCode"] == 0 and ready["errorMsg"] == "Ready"


def test_failed_warm_up_is_never_ready(caplog):
    with client_for(_FailingWarmup(), warmup=True) as client:
        wait_until(lambda: client.app.state.readiness.failure is not None, "the warm-up failed")
        response = client.get("/health/ready")
        assert client.get("/health/live").status_code == 200
    assert response.status_code == 503
    assert response.json()["errorMsg"] == "not ready: warm-up failed (RuntimeError; see the server log)"
    assert any("warm-up failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_without_warm_up_ready_at_once():
    with client_for(GatedClassifier(released=True)) as client:
        assert client.get("/health/ready").status_code == 200


# ------------------------------------------------------------------ metrics
def test_metrics_counters_move_with_requests(image):
    with client_for(GatedClassifier(released=True)) as client:
        before = scrape(client)
        assert requests_total(before, CLASSIFY, "POST", 200) == 0
        for _ in range(3):
            assert client.post(CLASSIFY, json={"image": image, "visualize": False}).status_code == 200
        assert client.post(CLASSIFY, json={"image": image, "topk": 0}).status_code == 422
        assert client.get(CLASSIFY).status_code == 405
        assert client.get("/no/such/path").status_code == 404
        after = scrape(client)
    assert requests_total(after, CLASSIFY, "POST", 200) == 3
    assert requests_total(after, CLASSIFY, "POST", 422) == 1
    assert requests_total(after, CLASSIFY, "GET", 405) == 1
    assert requests_total(after, "unmatched", "GET", 404) == 1  # raw paths never become labels
    assert requests_total(after, "/metrics", "GET", 200) == 1  # the first scrape
    errors = {labels: v for (name, labels), v in after.items() if name == "viewfinder_http_request_errors_total"}
    assert errors == {(("endpoint", CLASSIFY), ("method", "POST"), ("status", "422")): 1,
                      (("endpoint", CLASSIFY), ("method", "GET"), ("status", "405")): 1,
                      (("endpoint", "unmatched"), ("method", "GET"), ("status", "404")): 1}
    latency = (("endpoint", CLASSIFY), ("method", "POST"))
    assert after[("viewfinder_http_request_duration_seconds_count", latency)] == 4
    assert after[("viewfinder_http_request_duration_seconds_sum", latency)] > 0
    assert after[("viewfinder_inference_batch_size_sum", ())] == 3
    assert after[("viewfinder_queue_depth", ())] == 0 and after[("viewfinder_queue_limit", ())] == 64
    assert after[("viewfinder_workers", ())] >= 1
    assert ("process_resident_memory_bytes", ()) in after


def test_each_app_has_its_own_registry(image):
    with client_for(GatedClassifier(released=True)) as first, client_for(GatedClassifier(released=True)) as second:
        assert first.post(CLASSIFY, json={"image": image, "visualize": False}).status_code == 200
        assert requests_total(scrape(first), CLASSIFY, "POST", 200) == 1
        assert requests_total(scrape(second), CLASSIFY, "POST", 200) == 0


def test_probes_are_open_and_metrics_need_the_api_key():
    with client_for(GatedClassifier(released=True), api_key="k3y") as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 200
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.json()["errorCode"] == 401
        samples = scrape(client, authorization="Bearer k3y")
    assert requests_total(samples, "/metrics", "GET", 401) == 1  # refused before routing, still labelled


def test_openapi_documents_the_operator_endpoints():
    with client_for(GatedClassifier(released=True)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path, operation_id in (("/health/live", "checkLiveness"), ("/health/ready", "checkReadiness")):
        operation = paths[path]["get"]
        assert operation["operationId"] == operation_id
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Envelope")
    assert paths["/health/ready"]["get"]["responses"]["503"]["content"]["application/json"]["schema"][
        "$ref"].endswith("/ErrorEnvelope")
    metrics = paths["/metrics"]["get"]
    assert metrics["operationId"] == "getMetrics"
    assert metrics["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert "401" not in metrics["responses"]  # no API key: nothing is refused
    with client_for(GatedClassifier(released=True), api_key="k3y") as client:
        keyed = client.get("/openapi.json", headers={"X-API-Key": "k3y"}).json()["paths"]
    assert keyed["/metrics"]["get"]["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorEnvelope")
    assert "401" not in keyed["/health/live"]["get"]["responses"]  # the probes need no key


# ------------------------------------------------------------------ the access log
def test_every_access_log_line_carries_the_log_id(image, caplog):
    caplog.set_level(logging.INFO, logger="viewfinder.serving.access")
    with client_for(GatedClassifier(released=True), api_key="k3y") as client:
        answers = [client.post(CLASSIFY, json={"image": image, "visualize": False}, headers={"x-api-key": "k3y"}),
                   client.post(CLASSIFY, json={"image": image}),  # 401 before routing
                   client.post(CLASSIFY, json={"image": "not base64!"}, headers={"x-api-key": "k3y"}),
                   client.get("/health/live")]
    lines = [r.getMessage() for r in caplog.records if r.name == "viewfinder.serving.access"]
    assert len(lines) == len(answers)
    for answer, line in zip(answers, lines):
        assert line.endswith(f"logId={answer.json()['logId']}"), line
    assert '"POST /image-classification HTTP/1.1" 200 ' in lines[0]
    assert '"POST /image-classification HTTP/1.1" 401 ' in lines[1]
    assert '"POST /image-classification HTTP/1.1" 400 ' in lines[2]
    assert '"GET /health/live HTTP/1.1" 200 ' in lines[3]


def test_access_log_and_metrics_of_a_500(image, caplog):
    class Exploding(GatedClassifier):
        def predict(self, *args: Any, **kwargs: Any) -> list[dict]:
            raise RuntimeError("boom")

    caplog.set_level(logging.INFO, logger="viewfinder.serving.access")
    with client_for(Exploding()) as client:
        answer = client.post(CLASSIFY, json={"image": image, "visualize": False})
        samples = scrape(client)
    assert answer.status_code == 500
    lines = [r.getMessage() for r in caplog.records if r.name == "viewfinder.serving.access"]
    assert f'"POST /image-classification HTTP/1.1" 500 ' in lines[0] and lines[0].endswith(answer.json()["logId"])
    assert requests_total(samples, CLASSIFY, "POST", 500) == 1


# ------------------------------------------------------------------ settings and flags
def test_queue_and_timeout_settings_are_checked():
    config = from_pipeline_config({"Serving": {"max_queue": 5, "request_timeout_s": 2.5}})
    assert config.max_queue == 5 and config.request_timeout_s == 2.5
    assert ServingConfig(request_timeout_s=0).request_timeout_s == 0  # no limit
    for bad in ({"max_queue": 0}, {"max_queue": True}, {"request_timeout_s": -1}, {"request_timeout_s": float("nan")},
                {"request_timeout_s": float("inf")}, {"request_timeout_s": True}, {"request_timeout_s": "10"}):
        with pytest.raises(ConfigError):
            ServingConfig(**bad)


def test_serve_flags_reach_the_server(monkeypatch):
    from click.testing import CliRunner

    import viewfinder.serving
    from viewfinder.cli import cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(viewfinder.serving, "serve", lambda pipeline, **options: seen.update(options))
    result = CliRunner().invoke(cli, ["serve", "--pipeline", "image_classification", "--max_queue", "2",
                                      "--request_timeout_s", "1.5"])
    assert result.exit_code == 0, result.output
    assert seen["max_queue"] == 2 and seen["request_timeout_s"] == 1.5
    monkeypatch.undo()  # the real serve(): refuses the setting before any model loads
    refused = CliRunner().invoke(cli, ["serve", "--pipeline", "image_classification", "--max_queue", "0",
                                       "--port", "1"])
    assert refused.exit_code == 2 and "Serving.max_queue must be a positive integer, got 0" in refused.output
