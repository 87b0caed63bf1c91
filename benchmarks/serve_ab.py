#!/usr/bin/env python3
"""Paired service throughput of two builds: both servers up at once, rounds alternating A, B, B, A, ...

On a shared 2-core machine the same build's req/s moves by up to 10 % between runs minutes apart,
so a few-percent difference between builds is only seen in runs taken side by side. Each build is
a checkout (e.g. a ``git worktree`` of an older commit) started with this interpreter from its own
folder; ``TREE:MS`` sets ``Serving.batch_window_ms`` for that side. Per round: req/s at the given
concurrency against /image-classification (MobileNetV2_x1_0, real weights) and the server's CPU
time per request (from /proc). Prints each round, the medians and the B/A ratios.

    git worktree add --detach /tmp/before 3ab43f7
    .venv/bin/python benchmarks/serve_ab.py /tmp/before . --rounds 12 --requests 400
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import jpeg_folder  # noqa: E402
from benchmarks.serve_load import WEIGHTS, body_of, free_port, run_level, stop, wait_healthy  # noqa: E402


def server_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(tree: Path, window_ms: str, work: Path, name: str) -> tuple[subprocess.Popen, int]:
    config: dict = {"pipeline_name": "image_classification", "SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": str(WEIGHTS), "batch_size": 8, "topk": 5}}}
    if window_ms:
        config["Serving"] = {"batch_window_ms": float(window_ms)}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(path),
                                "--host", "127.0.0.1", "--port", str(port), "--log_level", "warning"],
                               cwd=tree, stdout=subprocess.DEVNULL)
    wait_healthy(process, port)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="build A: a checkout folder, optionally :WINDOW_MS")
    parser.add_argument("b", help="build B, likewise")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=400, help="requests per round and build")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    sides = {}
    for label, spec in (("A", args.a), ("B", args.b)):
        tree, _, window = spec.partition(":")
        if not (Path(tree) / "viewfinder").is_dir():
            parser.error(f"{tree}: not a viewfinder checkout (no viewfinder/ folder)")
        sides[label] = (Path(tree).resolve(), window)
    datas = [p.read_bytes() for p in sorted(jpeg_folder(16).glob("*.jpg"))][:16]
    bodies = [body_of({"image": base64.b64encode(d).decode(), "topk": 5, "visualize": False}) for d in datas]
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {label: start(tree, window, Path(tmp), label) for label, (tree, window) in sides.items()}
        try:
            for process, port in servers.values():  # warm-up
                asyncio.run(run_level(port, "/image-classification", bodies, args.concurrency, 150, 30))
            for round_ in range(args.rounds):
                for label in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                    process, port = servers[label]
                    before = server_cpu_seconds(process.pid)
                    row = asyncio.run(run_level(port, "/image-classification", bodies, args.concurrency,
                                                args.requests, 120))
                    cpu_ms = 1000 * (server_cpu_seconds(process.pid) - before) / row["requests"]
                    results[label].append((row["rps"], cpu_ms))
                print(f"round {round_ + 1}: " + "  ".join(
                    f"{label} {results[label][-1][0]:.1f} req/s {results[label][-1][1]:.2f} ms CPU/req"
                    for label in ("A", "B")), flush=True)
        finally:
            for process, _ in servers.values():
                stop(process)
    for label, (tree, window) in sides.items():
        rps = [r for r, _ in results[label]]
        cpu = [c for _, c in results[label]]
        print(f"{label} = {tree}{' window ' + window + ' ms' if window else ''}: req/s median "
              f"{statistics.median(rps):.1f} (min {min(rps):.1f}, max {max(rps):.1f}); "
              f"CPU ms/request median {statistics.median(cpu):.2f}")
    ratios = [b[0] / a[0] for a, b in zip(results["A"], results["B"])]
    cpu_ratios = [b[1] / a[1] for a, b in zip(results["A"], results["B"])]
    print(f"B/A req/s per round: median {statistics.median(ratios):.3f}, mean {statistics.mean(ratios):.3f}; "
          f"B/A CPU per request: median {statistics.median(cpu_ratios):.3f}")


if __name__ == "__main__":
    main()
