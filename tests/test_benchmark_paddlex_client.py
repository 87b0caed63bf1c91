"""The same-run PaddleX comparison's plumbing (benchmarks/paddlex), without PaddleX itself.

PaddleX runs in its own venv (`make paddlex-env`), which CI does not build; these tests
check what a benchmark user meets when that side is missing or broken: a one-line reason,
never a hang.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Timed, time_pass  # noqa: E402
from benchmarks.paddlex.client import PaddleXWorker, available  # noqa: E402


def test_available_names_what_is_missing(tmp_path: Path) -> None:
    missing_python = tmp_path / "no-venv" / "bin" / "python"
    assert "no PaddleX environment" in available(missing_python, tmp_path)
    assert "make paddlex-env" in available(missing_python, tmp_path)
    assert "no PaddleX models" in available(Path(sys.executable), tmp_path)
    (tmp_path / "PP-LCNet_x1_0").mkdir()
    (tmp_path / "PP-LCNet_x1_0" / "inference.yml").write_text("Global: {}\n")
    assert available(Path(sys.executable), tmp_path) is None


def test_a_worker_that_cannot_start_paddlex_fails_with_a_clear_error(tmp_path: Path) -> None:
    # our own interpreter has no paddlex: the worker exits at import, the client must say so
    worker = PaddleXWorker(Path(sys.executable), tmp_path, "classify", tmp_path, threads=1, batch=1)
    with pytest.raises(RuntimeError, match=r"PaddleX worker exited \(code 1\) on 'run'"):
        worker.time("run")
    worker.close()


def test_time_pass_reports_ms_per_image_and_cores_busy() -> None:
    def two_images() -> int:
        total = 0
        for i in range(200_000):  # busy on one core
            total += i
        return 2

    timed = time_pass(two_images)
    assert isinstance(timed, Timed)
    assert timed.ms > 0
    assert 0.0 < timed.cores < 1.3  # one busy Python thread: at most one core (less when descheduled)
