"""What sharing one index folder between server replicas costs (``IndexStore``, no HTTP, no models).

Two stores on one ``data_dir`` stand for two replicas. Per index size (Flat, 512-d, inner
product, random unit vectors) it times:

* ``get`` when nothing changed: the version check every recognition request pays (one stat);
* a one-item add through replica A: lock + copy + append + save (what the writer pays);
* the next ``get`` on replica B: the reload after another replica saved;
* the same add when the index is served by one process only (no reload, same copy + save).

    python benchmarks/replicas.py                    # 1k, 10k, 100k items
    python benchmarks/replicas.py --sizes 1000000    # ~2 GB on disk per copy
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_description  # noqa: E402
from viewfinder.retrieval import IndexData  # noqa: E402
from viewfinder.serving.storage import IndexStore  # noqa: E402

DIM = 512


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed_ms(run, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def measure(size: int, repeats: int, folder: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    first, second = IndexStore(folder), IndexStore(folder)
    key = first.create(IndexData.build(unit_rows(rng, size), [f"item{i % 1000}" for i in range(size)],
                                       index_type="Flat", metric_type="IP"))
    second.get(key)
    new_row = unit_rows(rng, 1)

    def add(store: IndexStore) -> None:
        store.update(key, lambda index: index.append(new_row, ["new"]))

    unchanged_us = timed_ms(lambda: second.get(key), 2000) * 1e3
    add_ms, reload_ms = [], []
    for _ in range(repeats):
        add_ms.append(timed_ms(lambda: add(first), 1))
        reload_ms.append(timed_ms(lambda: second.get(key), 1))
    first.get(key)  # A is current again: its adds pay no reload
    alone_ms = timed_ms(lambda: add(first), repeats)
    assert len(second.get(key)) == size + 2 * repeats
    return {"size": size, "unchanged_get_us": unchanged_us, "add_ms": statistics.median(add_ms),
            "reload_ms": statistics.median(reload_ms), "add_alone_ms": alone_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the index folders go (default: a temp folder)")
    args = parser.parse_args()
    print(machine_description())
    print(f"Flat {DIM}-d, two IndexStores on one folder; median of {args.repeats} (get: of 2000)")
    print("| items | get, unchanged (us) | add through A (ms) | next get on B: reload (ms) | add, one process (ms) |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in args.sizes:
            row = measure(size, args.repeats, Path(tmp) / str(size))
            print(f"| {row['size']:,} | {row['unchanged_get_us']:.1f} | {row['add_ms']:.1f} | "
                  f"{row['reload_ms']:.1f} | {row['add_alone_ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
