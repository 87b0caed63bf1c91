"""Benchmark viewfinder's vector index (Flat / IVF / HNSW32) on clustered synthetic embeddings.

Data: unit vectors shaped like image embeddings rather than uniform noise (which has no
neighbour structure): --centres class centres, themselves grouped into super-categories,
Zipf-like class sizes and a per-class spread (mean cosine to the class centre ~0.8). Queries:
half are new samples from the same classes, half are noisy copies of gallery items.

Reports per index: build time (--build-threads), search ms/query through IndexData.search
at batch 1 and batch 64 with ONE faiss thread, recall@1/@10 against exact search, and
memory (serialised index bytes and the RSS growth while building).

    python benchmarks/index.py                  # 100k x 512
    python benchmarks/index.py --n 1000000      # 1M (needs ~10 GB RAM and patience on 2 cores)
    python benchmarks/index.py --ef-sweep 32,64,128,256 --nprobe-sweep 4,16,64 --paddlex-defaults
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402

from viewfinder.retrieval import IndexData, faiss_threads, set_num_threads  # noqa: E402


def unit(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def make_data(n: int, dim: int, centres: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = unit(rng.standard_normal((max(1, centres // 20), dim)).astype(np.float32))
    cent = unit(groups[rng.integers(0, len(groups), centres)]
                + 0.9 * rng.standard_normal((centres, dim)).astype(np.float32) / np.sqrt(dim))
    spread = rng.uniform(0.5, 1.0, centres).astype(np.float32)
    weights = 1.0 / np.arange(1, centres + 1) ** 0.5
    weights /= weights.sum()
    owner = rng.choice(centres, n, p=weights)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 50_000):  # chunks keep the temporaries small at 1M
        o = owner[s:s + 50_000]
        x[s:s + len(o)] = unit(cent[o] + spread[o, None] * rng.standard_normal((len(o), dim)).astype(np.float32)
                               / np.sqrt(dim))
    half = n_queries // 2
    qo = rng.choice(centres, half, p=weights)
    fresh = unit(cent[qo] + spread[qo, None] * rng.standard_normal((half, dim)).astype(np.float32) / np.sqrt(dim))
    src = rng.integers(0, n, n_queries - half)
    copies = unit(x[src] + 0.5 * rng.standard_normal((len(src), dim)).astype(np.float32) / np.sqrt(dim))
    return x, np.concatenate([fresh, copies])


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def time_search(idx: IndexData, q: np.ndarray, k: int, batch: int, limit: int, repeats: int,
                **kw) -> tuple[float, float]:
    """(mean, median) ms per query with a single faiss thread.

    The mean is the best of ``repeats`` passes; the median is over every batch of every
    pass, which on a shared machine filters out the batches that were descheduled.
    """
    q = q[:limit]
    best, per_batch = math.inf, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, len(q), batch):
            t = time.perf_counter()
            idx.search(q[s:s + batch] if batch > 1 else q[s], k, **kw)
            per_batch.append((time.perf_counter() - t) * 1e3 / len(q[s:s + batch]))
        best = min(best, (time.perf_counter() - t0) * 1e3 / len(q))
    return best, float(np.median(per_batch))


def recall(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    if k == 1:
        return float((found[:, 0] == exact[:, 0]).mean())
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(found.tolist(), exact.tolist())]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="gallery size (default 100000; 1000000 works)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--centres", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--types", default="Flat,IVF,HNSW32")
    ap.add_argument("--metric", default="IP", choices=["IP", "L2"])
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1,
                    help="faiss threads while building (searches always use 1)")
    ap.add_argument("--batch1-queries", type=int, default=500, help="queries timed one at a time")
    ap.add_argument("--ef-sweep", default="", help="extra HNSW32 rows at these efSearch values")
    ap.add_argument("--nprobe-sweep", default="", help="extra IVF rows at these nprobe values")
    ap.add_argument("--paddlex-defaults", action="store_true",
                    help="add an HNSW32 row with PaddleX's untuned faiss defaults (efConstruction 40, efSearch 16)")
    ap.add_argument("--repeats", type=int, default=3, help="timing passes; the best is reported")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    set_num_threads(1)

    t = time.perf_counter()
    x, q = make_data(args.n, args.dim, args.centres, args.queries, args.seed)
    print(f"data: {args.n} x {args.dim} gallery, {len(q)} queries, {args.centres} centres "
          f"({time.perf_counter() - t:.1f}s to generate)", flush=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__}, "
          f"build threads {args.build_threads}, search threads 1; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    labels = [str(i % args.centres) for i in range(args.n)]

    with faiss_threads(args.build_threads):  # ground truth, not timed
        exact = IndexData.build(x, labels, index_type="Flat", metric_type=args.metric)
        _, truth, _ = exact.search(q, args.k)
    del exact
    gc.collect()

    plans: list[tuple[str, str, dict, dict]] = []  # (row name, index_type, build params, search kwargs)
    for kind in [t.strip() for t in args.types.split(",") if t.strip()]:
        plans.append((kind, kind, {}, {}))
    if args.paddlex_defaults:
        plans.append(("HNSW32 (PaddleX defaults)", "HNSW32", {"ef_construction": 40, "ef_search": 16}, {}))

    header = ("| index | params | build s | ms/query b=1 mean (median) | ms/query b=64 mean (median) "
              "| recall@1 | recall@10 | index MB | RSS +MB |")
    rows = [header, "|" + "---|" * 9]
    print(header, flush=True)
    for name, kind, build_params, _ in plans:
        gc.collect()
        rss0 = rss_bytes()
        t = time.perf_counter()
        with faiss_threads(args.build_threads):
            idx = IndexData.build(x, labels, index_type=kind, metric_type=args.metric, **build_params)
        build_s = time.perf_counter() - t
        rss_mb = (rss_bytes() - rss0) / 2**20
        index_mb = len(idx.index_bytes) / 2**20
        variants: list[tuple[str, dict]] = [(_describe(idx), {})]
        if kind == "HNSW32" and not build_params:
            variants += [(f"efSearch={v}", {"ef_search": int(v)}) for v in args.ef_sweep.split(",") if v]
        if kind == "IVF":
            variants += [(f"nlist={idx.nlist}, nprobe={v}", {"nprobe": int(v)}) for v in args.nprobe_sweep.split(",") if v]
        for i, (desc, kw) in enumerate(variants):
            idx.search(q[:8], args.k, **kw)  # warm-up
            ms1 = time_search(idx, q, args.k, 1, args.batch1_queries, args.repeats, **kw)
            ms64 = time_search(idx, q, args.k, 64, len(q), args.repeats, **kw)
            _, found, _ = idx.search(q, args.k, **kw)
            line = (f"| {name if i == 0 else ''} | {desc} | {build_s:.1f} "
                    f"| {ms1[0]:.3f} ({ms1[1]:.3f}) | {ms64[0]:.3f} ({ms64[1]:.3f}) "
                    f"| {recall(found, truth, 1):.3f} | {recall(found, truth, args.k):.3f} "
                    f"| {index_mb:.0f} | {rss_mb:.0f} |")
            rows.append(line)
            print(line, flush=True)
        del idx
    print("\n" + "\n".join(rows))
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _describe(idx: IndexData) -> str:
    if idx.index_type == "HNSW32":
        p = idx.info()["params"]
        return f"M=32, efConstruction={p['ef_construction']}, efSearch={p['ef_search']}"
    if idx.index_type == "IVF":
        return f"nlist={idx.nlist}, nprobe={idx.nprobe}"
    return "exact"


if __name__ == "__main__":
    main()
