"""A small readers-writer lock: many concurrent searches, one mutation at a time."""
from __future__ import annotations

import threading
from typing import Any


class _Side:
    """``with lock.read:`` / ``with lock.write:`` without a generator per use (search is hot)."""

    __slots__ = ("_enter", "_exit")

    def __init__(self, enter: Any, exit_: Any) -> None:
        self._enter, self._exit = enter, exit_

    def __call__(self) -> "_Side":  # also usable as lock.read() for readability
        return self

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc: object) -> None:
        self._exit()


class RWLock:
    """Writer-preferring readers-writer lock (not reentrant).

    Writers are preferred so a steady stream of searches cannot starve an append or
    remove. Not reentrant: a thread holding either side must not acquire again.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self.read = _Side(self.acquire_read, self.release_read)
        self.write = _Side(self.acquire_write, self.release_write)

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            except BaseException:
                # Interrupted while queued: readers held back by us must wake up.
                self._writers_waiting -= 1
                self._cond.notify_all()
                raise
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()
