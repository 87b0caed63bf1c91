"""Caps the OpenMP threads faiss (and its OpenBLAS) use.

faiss.omp_set_num_threads only changes the *calling* thread's OpenMP setting (libgomp
keeps it per thread), so setting it once at import does not cap a web server's worker
threads: each of them starts with "all cores" and grows its own thread pool, which is the
memory growth PaddleClas users saw (PaddleClas #3204). We therefore re-apply the cap
lazily in whichever thread is about to call faiss.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

import faiss

from viewfinder.errors import RetrievalIndexError

_ENV = "VIEWFINDER_FAISS_THREADS"
_lock = threading.Lock()
_local = threading.local()
_generation = 0


def _from_env() -> int:
    raw = os.environ.get(_ENV, "1").strip()
    try:
        n = int(raw)
    except ValueError:
        raise RetrievalIndexError(f"{_ENV}={raw!r} is not an integer") from None
    if n < 1:
        raise RetrievalIndexError(f"{_ENV} must be >= 1, got {n}")
    return n


_num_threads = _from_env()


def get_num_threads() -> int:
    """The process-wide cap applied to every thread that calls faiss through viewfinder."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the process-wide cap (default 1, or ``$VIEWFINDER_FAISS_THREADS``)."""
    global _num_threads, _generation
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RetrievalIndexError(f"faiss thread count must be an integer >= 1, got {n!r}")
    with _lock:
        _num_threads = n
        _generation += 1
    apply_thread_cap()


def apply_thread_cap() -> None:
    """Make the calling thread honour the cap; cheap when it already does."""
    if getattr(_local, "override", None) is not None:
        return
    if getattr(_local, "generation", -1) != _generation:
        faiss.omp_set_num_threads(_num_threads)
        _local.generation = _generation


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Use ``n`` threads for faiss calls made by *this* thread inside the block.

    Handy to build a large index on all cores while searches elsewhere stay capped.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RetrievalIndexError(f"faiss thread count must be an integer >= 1, got {n!r}")
    previous = getattr(_local, "override", None)
    _local.override = n
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        _local.override = previous
        if previous is not None:
            faiss.omp_set_num_threads(previous)
        else:
            _local.generation = -1  # force the cap back on next use
            apply_thread_cap()
