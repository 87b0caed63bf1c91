#!/usr/bin/env python3
"""Concurrent /shitu-index-add requests on one large index, through the real server.

An index of ``--size`` items (the gallery of a real PP-ShiTuV2 build, grown with random unit
vectors of the same feature model) is put in the server's data_dir; ``--clients`` clients
then each add ``--adds`` single images to it at once. Prints adds/s, latencies, and checks
that every id was handed out once and the final size is right.

    .venv/bin/python benchmarks/index_writes.py                 # 100k items, 8 clients x 3 adds
    .venv/bin/python benchmarks/index_writes.py --size 10000
"""
from __future__ import annotations

import argparse
import base64
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import jpeg_folder, machine_description  # noqa: E402
from benchmarks.serve_load import free_port, shitu_config, stop, wait_healthy  # noqa: E402


def seed_index(config: Path, data_dir: Path, size: int, photo: Path) -> str:
    """A real build from one photo, grown to ``size`` with random unit vectors; saved under a new key."""
    from viewfinder import create_pipeline

    pipeline = create_pipeline(str(config), device="cpu")
    index = pipeline.build_index([str(photo)], ["seed"], metric_type="IP", index_type="Flat", show_progress=False)
    rng = np.random.default_rng(0)
    for start in range(0, size - 1, 20_000):
        n = min(20_000, size - 1 - start)
        x = rng.standard_normal((n, index.dim)).astype(np.float32)
        index.append(x / np.linalg.norm(x, axis=1, keepdims=True), [f"item{i % 1000}" for i in range(n)])
    key = str(uuid.uuid4())
    index.save(data_dir / key)
    return key


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--adds", type=int, default=3, help="single-image adds per client")
    args = parser.parse_args()
    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = shitu_config(work, None)
        photos = sorted(jpeg_folder(8).glob("*.jpg"))
        data_dir = work / "indexes"
        key = seed_index(config, data_dir, args.size, photos[0])
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config),
                                   "--host", "127.0.0.1", "--port", str(port), "--data_dir", str(data_dir),
                                   "--log_level", "warning"], cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            wait_healthy(server, port)
            url = f"http://127.0.0.1:{port}"
            images = [base64.b64encode(p.read_bytes()).decode() for p in photos]
            body = {"indexKey": key, "changedOnly": True, "imageLabelPairs": [{"image": images[1], "label": "w"}]}
            httpx.post(f"{url}/shitu-index-add", json=body, timeout=600).raise_for_status()  # warm-up + load
            latencies: list[float] = []
            added: list[int] = []
            errors: list[str] = []

            def client(n: int) -> None:
                with httpx.Client(timeout=600) as http:
                    for i in range(args.adds):
                        pair = {"image": images[(n + i) % len(images)], "label": f"c{n}-{i}"}
                        start = time.perf_counter()
                        response = http.post(f"{url}/shitu-index-add", json={**body, "imageLabelPairs": [pair]})
                        latencies.append(time.perf_counter() - start)
                        if response.status_code != 200:
                            errors.append(response.text[:200])
                            continue
                        added.extend(response.json()["result"]["addedIds"])

            threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            size = httpx.get(f"{url}/shitu-index/{key}", timeout=600).json()["result"]["size"]
        finally:
            stop(server)
    total = args.clients * args.adds
    latencies.sort()
    print(f"index of {args.size:,} items (Flat, 1280-d MobileNetV2 features); {args.clients} clients x "
          f"{args.adds} single-image adds")
    print(f"{total} adds in {wall:.1f} s: {total / wall:.2f} adds/s; latency p50 {statistics.median(latencies):.2f} s, "
          f"max {latencies[-1]:.2f} s; errors {len(errors)}; ids unique: {len(set(added)) == len(added) == total}; "
          f"final size {size:,} (expected {args.size + 1 + total:,})")


if __name__ == "__main__":
    main()
