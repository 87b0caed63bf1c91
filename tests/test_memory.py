"""retained_heap: big tensors freed inside the block are reused instead of being mapped anew."""
from __future__ import annotations

import resource

import pytest
import torch

from viewfinder import memory
from viewfinder.memory import retained_heap

BIG = 48 * 1024 * 1024 // 4  # float32 elements: 48 MiB, above glibc's largest mmap threshold (32 MiB)
needs_glibc = pytest.mark.skipif(memory._glibc() is None, reason="mallopt is glibc's; elsewhere the block is a no-op")


def _faults_per_cycle(cycles: int = 4) -> float:
    torch.ones(BIG).sum()  # the first allocation in a block may fault; count the ones after it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        torch.ones(BIG).sum()  # allocate, touch every page, free
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / cycles


@needs_glibc
def test_freed_big_blocks_are_reused_inside_and_returned_after() -> None:
    pages = BIG * 4 // resource.getpagesize()
    outside = _faults_per_cycle()
    with retained_heap() as applied:
        assert applied
        inside = _faults_per_cycle()
    after = _faults_per_cycle()
    assert outside > pages / 2  # glibc maps such a block afresh every time
    assert inside < pages / 10, (inside, pages)
    assert after > pages / 2  # defaults restored: big blocks go back to the kernel again


@needs_glibc
def test_nested_blocks_keep_the_setting_until_the_outermost_ends() -> None:
    pages = BIG * 4 // resource.getpagesize()
    with retained_heap():
        with retained_heap() as inner:
            assert inner
        assert _faults_per_cycle() < pages / 10
    assert _faults_per_cycle() > pages / 2


def test_disabled_or_without_glibc_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with retained_heap(enabled=False) as applied:
        assert applied is False
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    with retained_heap() as applied:
        assert applied is False
