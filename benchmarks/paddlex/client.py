"""Our side of the same-run PaddleX comparison: start ``worker.py`` in the PaddleX environment.

The PaddleX environment (``make paddlex-env``) is separate from ours (Paddle never runs in
viewfinder's process); a benchmark starts one worker per configuration and asks it to time
a pass whenever it times its own, so both see the same machine load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from benchmarks.common import Timed

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = ROOT / ".venv-paddlex" / "bin" / "python"
DEFAULT_MODELS = ROOT / ".assets" / "paddlex-models"
WORKER = Path(__file__).resolve().parent / "worker.py"


class PaddleXWorker:
    """One PaddleX model or pipeline, loaded once, timed on request (see worker.py)."""

    def __init__(self, python: Path, models: Path, task: str, images: Path, *, model: str = "PP-LCNet_x1_0",
                 threads: int = 1, batch: int = 1, count: int | None = None, pin: bool = False) -> None:
        command = [str(python), str(WORKER), "--task", task, "--models", str(models), "--model", model,
                   "--images", str(images), "--threads", str(threads), "--batch", str(batch)]
        if count:
            command += ["--count", str(count)]
        if pin:
            command.append("--pin")
        environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, env=environment)

    def time(self, command: str) -> dict:
        """Send one command ("run", "build", "predict"); its answer: ms_per_image, cores_busy, ..."""
        assert self._process.stdin and self._process.stdout
        try:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except BrokenPipeError:  # it exited before reading the command
            line = ""
        if not line:
            raise RuntimeError(f"the PaddleX worker exited (code {self._process.wait()}) on {command!r}; "
                               f"run {WORKER.name} by hand to see why")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"PaddleX worker: {answer['error']}")
        return answer

    def timed(self, command: str) -> Timed:
        """``time(command)`` as a :class:`benchmarks.common.Timed`, like our own passes."""
        answer = self.time(command)
        return Timed(answer["ms_per_image"], answer["cores_busy"])

    def close(self) -> None:
        if self._process.stdin:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        self._process.wait(timeout=60)

    def __enter__(self) -> "PaddleXWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def available(python: Path, models: Path) -> str | None:
    """None when the PaddleX side is ready, else why not (one line)."""
    if not python.is_file():
        return f"no PaddleX environment at {python} (make paddlex-env)"
    if not (models / "PP-LCNet_x1_0" / "inference.yml").is_file():
        return f"no PaddleX models in {models} (make paddlex-env)"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--paddlex [PYTHON]`` and ``--paddlex-models DIR``, as every same-run benchmark takes them."""
    parser.add_argument("--paddlex", nargs="?", const=DEFAULT_PYTHON, default=None, type=Path, metavar="PYTHON",
                        help=f"time PaddleX 3.7.2 in the same run with this interpreter (default {DEFAULT_PYTHON})")
    parser.add_argument("--paddlex-models", type=Path, default=DEFAULT_MODELS)


def check_arguments(args: argparse.Namespace) -> None:
    """Stop with one line when ``--paddlex`` was asked for and the PaddleX side is not ready."""
    if args.paddlex and (problem := available(args.paddlex, args.paddlex_models)):
        raise SystemExit(problem)
