"""pipelines/overlap.py: one stage runs ahead in its own thread; order, errors and early exits hold."""
from __future__ import annotations

import threading
import time

import pytest

from viewfinder.pipelines.overlap import ReadAhead


def _flat(groups):
    return [item for group in groups for item in group]


def test_order_and_group_sizes():
    with ReadAhead(range(10), depth=4) as ahead:
        groups = list(ahead.groups(limit=3))
    assert _flat(groups) == list(range(10))
    assert all(1 <= len(g) <= 3 for g in groups)


def test_groups_grow_while_the_consumer_is_slower():
    with ReadAhead(range(12), depth=8) as ahead:
        sizes = []
        for group in ahead.groups(limit=4):
            sizes.append(len(group))
            time.sleep(0.05)  # the stage fills the queue meanwhile
    assert sum(sizes) == 12 and max(sizes) == 4


def test_an_error_arrives_after_the_items_before_it():
    def stage():
        yield from (1, 2, 3)
        raise ValueError("stage failed")

    seen = []
    with pytest.raises(ValueError, match="stage failed"):
        with ReadAhead(stage(), depth=8) as ahead:
            for group in ahead.groups(limit=8):
                seen.extend(group)
    assert seen == [1, 2, 3]


def test_leaving_early_stops_the_stage():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    ahead = ReadAhead(endless(), depth=2)
    with ahead:
        for group in ahead.groups(limit=2):
            if group[-1] >= 5:
                break
    assert closed.wait(2.0)  # the stage's generator was closed in its thread
    ahead._thread.join(2.0)
    assert not ahead._thread.is_alive()
