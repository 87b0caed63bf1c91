"""Several images through PP-ShiTuV2 at once, one core each ("lanes", issue 30).

With one image at a time on 2 cores, both networks split every convolution across the two
threads and the detector's and recogniser's threads share the cores. Two lanes of one thread
each, every lane taking whole images through decode, detection, crops and embedding, took 7-16 %
less time per image (``benchmarks/shitu_schedules.py``, one-crop, 2 threads: fp32 117.9 vs 140.5
ms/img, int8 97.1 vs 113.0, bf16 66.9 vs 71.6). A single image still gets every core (the
service's requests): lanes are used only for inputs that name several images.

Each lane runs twins of the pipeline's models whose engines take concurrent calls on one thread
each (``engine.for_lanes``: a one-thread ONNX Runtime session; one-thread OpenVINO models, one
per lane); the gallery search and the results stay in the caller's thread, in input order.
"""
from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

AUTO = "auto"


def check_lanes(value: Any) -> int | str:
    """``cpu_lanes`` from a config: "auto" (the default: one lane per CPU thread for several
    images) or a positive integer (1: never)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"cpu_lanes must be 'auto' or a positive integer, got {value!r}")
    return value


def several_images(input: Any) -> bool:
    """Whether ``input`` names more than one image without reading it: a list, tuple or dict of
    two or more, or a folder (a generator or a single source: no)."""
    if isinstance(input, (list, tuple, dict)):
        return len(input) > 1
    return isinstance(input, (str, Path)) and Path(str(input)).expanduser().is_dir()


def lane_count(setting: int | str, cpu_threads: int) -> int:
    """How many lanes: ``cpu_threads`` for "auto", else the setting, never more than the threads."""
    return cpu_threads if setting == AUTO else min(int(setting), cpu_threads)


def lane_twin(predictor: Any, lanes: int) -> Any | None:
    """``predictor`` over its engine's twin for ``lanes`` concurrent one-thread calls; None when
    the engine has none (torch, a GPU)."""
    make = getattr(predictor.engine, "for_lanes", None)
    engine = make(lanes) if make is not None else None
    if engine is None:
        return None
    twin = copy.copy(predictor)
    twin.engine = engine
    return twin


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """``function`` over ``items`` in ``workers`` threads, results in input order, at most
    ``ahead`` items in flight; an exception (from ``items`` or ``function``) is raised in its
    place, after the results before it. Closing the iterator early cancels what has not started."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="viewfinder-shitu-lane")
    pending: deque[Future] = deque()
    source = iter(items)
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < ahead:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                except Exception as exc:
                    while pending:  # the results before the error first
                        yield pending.popleft().result()
                    raise exc
                pending.append(pool.submit(function, item))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
