"""retained_heap: big tensors freed inside the block are reused instead of being mapped anew."""
from __future__ import annotations

import ctypes

import pytest
import torch

from viewfinder import memory
from viewfinder.memory import retained_heap

BIG = 48 * 1024 * 1024 // 4  # float32 elements: 48 MiB, above glibc's largest mmap threshold (32 MiB)
needs_glibc = pytest.mark.skipif(memory._glibc() is None, reason="mallopt is glibc's; elsewhere the block is a no-op")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _heap() -> _MallInfo2:
    """glibc's own account of the main arena: hblkhd = bytes in mmap'd blocks, fordblks = free heap bytes.

    Asked of the allocator rather than inferred from page faults, which a kernel that reclaims
    cold pages by itself (e.g. DAMON) also causes.
    """
    libc = memory._glibc()
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2()


def _big_elements() -> int:
    """float32 elements of a block bigger than BIG and than all the heap's free bytes together: no
    free chunk left by earlier tests (glibc serves blocks below its dynamic mmap threshold from the
    heap, and freed neighbours coalesce) can hold it, so only the mmap setting decides where it goes."""
    return BIG + _heap().fordblks // 4


def _big_block_is_mapped() -> bool:
    """Whether one big tensor is served by an mmap of its own (glibc's default above its threshold)."""
    elements = _big_elements()
    before = _heap().hblkhd
    tensor = torch.empty(elements)  # not filled: only where the block comes from matters
    mapped = _heap().hblkhd - before >= elements * 4
    del tensor
    return mapped


def _big_block_is_kept() -> bool:
    """Whether one big tensor comes from the heap and its memory stays there, free, once freed."""
    elements = _big_elements()
    before = _heap().hblkhd
    tensor = torch.empty(elements)
    from_heap = _heap().hblkhd - before < elements * 4
    del tensor
    return from_heap and _heap().fordblks >= elements * 4


@needs_glibc
def test_freed_big_blocks_are_reused_inside_and_returned_after() -> None:
    assert _big_block_is_mapped()  # glibc maps such a block afresh every time
    with retained_heap() as applied:
        assert applied
        assert _big_block_is_kept()  # from the heap, and kept there for reuse
    assert _big_block_is_mapped()  # defaults restored


@needs_glibc
def test_nested_blocks_keep_the_setting_until_the_outermost_ends() -> None:
    with retained_heap():
        with retained_heap() as inner:
            assert inner
        assert _big_block_is_kept()
    assert _big_block_is_mapped()


def test_disabled_or_without_glibc_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with retained_heap(enabled=False) as applied:
        assert applied is False
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    with retained_heap() as applied:
        assert applied is False
