#!/usr/bin/env python3
"""Load test of the HTTP service on loopback, against in-process ``predict`` throughput.

1. In-process baseline: ``pipeline.predict`` over the same JPEG bytes the clients send
   (batch sizes 1, 4 and 8, all cores; the best is the baseline), measured again right
   before each concurrency level so both figures see the same machine load.
2. A real server subprocess on 127.0.0.1 (``viewfinder serve``), concurrency 1/8/16
   against /image-classification: req/s, p50/p99 latency, errors, and req/s as a share
   of the in-process baseline (target at concurrency 8: >= 85 %, 0 errors).
3. The same for /shitu-infer on a 16-image index: PP-ShiTuV2 with
   examples/configs/PP-ShiTuV2_offline.yaml (the real CenterNet mainbody detector from
   ../shared/assets, MobileNetV2 features with real weights).
4. 16 clients mixing add/remove/infer on one index for ``--mixed_seconds``; the final
   idMap must equal the set the acknowledged answers imply.
5. Rejecting bad input under full load (both pipelines): while ``--reject_load`` clients keep
   the server busy, a separate client sends a truncated JPEG (the first half of a photo)
   ``--reject_probes`` times; the time until each answer (400) is printed.

Bounded: each level stops after ``--requests`` requests or ``--max_seconds``. The client
is a minimal asyncio HTTP/1.1 keep-alive client with pre-encoded bodies, so it takes as
little CPU from the server (same machine) as possible.

    .venv/bin/python benchmarks/serve_load.py [--mixed_seconds 120] [--requests 200] [--levels 1,8,16]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import jpeg_folder, machine_description  # noqa: E402

SHITU_CONFIG = ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"
WEIGHTS = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder")) / "weights" / \
    "mobilenet_v2-b0353104.pth"


# ----------------------------------------------------------------------------- a small HTTP client
class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(head + body)
                await self.writer.drain()
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionError("closed")
                length, close = 0, False
                while True:
                    line = await self.reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                data = await self.reader.readexactly(length)
                if close:
                    self.close()
                return int(status_line.split()[1]), data
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def run_level(port: int, path: str, bodies: list[bytes], concurrency: int, requests: int,
                    max_seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds

    async def client(n: int) -> None:
        connection = Connection(port)
        try:
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                start = time.perf_counter()
                try:
                    status, data = await connection.request("POST", path, bodies[(i + n) % len(bodies)])
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors.append(f"connection: {exc}")
                    continue
                latencies.append(time.perf_counter() - start)
                if status != 200 or b'"errorCode":0' not in data[:200]:
                    errors.append(f"{status}: {data[:200]!r}")
        finally:
            connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "concurrency": concurrency, "requests": len(latencies), "errors": len(errors), "error_sample": errors[:3],
        "rps": len(latencies) / wall if wall else 0.0,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
    }


async def rejection_under_load(port: int, path: str, bodies: list[bytes], bad_body: bytes, concurrency: int,
                               probes: int) -> dict[str, Any]:
    """Latency of answering ``bad_body`` (a truncated image) while ``concurrency`` clients saturate ``path``."""
    seconds: list[float] = []
    statuses: list[int] = []

    async def probe() -> None:
        await asyncio.sleep(2.0)  # let the load build a queue first
        connection = Connection(port)
        try:
            for _ in range(probes):
                start = time.perf_counter()
                status, _ = await connection.request("POST", path, bad_body)
                seconds.append(time.perf_counter() - start)
                statuses.append(status)
                await asyncio.sleep(0.5)
        finally:
            connection.close()

    load = asyncio.ensure_future(run_level(port, path, bodies, concurrency, 10 ** 6, 2.0 + probes * 30))
    await probe()
    load.cancel()
    try:
        await load
    except asyncio.CancelledError:
        pass
    return {"statuses": sorted(set(statuses)), "median_ms": 1000 * statistics.median(seconds),
            "max_ms": 1000 * max(seconds)}


def print_rejection(path: str, args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(f"\n{path}: truncated JPEG under load ({args.reject_load} clients): {args.reject_probes} probes, "
          f"answered {report['statuses']}, median {report['median_ms']:.1f} ms, max {report['max_ms']:.1f} ms")


def truncated_body(data: bytes, **fields: Any) -> bytes:
    return body_of({"image": base64.b64encode(data[: len(data) // 2]).decode(), **fields})


# ----------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(process: subprocess.Popen, port: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b"Healthy" in s.recv(4096):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise SystemExit("server did not become healthy")


def start_server(command: list[str], port: int, processes: int = 1) -> subprocess.Popen:
    if processes <= 1:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=None)
        wait_healthy(process, port)
        return process
    # /health answers once the first process is up: wait for every process's startup line.
    command = [*command[:command.index("--log_level")], "--log_level", "info", "--processes", str(processes)]
    log = tempfile.NamedTemporaryFile("w+", prefix="serve-", suffix=".log", delete=False)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    wait_healthy(process, port)
    deadline = time.monotonic() + 300
    while Path(log.name).read_text().count("Application startup complete") < processes:
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"server processes did not all start; log: {log.name}")
        time.sleep(0.2)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


# ----------------------------------------------------------------------------- in-process baselines
def in_process_rps(predict: Any, datas: list[bytes], batch_sizes: tuple[int, ...], rounds: int) -> dict[int, float]:
    out = {}
    for size in batch_sizes:
        list(predict(datas[:size], size))  # warm-up
        start = time.perf_counter()
        done = 0
        for _ in range(rounds):
            done += len(list(predict(datas, size)))
        out[size] = done / (time.perf_counter() - start)
    return out


def levels_with_baseline(args: argparse.Namespace, port: int, path: str, bodies: list[bytes],
                         baseline: Any) -> list[dict[str, Any]]:
    """Each level right after an in-process measurement, so both see the same machine load."""
    rows = []
    for concurrency in args.levels:
        reference = baseline()
        row = asyncio.run(run_level(port, path, bodies, concurrency, args.requests, args.max_seconds))
        rows.append({**row, "baseline": reference})
    return rows


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print("| concurrency | requests | req/s | in-process img/s | server / in-process | p50 ms | p99 ms | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} | {r['rps']:.1f} | {r['baseline']:.1f} | "
              f"{100 * r['rps'] / r['baseline']:.0f} % | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} |")
        if r["error_sample"]:
            print(f"  errors, e.g.: {r['error_sample']}")


# ----------------------------------------------------------------------------- scenarios
def classification(args: argparse.Namespace, datas: list[bytes], work: Path) -> None:
    import yaml

    from viewfinder import create_pipeline

    config = {"pipeline_name": "image_classification", "SubModules": {"ImageClassification": {
        "model_name": args.model, "weights": str(WEIGHTS) if args.model == "MobileNetV2_x1_0" else None,
        "engine": args.engine, "batch_size": 8, "topk": 5}}}
    path = work / "classify.yaml"
    path.write_text(yaml.safe_dump(config))
    pipeline = create_pipeline(str(path), device="cpu", pretrained=args.model == "MobileNetV2_x1_0")
    engine = type(pipeline.model.engine).__name__
    predict = lambda items, size: pipeline.predict(items, batch_size=size)  # noqa: E731
    sizes = in_process_rps(predict, datas, (1, 4, 8), args.baseline_rounds)
    best = max(sizes, key=sizes.get)
    print(f"\n/image-classification: {args.model} ({engine}); in-process predict over the same JPEG bytes: "
          + ", ".join(f"batch {b}: {v:.1f} img/s" for b, v in sizes.items()) + f" -> baseline: batch {best}")

    port = free_port()
    command = [sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(path), "--host", "127.0.0.1",
               "--port", str(port), "--log_level", "warning"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.model != "MobileNetV2_x1_0":
        command.append("--random_init")
    server = start_server(command, port, args.processes)
    try:
        encoded = [base64.b64encode(d).decode() for d in datas]
        bodies = [body_of({"image": e, "topk": 5, "visualize": args.visualize}) for e in encoded]
        asyncio.run(run_level(port, "/image-classification", bodies, 2, 8, 30))  # warm-up
        rows = levels_with_baseline(args, port, "/image-classification", bodies,
                                    lambda: in_process_rps(predict, datas, (best,), args.baseline_rounds)[best])
        rejection = asyncio.run(rejection_under_load(port, "/image-classification", bodies, truncated_body(datas[0]),
                                                     args.reject_load, args.reject_probes)) \
            if args.reject_probes else None
    finally:
        stop(server)
        del pipeline
        gc.collect()
    print_table(f"/image-classification (visualize={args.visualize})", rows)
    if rejection is not None:
        print_rejection("/image-classification", args, rejection)


def shitu_config(work: Path, engine: str | None) -> Path:
    """examples/configs/PP-ShiTuV2_offline.yaml: real CenterNet mainbody detector + MobileNetV2 features."""
    import yaml

    from viewfinder.errors import ConfigError

    config = yaml.safe_load(SHITU_CONFIG.read_text())
    onnx = (SHITU_CONFIG.parent / config["SubModules"]["Detection"]["spec"]["onnx"]).resolve()
    if not onnx.is_file():
        raise ConfigError(f"{onnx} missing: the CenterNet detector lives in ../shared/assets")
    config["SubModules"]["Detection"]["spec"]["onnx"] = str(onnx)
    if engine:
        config["SubModules"]["Recognition"]["engine"] = engine
    path = work / "shitu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def shitu_baseline(config: Path, datas: list[bytes]) -> Any:
    """A function measuring in-process ``predict`` img/s on a 16-image index of the same photos."""
    from viewfinder import create_pipeline
    from viewfinder.serving.images import decode_bgr

    pipeline = create_pipeline(str(config), device="cpu")
    index = pipeline.build_index([decode_bgr(d) for d in datas], [f"g{i}" for i in range(len(datas))],
                                 metric_type="IP", index_type="Flat", show_progress=False)
    list(pipeline.predict(datas[:2], index=index))  # warm-up
    return lambda rounds: in_process_rps(lambda items, size: pipeline.predict(items, index=index), datas,
                                         (len(datas),), rounds)[len(datas)]


async def mixed(port: int, key: str, add_body: bytes, infer_body: bytes, clients: int, seconds: float,
                start_map: dict[int, str]) -> dict[str, Any]:
    added: dict[int, str] = {}
    removed: set[int] = set()
    counts = {"add": 0, "remove": 0, "infer": 0}
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    add_payload = json.loads(add_body)

    async def client(n: int) -> None:
        rng = random.Random(n)
        connection = Connection(port)
        mine: list[int] = []
        i = 0
        try:
            while time.perf_counter() < deadline:
                roll = rng.random()
                if roll < 0.3:
                    label = f"c{n}-{i}"
                    i += 1
                    payload = {**add_payload, "indexKey": key, "changedOnly": True,
                               "imageLabelPairs": [{"image": add_payload["imageLabelPairs"][0]["image"], "label": label}]}
                    status, data = await connection.request("POST", "/shitu-index-add", body_of(payload))
                    if status == 200:
                        result = json.loads(data)["result"]
                        added.update({int(k): v for k, v in result["idMap"].items()})
                        mine.extend(result["addedIds"])
                        counts["add"] += 1
                    else:
                        errors.append(f"add {status}: {data[:200]!r}")
                elif roll < 0.5 and mine:
                    victim = mine.pop(rng.randrange(len(mine)))
                    status, data = await connection.request("POST", "/shitu-index-remove", body_of(
                        {"indexKey": key, "ids": [victim], "changedOnly": True}))
                    if status == 200 and json.loads(data)["result"]["removedIds"] == [victim]:
                        removed.add(victim)
                        counts["remove"] += 1
                    else:
                        errors.append(f"remove {status}: {data[:200]!r}")
                else:
                    status, data = await connection.request("POST", "/shitu-infer", infer_body)
                    if status == 200:
                        counts["infer"] += 1
                    else:
                        errors.append(f"infer {status}: {data[:200]!r}")
        finally:
            connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    wall = time.perf_counter() - start
    connection = Connection(port)
    status, data = await connection.request("GET", f"/shitu-index/{key}?withIdMap=true")
    connection.close()
    final = {int(k): v for k, v in json.loads(data)["result"]["idMap"].items()}
    expected = {**start_map, **{i: v for i, v in added.items() if i not in removed}}
    return {"wall": wall, "counts": counts, "errors": errors, "final_size": len(final),
            "expected_size": len(expected), "match": final == expected}


def shitu(args: argparse.Namespace, datas: list[bytes], work: Path) -> None:
    config = shitu_config(work, args.engine)
    baseline = shitu_baseline(config, datas)
    port = free_port()
    command = [sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config), "--host", "127.0.0.1",
               "--port", str(port), "--data_dir", str(work / "indexes"), "--log_level", "warning"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    print(f"\n/shitu-infer: PP-ShiTuV2 ({SHITU_CONFIG.relative_to(ROOT)}: CenterNet detector, MobileNetV2 "
          f"features, whole image added); baseline: in-process predict over the same JPEG bytes")
    server = start_server(command, port, args.processes)
    try:
        encoded = [base64.b64encode(d).decode() for d in datas]

        async def build() -> dict[str, Any]:
            connection = Connection(port)
            status, data = await connection.request("POST", "/shitu-index-build", body_of(
                {"imageLabelPairs": [{"image": e, "label": f"g{i}"} for i, e in enumerate(encoded)]}))
            connection.close()
            assert status == 200, data[:300]
            return json.loads(data)["result"]

        built = asyncio.run(build())
        key = built["indexKey"]
        bodies = [body_of({"image": e, "indexKey": key, "visualize": args.visualize}) for e in encoded]
        asyncio.run(run_level(port, "/shitu-infer", bodies, 2, 8, 30))  # warm-up
        rows = levels_with_baseline(args, port, "/shitu-infer", bodies, lambda: baseline(args.baseline_rounds))
        print_table(f"/shitu-infer (visualize={args.visualize}, index of {len(datas)} images)", rows)
        if args.reject_probes:
            bad = truncated_body(datas[0], indexKey=key)
            print_rejection("/shitu-infer", args, asyncio.run(
                rejection_under_load(port, "/shitu-infer", bodies, bad, args.reject_load, args.reject_probes)))

        if args.mixed_seconds > 0:
            add_body = body_of({"imageLabelPairs": [{"image": encoded[0], "label": "x"}]})
            infer_body = body_of({"image": encoded[1], "indexKey": key, "visualize": False})
            start_map = {int(k): v for k, v in built["idMap"].items()}
            report = asyncio.run(mixed(port, key, add_body, infer_body, 16, args.mixed_seconds, start_map))
            c = report["counts"]
            print(f"\nmixed: 16 clients, {report['wall']:.0f} s: {c['add']} adds, {c['remove']} removes, "
                  f"{c['infer']} infers ({sum(c.values()) / report['wall']:.1f} ops/s), {len(report['errors'])} errors"
                  f"{' e.g. ' + str(report['errors'][:2]) if report['errors'] else ''}; final idMap "
                  f"{report['final_size']} entries, expected {report['expected_size']}: "
                  f"{'EQUAL' if report['match'] else 'DIFFERENT'}")
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="MobileNetV2_x1_0", help="classification model (MobileNetV2_x1_0 has "
                        "real weights; others run with random weights)")
    parser.add_argument("--engine", default=None, help="torch, onnxruntime or auto (default: the library default)")
    parser.add_argument("--levels", default="1,8,16", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level (at most)")
    parser.add_argument("--max_seconds", type=float, default=60.0, help="time cap per concurrency level")
    parser.add_argument("--mixed_seconds", type=float, default=120.0, help="mixed add/remove/infer phase (0: skip)")
    parser.add_argument("--images", type=int, default=16, help="distinct 640x480 JPEGs sent by the clients")
    parser.add_argument("--baseline_rounds", type=int, default=2, help="passes over the images per baseline")
    parser.add_argument("--workers", type=int, default=None, help="server inference workers (default: cores)")
    parser.add_argument("--processes", type=int, default=1, help="server processes on the port (serve --processes)")
    parser.add_argument("--visualize", action="store_true", help="ask for result images too")
    parser.add_argument("--only", choices=["classification", "shitu"], default=None)
    parser.add_argument("--reject_probes", type=int, default=10, help="truncated-JPEG requests sent under load "
                        "(0: skip)")
    parser.add_argument("--reject_load", type=int, default=8, help="clients keeping the server busy meanwhile")
    args = parser.parse_args()
    if not WEIGHTS.is_file():
        raise SystemExit(f"{WEIGHTS} missing: run `make seed`")
    os.environ.setdefault("VIEWFINDER_OFFLINE", "1")

    folder = jpeg_folder(args.images)
    datas = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[: args.images]]
    print(f"machine: {machine_description()}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"clients: asyncio keep-alive HTTP/1.1 on 127.0.0.1; {len(datas)} JPEGs 640x480 "
          f"({sum(map(len, datas)) // len(datas) // 1024} KiB each), Base64 in JSON")
    with tempfile.TemporaryDirectory(prefix="vf-serve-load-") as tmp:
        if args.only in (None, "classification"):
            classification(args, datas, Path(tmp))
        if args.only in (None, "shitu"):
            shitu(args, datas, Path(tmp))


if __name__ == "__main__":
    main()
