"""How many CPU threads inference uses by default: the physical cores this process may run on.

Hyper-threads share one core's vector units, so more intra-op threads than physical
cores only adds contention; CPUs outside the affinity mask (containers, ``taskset``)
are not ours to use.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def _allowed_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Distinct physical cores among the CPUs this process may use (Linux sysfs; logical count elsewhere)."""
    cpus = _allowed_cpus()
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores) or len(cpus))


def resolve_cpu_threads(cpu_threads: int | None) -> int:
    """``cpu_threads`` checked, or the physical core count when it is None."""
    if cpu_threads is None:
        return physical_cores()
    if isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int) or cpu_threads < 1:
        raise ConfigError(f"cpu_threads must be a positive integer, got {cpu_threads!r}")
    return cpu_threads
