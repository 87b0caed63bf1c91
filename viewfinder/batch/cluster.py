"""Ray itself: the import (with the install hint), starting a quiet local Ray or joining a cluster.

The only module of viewfinder that imports Ray, and only inside functions: importing
``viewfinder.batch`` (or running any other command) never loads it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..errors import DeviceError, EngineUnavailableError, ViewfinderError

INSTALL_HINT = 'batch jobs need Ray Data: pip install "viewfinder[ray]"'


def require_ray() -> Any:
    """The ``ray`` module, or one clear error naming the extra to install."""
    try:
        import pyarrow  # noqa: F401  (ray[data] brings it; a bare `ray` does not)
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class Workers:
    """How many actors, and what each one holds."""

    count: int
    cpus: int          # CPUs reserved per actor; also its torch threads
    gpus: float        # GPU share per actor (0 on CPU)


@contextlib.contextmanager
def connected(ray_address: str | None, num_workers: int | None) -> Iterator[Any]:
    """Ray, started locally (quiet, no dashboard) or joined at ``ray_address``; reused if already up.

    A Ray this function started is shut down on exit; one the caller started is left running.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        # errors reach the caller as exceptions; Ray need not print them (or its workers' output) as well
        quiet: dict[str, Any] = {"logging_level": logging.CRITICAL, "log_to_driver": False}
        if ray_address:
            ray.init(address=ray_address, **quiet)
        else:
            ray.init(num_cpus=max(num_workers or 0, machine_cpus()), include_dashboard=False, **quiet)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def plan_workers(ray: Any, num_workers: int | None, use_gpu: bool, inputs: int) -> Workers:
    """Actors for the cluster: one per CPU by default, or one per GPU (a share each when more workers than GPUs).

    Never more actors than inputs: each one loads a model before its first image.
    """
    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", 1))
    if use_gpu:
        gpus = float(resources.get("GPU", 0))
        if gpus <= 0:
            raise DeviceError("--device gpu, but the Ray cluster has no GPU")
        count = min(num_workers or max(1, int(gpus)), inputs)
        return Workers(count, 1, min(1.0, gpus / count))
    count = min(num_workers or cpus, inputs)
    return Workers(count, max(1, cpus // count), 0.0)


@contextlib.contextmanager
def quiet_data_context(ray: Any) -> Iterator[None]:
    """Ray Data without its own progress lines and logs (the job shows one progress bar)."""
    context = ray.data.DataContext.get_current()
    saved = {name: getattr(context, name) for name in ("enable_progress_bars", "print_on_execution_start")}
    logger = logging.getLogger("ray.data")
    level = logger.level
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logger.setLevel(logging.CRITICAL)  # its failures arrive as the exception the job raises
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        logger.setLevel(level)


_RAISED = re.compile(r"^(?:viewfinder\.errors\.)(\w+): (.+)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def worker_error(exc: BaseException) -> ViewfinderError | None:
    """A worker's own error (a model that cannot load, a bad config) as the one-line error it raised.

    Ray reports an actor whose constructor raised as ``ActorDiedError`` carrying the remote
    traceback as text; the last ``viewfinder.errors.X: message`` line in it is the user's error.
    """
    if isinstance(exc, ViewfinderError):
        return exc
    found = _RAISED.findall(_ANSI.sub("", str(getattr(exc, "error_msg", None) or exc)))
    if not found:
        return None
    name, message = found[-1]
    kind = getattr(errors, name, ViewfinderError)
    kind = kind if isinstance(kind, type) and issubclass(kind, ViewfinderError) else ViewfinderError
    try:
        return kind(f"a batch worker failed: {message}")
    except TypeError:  # an error class with a richer constructor
        return ViewfinderError(f"a batch worker failed: {message}")
