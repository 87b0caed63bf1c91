"""An ASGI app under a real uvicorn server on a free loopback port, in a thread of the test process.

For clients that must talk real HTTP (Node.js, schemathesis' CLI) to an app built from a
pipeline the test already holds: no second model load, no subprocess start-up.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

STARTUP_TIMEOUT_S = 30


class LiveServer:
    """``with LiveServer(app) as server: server.url``; the port is the one the kernel gave (port 0)."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    timeout_keep_alive=30))
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)
        self.url = ""

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive():
                raise AssertionError("uvicorn stopped before it started (see the log above)")
            if time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"uvicorn did not start in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(STARTUP_TIMEOUT_S)
