"""Host CPU, load, memory and swap, and lmwatch's own process, through psutil.

CPU time is exported as counters (`rate()` in PromQL gives the busy fraction), never as psutil's
`cpu_percent`, whose first reading is meaningless.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import psutil
from prometheus_client.metrics_core import Metric

from lmwatch.metrics.telemetry import HOST, HOST_CPU, HOST_GAUGES, SELF_CPU, SELF_OPEN_FDS, SELF_THREADS
from lmwatch.registry import Snapshot
from lmwatch.samplers.base import Sampler

_GUEST_MODES = frozenset({"guest", "guest_nice"})
"""On Linux guest time is already counted in user/nice: leaving it out keeps `sum()` over modes right."""


@dataclass(frozen=True)
class HostSample:
    cpu_seconds: Mapping[str, float]
    """Seconds all CPUs spent in each mode since boot (user, system, idle, iowait, ...)."""
    cpus: int
    load1: float
    load5: float
    load15: float
    memory_total_bytes: int
    memory_available_bytes: int
    memory_used_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    self_resident_memory_bytes: int
    self_cpu_seconds: Mapping[str, float]
    """lmwatch's own CPU seconds, `user` and `system`."""
    self_open_fds: int | None
    self_threads: int

    @property
    def cpu_load_ratio(self) -> float:
        """1-minute load average per CPU (1.0 = every CPU busy or waited for)."""
        return self.load1 / self.cpus if self.cpus else 0.0


class HostSampler(Sampler):
    name = "host"
    declared = HOST

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._self: psutil.Process | None = None
        """lmwatch's own process and the host's CPU count, read at the first sample, not here: psutil
        reads /proc, and the daemon builds its samplers on the event loop."""
        self._cpus = 0

    def sample(self, snapshot: Snapshot | None = None) -> HostSample:
        if self._self is None:
            self._self = psutil.Process(os.getpid())
            self._cpus = psutil.cpu_count() or 1
        times = psutil.cpu_times()
        modes = {m: float(getattr(times, m)) for m in times._fields if m not in _GUEST_MODES}
        load1, load5, load15 = psutil.getloadavg()
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        me = self._self
        with me.oneshot():
            rss = me.memory_info().rss
            cpu = me.cpu_times()
            threads = me.num_threads()
            fds = me.num_fds() if hasattr(me, "num_fds") else None
        return HostSample(
            cpu_seconds=MappingProxyType(modes),
            cpus=self._cpus,
            load1=load1,
            load5=load5,
            load15=load15,
            memory_total_bytes=memory.total,
            memory_available_bytes=memory.available,
            memory_used_bytes=memory.used,
            swap_total_bytes=swap.total,
            swap_used_bytes=swap.used,
            self_resident_memory_bytes=rss,
            self_cpu_seconds=MappingProxyType({"user": cpu.user, "system": cpu.system}),
            self_open_fds=fds,
            self_threads=threads,
        )

    def families(self, sample: HostSample) -> Iterable[Metric]:
        cpu = HOST_CPU.new()
        for mode, seconds in sample.cpu_seconds.items():
            HOST_CPU.add(cpu, (mode,), seconds)
        yield cpu
        for family, attr in HOST_GAUGES:
            yield family.value(getattr(sample, attr))
        self_cpu = SELF_CPU.new()
        for mode, seconds in sample.self_cpu_seconds.items():
            SELF_CPU.add(self_cpu, (mode,), seconds)
        yield self_cpu
        if sample.self_open_fds is not None:
            yield SELF_OPEN_FDS.value(sample.self_open_fds)
        yield SELF_THREADS.value(sample.self_threads)

    def pressure(self, sample: HostSample | None) -> dict[str, Any]:
        if sample is None:
            return {}
        return {
            "cpu_load_ratio": sample.cpu_load_ratio,
            "memory_total_bytes": sample.memory_total_bytes,
            "memory_available_bytes": sample.memory_available_bytes,
        }
