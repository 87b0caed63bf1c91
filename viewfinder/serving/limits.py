"""ASGI middleware, inside the API-key and body checks: the load limits.

- **Queue full:** a POST to an endpoint that queues inference work is answered 503 with
  ``Retry-After`` before its JSON or image is even parsed while the work queue is full.
  (The authoritative check is where the request would queue, see ``batching.py``; this one
  only spares an overloaded service the parsing.)
- **Time limit:** a request not answered within ``timeout_s`` is cancelled and answered
  504 with the envelope. Work already on a worker thread finishes there (threads cannot be
  stopped) and its result is dropped; a request still queued leaves the queue. An index
  change that was already being committed still lands (as with any timed-out request).

The operator endpoints (``/health*``, ``/metrics``) are exempt from both.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from .middleware import ASGIApp, Message, Receive, Scope, Send, send_envelope
from .workqueue import WorkQueue

log = logging.getLogger("viewfinder.serving")


class LoadLimitMiddleware:
    def __init__(self, app: ASGIApp, queue: WorkQueue, queued_paths: Collection[str], timeout_s: float,
                 exempt_paths: Collection[str]) -> None:
        self.app = app
        self.queue = queue
        self.queued_paths = frozenset(queued_paths)
        self.timeout_s = float(timeout_s)
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        log_id = scope["state"]["log_id"]
        if self.queue.full and scope["method"] == "POST" and scope["path"] in self.queued_paths:
            busy = self.queue.refuse()
            await send_envelope(send, 503, log_id, str(busy), [(b"retry-after", str(busy.retry_after_s).encode())])
            return
        if self.timeout_s <= 0:
            await self.app(scope, receive, send)
            return
        await self._with_deadline(scope, receive, send, log_id)

    async def _with_deadline(self, scope: Scope, receive: Receive, send: Send, log_id: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        answered = expired = False

        async def tracked(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True  # from here on the answer is the handler's, however long it takes
            await send(message)

        def expire() -> None:
            nonlocal expired
            if not answered:
                expired = True
                task.cancel()

        timer = asyncio.get_running_loop().call_later(self.timeout_s, expire)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not expired:
                raise  # the server is shutting down, or the client went away
            self._forget_cancel(task)
            log.warning("logId %s: %s %s not answered within %g s: 504", log_id, scope["method"], scope["path"],
                        self.timeout_s)
            if not answered:
                await send_envelope(send, 504, log_id, f"the request was not answered within {self.timeout_s:g} s "
                                    "(Serving.request_timeout_s)")
        else:
            if expired:  # the handler swallowed our cancel and answered anyway
                self._forget_cancel(task)
        finally:
            timer.cancel()

    @staticmethod
    def _forget_cancel(task: asyncio.Task) -> None:
        uncancel = getattr(task, "uncancel", None)  # Python >= 3.11: keep asyncio.timeout() and TaskGroups right
        if uncancel is not None:
            uncancel()
