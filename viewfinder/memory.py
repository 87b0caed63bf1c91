"""Keep freed memory inside the process while a CPU training loop runs (glibc malloc tuning).

glibc's malloc serves every block above its mmap threshold (at most 32 MiB, usually far
less) with a fresh ``mmap`` and gives it back to the kernel on ``free``. A CPU training step
allocates and frees dozens of activation tensors of 5-50 MB each, so every step maps them
anew and the kernel zero-fills about 40,000 pages on first touch (measured: MobileNetV2,
batch 60 at 96 px). :func:`retained_heap` switches glibc to serve big blocks from its heap
and never trim it, so from the second step on the same pages are reused: ~2,000 page
faults per step instead of ~42,000 and, interleaved in one process, 652-682 ms per step
instead of 739-792 (docs/training.md). The price is that the process keeps its peak heap
until the block ends; on exit the defaults come back and the heap is trimmed.

Other C libraries (musl, macOS, Windows) have no ``mallopt``; there it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h) and glibc's defaults for them
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
_INT_MAX = 2**31 - 1

_lock = threading.Lock()
_depth = 0  # nested blocks: only the outermost one restores the defaults


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (has mallopt and malloc_trim), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into this process
        libc.gnu_get_libc_version  # only glibc has it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def retained_heap(enabled: bool = True) -> Iterator[bool]:
    """Within the block, glibc keeps freed memory for reuse; yields whether that took effect."""
    global _depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        applied = _depth > 0 or bool(libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
        if applied:
            _depth += 1
        else:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    if not applied:
        log.debug("mallopt refused the retained-heap settings; memory behaves as usual")
        yield False
        return
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
