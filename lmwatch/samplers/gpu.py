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

from lmwatch.registry import GpuPressure
from lmwatch.samplers.base import Sampler, counter, gauge

GPU_LABELS = ("gpu", "uuid", "name")


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


# (metric name, GpuStats field, help); every one labelled gpu, uuid, name.
_GAUGES: tuple[tuple[str, str, str], ...] = (
    (
        "lmwatch_gpu_utilization_ratio",
        "utilization_ratio",
        "Fraction of the last sample period (1/6 s to 1 s) in which a kernel ran on the GPU.",
    ),
    (
        "lmwatch_gpu_memory_utilization_ratio",
        "memory_utilization_ratio",
        "Fraction of the last sample period in which GPU memory was read or written.",
    ),
    ("lmwatch_gpu_memory_total_bytes", "memory_total_bytes", "Total memory of the GPU."),
    ("lmwatch_gpu_memory_used_bytes", "memory_used_bytes", "GPU memory in use."),
    ("lmwatch_gpu_memory_free_bytes", "memory_free_bytes", "GPU memory free."),
    ("lmwatch_gpu_temperature_celsius", "temperature_celsius", "GPU core temperature."),
    ("lmwatch_gpu_power_draw_watts", "power_draw_watts", "Power drawn by the GPU board."),
    ("lmwatch_gpu_power_limit_watts", "power_limit_watts", "Power limit the driver enforces on the GPU."),
    ("lmwatch_gpu_sm_clock_hertz", "sm_clock_hertz", "Current clock of the GPU's streaming multiprocessors."),
    ("lmwatch_gpu_memory_clock_hertz", "memory_clock_hertz", "Current clock of the GPU's memory."),
    (
        "lmwatch_gpu_fan_speed_ratio",
        "fan_speed_ratio",
        "Fan speed as a fraction of its maximum (can exceed 1 on some boards).",
    ),
)
_FIELDS = {f.name for f in fields(GpuStats)}
assert all(f in _FIELDS for _, f, _ in _GAUGES)


def gpu_families(sample: GpuSample) -> Iterable[Metric]:
    info = gauge(
        "lmwatch_gpu_info",
        "1 for each GPU; its identity and driver in labels.",
        [*GPU_LABELS, "vendor", "driver_version"],
    )
    for gpu in sample.gpus:
        info.add_metric([*gpu.labels, sample.vendor, sample.driver_version or ""], 1.0)
    yield info
    for name, attr, doc in _GAUGES:
        family = gauge(name, doc, GPU_LABELS)
        for gpu in sample.gpus:
            value = getattr(gpu, attr)
            if value is not None:
                family.add_metric(gpu.labels, value)
        yield family
    energy = counter(
        "lmwatch_gpu_energy_joules_total",
        "Energy the GPU consumed since the driver was loaded (absent on cards that do not report it).",
        GPU_LABELS,
    )
    for gpu in sample.gpus:
        if gpu.energy_joules is not None:
            energy.add_metric(gpu.labels, gpu.energy_joules)
    yield energy
    backend = gauge(
        "lmwatch_backend_gpu_memory_bytes",
        "GPU memory held by the processes serving a backend, per GPU.",
        ["backend", "gpu"],
    )
    for entry in sample.backend_memory:
        backend.add_metric([entry.backend, str(entry.gpu)], entry.bytes)
    yield backend


class GpuSampler(Sampler):
    """Base of the vendor samplers: subclasses set their own `name` (the collector label and job id,
    distinct per vendor) and `vendor`, and implement `sample` returning a `GpuSample`."""

    vendor = "unknown"
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
