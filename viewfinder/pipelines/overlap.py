"""Run one stage of a pipeline ahead of the next, in its own thread (issue 30).

PP-ShiTuV2 detects image i+1 while it embeds and searches the crops of image i: ONNX Runtime
releases the GIL while a model runs, so the two networks overlap instead of taking turns, and
the recogniser takes whatever detections are ready in one call (crops of several images in one
batch when the detector is ahead). Items keep their order; an exception raised by the stage is
raised to the consumer at its position, after the items before it.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class ReadAhead(Generic[T]):
    """Iterates ``source`` in a daemon thread, at most ``depth`` items ahead of the consumer.

    Use as a context manager: leaving it (normally, by an exception, or a generator closed early)
    tells the thread to stop after the item it is working on.
    """

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "viewfinder-read-ahead") -> None:
        self._source = source
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> "ReadAhead[T]":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        iterator = iter(self._source)
        try:
            for item in iterator:
                if not self._put(item):
                    break
            else:
                self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there in order
            self._put(_Raised(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _unwrap(self, item: Any) -> Any:
        if item is _DONE:
            self._finished = True
            return _DONE
        if isinstance(item, _Raised):
            self._finished = True
            raise item.error
        return item

    def groups(self, limit: int) -> Iterator[list[T]]:
        """Lists of 1 to ``limit`` items: wait for one, then take the ones already waiting."""
        held: Any = None  # the end (or an error) met while taking waiting items: dealt with next round
        while not self._finished:
            first = self._unwrap(held if held is not None else self._queue.get())
            held = None
            if first is _DONE:
                return
            group = [first]
            while len(group) < limit:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _DONE or isinstance(item, _Raised):
                    held = item  # the items before it are answered first
                    break
                group.append(item)
            yield group

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            # let a stage blocked on a full queue see the stop; it finishes its current item and exits
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
