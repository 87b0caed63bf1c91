"""The service's Prometheus metrics (``GET /metrics``), in a registry of each app's own.

One process: the app's :class:`CollectorRegistry` holds its instruments, the process
collector (CPU, memory, open files) and the index sizes; two apps in one process share
nothing.

Several processes on one port (``serve --processes N``): prometheus-client's multiprocess
mode. ``serve`` gives the processes one empty folder (``$PROMETHEUS_MULTIPROC_DIR``, set
before they start) where each writes its values, and the process that answers ``/metrics``
merges the folder: counters and histograms are summed over every process that served
(a replaced process's counts stay in), queue depth and limit are summed over the live
processes, ``viewfinder_workers`` is listed per live process (``pid`` label). As in
prometheus-client, the mode is on whenever ``$PROMETHEUS_MULTIPROC_DIR`` is set.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: the text format every Prometheus version reads (what prometheus-client serves when not asked for another)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: request latencies: 5 ms (a cached classification) to 5 min (a large index build)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def multiprocess_dir() -> str | None:
    """The folder of multiprocess mode, or None (one process)."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """For ``serve --processes N``: an empty folder in ``$PROMETHEUS_MULTIPROC_DIR`` while the servers run.

    A folder the operator named is used as it is (prometheus-client: empty it between runs);
    otherwise a temporary one is made, and removed afterwards.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    path = tempfile.mkdtemp(prefix="viewfinder-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _MergedProcesses:
    """prometheus-client's MultiProcessCollector that first forgets processes that died (killed, replaced)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._merge = multiprocess.MultiProcessCollector(None, path)

    def collect(self) -> Iterable[Metric]:
        for live_gauge in glob.glob(os.path.join(self._path, "gauge_live*_*.db")):
            pid = os.path.basename(live_gauge)[:-3].rsplit("_", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), self._path)
        return self._merge.collect()


class _IndexSizes:
    """``viewfinder_index_items{index}``: the items of each stored index, read when scraped."""

    def __init__(self, sizes: Callable[[], Mapping[str, int]]) -> None:
        self._sizes = sizes

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("viewfinder_index_items", "Items in each PP-ShiTuV2 index of the index store",
                                 labels=["index"])

    def describe(self) -> Iterable[Metric]:
        return [self._family()]  # lets the registry check names without reading the store

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for key, size in sorted(self._sizes().items()):
            family.add_metric([key], size)
        return [family]


class ServiceMetrics:
    """The instruments one app records into; :meth:`render` is the ``/metrics`` body."""

    def __init__(self, shared_dir: str | None = None) -> None:
        self.shared_dir = shared_dir
        own = None if shared_dir else CollectorRegistry()  # multiprocess values live in the folder
        by_request = ["endpoint", "method", "status"]
        self.requests = Counter("viewfinder_http_requests", "HTTP requests answered, by endpoint (route template), "
                                "method and status", by_request, registry=own)
        self.errors = Counter("viewfinder_http_request_errors", "HTTP requests answered with a status of 400 or "
                              "above, by endpoint, method and status", by_request, registry=own)
        self.latency = Histogram("viewfinder_http_request_duration_seconds", "Time from receiving a request to the "
                                 "end of its answer, by endpoint and method", ["endpoint", "method"],
                                 buckets=LATENCY_BUCKETS, registry=own)
        self.batch_size = Histogram("viewfinder_inference_batch_size", "Requests per inference call (micro-batch)",
                                    buckets=BATCH_BUCKETS, registry=own)
        self.queue_depth = Gauge("viewfinder_queue_depth", "Inference requests waiting for a worker",
                                 multiprocess_mode="livesum", registry=own)
        self.queue_limit = Gauge("viewfinder_queue_limit", "Most inference requests that may wait (Serving.max_queue)",
                                 multiprocess_mode="livesum", registry=own)
        self.queue_rejections = Counter("viewfinder_queue_rejections", "Requests refused with 503 because the "
                                        "inference queue was full", registry=own)
        self.workers = Gauge("viewfinder_workers", "Inference worker threads (per process)",
                             multiprocess_mode="liveall", registry=own)
        if shared_dir:
            self.registry = CollectorRegistry()
            self.registry.register(_MergedProcesses(shared_dir))
        else:
            assert own is not None
            self.registry = own
            ProcessCollector(registry=own)

    def watch_indexes(self, sizes: Callable[[], Mapping[str, int]]) -> None:
        """Report ``sizes()`` ({indexKey: items}) on every scrape."""
        self.registry.register(_IndexSizes(sizes))

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        code = str(status)
        self.requests.labels(endpoint, method, code).inc()
        if status >= 400:
            self.errors.labels(endpoint, method, code).inc()
        self.latency.labels(endpoint, method).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text format (reads the store's index sizes: call it off the event loop)."""
        return generate_latest(self.registry)

    def close(self) -> None:
        """At shutdown: this process's live gauges leave the merged view."""
        if self.shared_dir:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)
