"""What every GPU sampler shares: the vendor-neutral sample, its metrics and its pressure summary.

A vendor module (`nvidia.py`; an AMD or Apple one later) only turns its library's answers into a
`GpuSample` in base units; the `lmwatch_gpu_*` families, the attribution of GPU memory to backends
and the registry's pressure summary are made here, the same for every vendor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from prometheus_client.metrics_core import Metric

from lmwatch.metrics.telemetry import BACKEND_GPU_MEMORY, GPU, GPU_ENERGY, GPU_GAUGES, GPU_INFO
from lmwatch.registry import GpuPressure
from lmwatch.samplers.base import Sampler


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    memory_bytes: int | None
    """GPU memory the process holds; None when the driver cannot tell."""


@dataclass(frozen=True)
class GpuStats:
    """One GPU at one moment, in base units; None = the card does not report it."""

    index: int
    uuid: str
    name: str
    utilization_ratio: float | None = None
    memory_utilization_ratio: float | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    temperature_celsius: float | None = None
    power_draw_watts: float | None = None
    power_limit_watts: float | None = None
    energy_joules: float | None = None
    sm_clock_hertz: float | None = None
    memory_clock_hertz: float | None = None
    fan_speed_ratio: float | None = None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def labels(self) -> list[str]:
        return [str(self.index), self.uuid, self.name]


@dataclass(frozen=True)
class BackendGpuMemory:
    backend: str
    gpu: int
    bytes: int


@dataclass(frozen=True)
class GpuSample:
    vendor: str
    driver_version: str | None
    gpus: tuple[GpuStats, ...]
    backend_memory: tuple[BackendGpuMemory, ...] = ()

    @property
    def available(self) -> bool:
        return bool(self.gpus)


def attribute(gpus: Iterable[GpuStats], pids: Mapping[int, str]) -> tuple[BackendGpuMemory, ...]:
    """Sum each GPU's per-process memory by the backend whose process it is."""
    totals: dict[tuple[str, int], int] = {}
    for gpu in gpus:
        for proc in gpu.processes:
            backend = pids.get(proc.pid)
            if backend is not None and proc.memory_bytes is not None:
                key = (backend, gpu.index)
                totals[key] = totals.get(key, 0) + proc.memory_bytes
    return tuple(BackendGpuMemory(b, g, n) for (b, g), n in sorted(totals.items()))


_FIELDS = {f.name for f in fields(GpuStats)}
assert all(f in _FIELDS for _, f in GPU_GAUGES)


def gpu_families(sample: GpuSample) -> Iterable[Metric]:
    info = GPU_INFO.new()
    for gpu in sample.gpus:
        GPU_INFO.add(info, (*gpu.labels, sample.vendor, sample.driver_version or ""), 1.0)
    yield info
    for family, attr in GPU_GAUGES:
        metric = family.new()
        for gpu in sample.gpus:
            value = getattr(gpu, attr)
            if value is not None:
                family.add(metric, gpu.labels, value)
        yield metric
    energy = GPU_ENERGY.new()
    for gpu in sample.gpus:
        if gpu.energy_joules is not None:
            GPU_ENERGY.add(energy, gpu.labels, gpu.energy_joules)
    yield energy
    backend = BACKEND_GPU_MEMORY.new()
    for entry in sample.backend_memory:
        BACKEND_GPU_MEMORY.add(backend, (entry.backend, str(entry.gpu)), entry.bytes)
    yield backend


class GpuSampler(Sampler):
    """Base of the vendor samplers: subclasses set their own `name` (the collector label and job id,
    distinct per vendor) and `vendor`, and implement `sample` returning a `GpuSample`."""

    vendor = "unknown"
    declared = GPU
    keep_last_sample = False  # a failing GPU library means its GPUs are gone: drop their series

    def families(self, sample: GpuSample) -> Iterable[Metric]:
        return gpu_families(sample)

    def reads_gpus(self, sample: GpuSample | None) -> bool:
        return sample is not None and sample.available

    def pressure(self, sample: GpuSample | None) -> dict[str, Any]:
        if sample is None:
            return {"gpus": (), "backend_gpu_memory_bytes": {}}
        gpus = tuple(
            GpuPressure(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                memory_total_bytes=g.memory_total_bytes,
                memory_free_bytes=g.memory_free_bytes,
                utilization_ratio=g.utilization_ratio,
            )
            for g in sample.gpus
            if g.memory_total_bytes is not None and g.memory_free_bytes is not None
        )
        per_backend: dict[str, int] = {}
        for entry in sample.backend_memory:
            per_backend[entry.backend] = per_backend.get(entry.backend, 0) + entry.bytes
        return {"gpus": gpus, "backend_gpu_memory_bytes": per_backend}
