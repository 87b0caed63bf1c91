"""Gallery backends at scale: search latency p50/p99 and recall@1 against exact search.

Data (``--data``): ``random`` (default): N random unit vectors (Gaussian rows, normalised) and
fresh random queries; no neighbour structure, the worst case for graph indexes (every point is
almost equally far from a query, so recall@1 is low for any HNSW). ``clustered``: the
embedding-like data of benchmarks/index.py (class centres, Zipf class sizes; half the queries
new samples of a class, half noisy copies of gallery items). Inner product, HNSW M=32 /
efConstruction 80 / ef 128 everywhere; queries searched one at a time (what one recognition
request does), top-k. Recall@1: the share of queries whose top-1 id is the exact top-1.

Sections, each a function ``(args) -> list[dict]`` whose rows share one table:

* ``faiss``         IndexData HNSW32 in this process;
* ``milvus_lite``   MilvusGallery on Milvus Lite embedded in this process (milvus:///tmp/.../x.db);
* ``milvus_server`` MilvusGallery on a ``milvus-lite server`` subprocess over loopback gRPC (the
                    stand-in for a Milvus server: the same client code), or ``--milvus_store URI``;
* ``ray``           benchmarks/batch_scale.py's ``run(args)`` when that module exists.

Also per backend: the time to write the gallery (build + index) and one-item append p50 (for
Milvus: the cross-process id lock, the counter and the insert).

    python benchmarks/scale.py                       # 100k x 512, every section
    python benchmarks/scale.py --n 20000 --skip_ray --skip_milvus_server
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # batch_scale.py, when another section adds it

from benchmarks.common import machine_description  # noqa: E402
from viewfinder.retrieval import IndexData, set_num_threads  # noqa: E402

Section = Callable[[argparse.Namespace], list[dict[str, Any]]]


# ------------------------------------------------------------------ data (made once, shared by sections)
class Data:
    def __init__(self, kind: str, n: int, dim: int, queries: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        if kind == "clustered":
            from benchmarks.index import make_data

            self.gallery, self.queries = make_data(n, dim, 1000, queries, seed)
        else:
            self.gallery = _unit(rng.standard_normal((n, dim), dtype=np.float32))
            self.queries = _unit(rng.standard_normal((queries, dim), dtype=np.float32))
        self.extra = _unit(rng.standard_normal((64, dim), dtype=np.float32))
        self.labels = [f"c{i % 1000}" for i in range(n)]
        exact = IndexData.build(self.gallery, self.labels, index_type="Flat")
        self.truth = exact.search(self.queries, 1)[1][:, 0]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


_data: Data | None = None


def data(args: argparse.Namespace) -> Data:
    global _data
    if _data is None:
        started = time.perf_counter()
        _data = Data(args.data, args.n, args.dim, args.queries, args.seed)
        print(f"data: {args.n} x {args.dim} {args.data} unit vectors, {args.queries} queries, exact top-1 in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    return _data


# ------------------------------------------------------------------ measuring one gallery
def measure(name: str, gallery: Any, write_s: float, args: argparse.Namespace, **notes: Any) -> dict[str, Any]:
    d = data(args)
    for q in d.queries[:20]:  # warm-up (connections, caches)
        gallery.search(q, args.k)
    latencies, found = [], []
    for q in d.queries:
        started = time.perf_counter()
        _, ids, _ = gallery.search(q, args.k)
        latencies.append((time.perf_counter() - started) * 1000)
        found.append(ids[0, 0])
    appends = []
    for vector in d.extra[:args.appends]:
        started = time.perf_counter()
        gallery.append(vector, ["extra"])
        appends.append((time.perf_counter() - started) * 1000)
    ms = np.asarray(latencies)
    return {"backend": name, "data": args.data, "n": args.n, "dim": args.dim, "write_s": round(write_s, 1),
            "search_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "search_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "recall@1": round(float(np.mean(np.asarray(found) == d.truth)), 3),
            "append_p50_ms": round(statistics.median(appends), 2) if appends else None, **notes}


def _faiss_source(args: argparse.Namespace) -> IndexData:
    d = data(args)
    return IndexData.build(d.gallery, d.labels, index_type="HNSW32", metric_type="IP")


# ------------------------------------------------------------------ sections
def faiss_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    started = time.perf_counter()
    index = _faiss_source(args)
    return [measure("faiss HNSW32 (in process)", index, time.perf_counter() - started, args,
                    note=f"faiss threads {args.threads}")]


def _milvus_rows(name: str, location: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from viewfinder.retrieval import write_gallery

    d = data(args)
    # The source only carries ids and labels to the writer: Flat, so no faiss graph is built for it.
    source = IndexData.build(d.gallery, d.labels, index_type="Flat", metric_type="IP")
    started = time.perf_counter()
    gallery = write_gallery(source, location, index_type="HNSW32")  # HNSW, M=32, efConstruction=80
    return [measure(name, gallery, time.perf_counter() - started, args, note="HNSW M=32 ef=128, Strong")]


def milvus_lite_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="vf-scale-") as folder:
        return _milvus_rows("Milvus Lite (embedded)", f"milvus://{folder}/scale.db?collection=scale", args)


def milvus_server_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.milvus_store:
        return _milvus_rows(f"Milvus at {args.milvus_store}", f"{args.milvus_store}?collection=vf_scale", args)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from milvus_server import MilvusLiteServer  # the test suite's stand-in server

    with tempfile.TemporaryDirectory(prefix="vf-scale-") as folder, MilvusLiteServer(Path(folder)) as server:
        return _milvus_rows("milvus-lite server (loopback gRPC)", f"{server.store}?collection=scale", args)


def ray_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        batch_scale = importlib.import_module("batch_scale")
    except ModuleNotFoundError:
        print("ray: benchmarks/batch_scale.py is not here; section skipped", flush=True)
        return []
    return list(batch_scale.run(args))


SECTIONS: list[tuple[str, Section]] = [
    ("faiss", faiss_section),
    ("milvus_lite", milvus_lite_section),
    ("milvus_server", milvus_server_section),
    ("ray", ray_section),
]


# ------------------------------------------------------------------ table
def table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="gallery size (default 100000)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--data", default="random", choices=["random", "clustered"])
    ap.add_argument("--queries", type=int, default=1000, help="queries timed one at a time")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--appends", type=int, default=50, help="one-item appends timed per backend")
    ap.add_argument("--threads", type=int, default=1, help="faiss threads in this process (1: a request's share)")
    ap.add_argument("--milvus_store", default=None,
                    help="time this Milvus server (milvus://HOST:PORT) instead of starting a milvus-lite server")
    ap.add_argument("--seed", type=int, default=0)
    for name, _ in SECTIONS:
        ap.add_argument(f"--skip_{name}", action="store_true", help=f"leave out the {name} section")
    try:  # the Ray section may declare its own flags
        batch_scale = importlib.import_module("batch_scale")
        if hasattr(batch_scale, "add_arguments"):
            batch_scale.add_arguments(ap)
    except ModuleNotFoundError:
        pass
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    set_num_threads(args.threads)
    print(machine_description(), flush=True)
    rows: list[dict[str, Any]] = []
    for name, section in SECTIONS:
        if getattr(args, f"skip_{name}"):
            continue
        print(f"-- {name}", flush=True)
        started = time.perf_counter()
        new = section(args)
        print(f"   {len(new)} row(s) in {time.perf_counter() - started:.0f} s", flush=True)
        rows += new
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
