"""A ``milvus-lite server`` subprocess on a free loopback port: the stand-in for a Milvus server
(the same gRPC API and client code), for tests that share galleries between processes."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusLiteServer:
    """``with MilvusLiteServer(folder) as server: server.store`` (``milvus://127.0.0.1:PORT``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.store = f"milvus://127.0.0.1:{self.port}"
        self.log = folder / "milvus-lite.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "MilvusLiteServer":
        with open(self.log, "ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.folder / "milvus.db"),
                 "--host", "127.0.0.1", "--port", str(self.port)], stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"milvus-lite server exited:\n{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise AssertionError(f"milvus-lite server did not start in {STARTUP_TIMEOUT_S} s")

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
