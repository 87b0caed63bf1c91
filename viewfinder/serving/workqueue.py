"""The bounded work queue: how many inference requests may wait for a worker at once.

A request is *queued* from the moment it asks for inference work (a place in a micro-batch,
or a worker call) until a worker takes it up or it gives up (timeout, client gone). While
``limit`` requests are queued, the next one is refused at once with
:class:`~viewfinder.errors.ServiceBusyError` (503 + ``Retry-After``) instead of joining an
unbounded pile-up. Used from the event loop only, so plain integers suffice.
"""
from __future__ import annotations

from collections.abc import Callable

from ..errors import ServiceBusyError

#: seconds a refused client is asked to wait (``Retry-After``)
RETRY_AFTER_S = 1


class WorkQueue:
    """Counts queued requests against ``limit`` (None: no limit)."""

    def __init__(self, limit: int | None = None, on_depth: Callable[[int], None] | None = None,
                 on_reject: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.depth = 0
        self._on_depth = on_depth
        self._on_reject = on_reject

    @property
    def full(self) -> bool:
        return self.limit is not None and self.depth >= self.limit

    def refuse(self) -> ServiceBusyError:
        """The error for a request that finds the queue full (and count it)."""
        if self._on_reject is not None:
            self._on_reject()
        return ServiceBusyError(f"the service is busy: {self.depth} requests are already waiting for inference "
                                f"(Serving.max_queue = {self.limit}); retry after {RETRY_AFTER_S} s", RETRY_AFTER_S)

    def admit(self) -> "Ticket":
        """A place in the queue, or ServiceBusyError when it is full."""
        if self.full:
            raise self.refuse()
        self._move(1)
        return Ticket(self)

    def _move(self, step: int) -> None:
        self.depth += step
        if self._on_depth is not None:
            self._on_depth(self.depth)


class Ticket:
    """One queued request's place; :meth:`leave` (idempotent) when a worker takes it or it gives up."""

    __slots__ = ("_queue",)

    def __init__(self, queue: WorkQueue) -> None:
        self._queue: WorkQueue | None = queue

    def leave(self, *_: object) -> None:  # also a future's done-callback
        queue, self._queue = self._queue, None
        if queue is not None:
            queue._move(-1)
