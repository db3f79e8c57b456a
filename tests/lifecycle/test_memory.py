"""Free memory from telemetry reads every GPU vendor's sampler, not only NVIDIA's (`gpu`)."""

from __future__ import annotations

from lmwatch.config import parse_config
from lmwatch.lifecycle.memory import Free, free_memory
from lmwatch.registry import GpuPressure, ProbeResult, Registry
from lmwatch.samplers.gpu import BackendGpuMemory, GpuSample, GpuStats

GIB = 1024**3


def card(vendor: str, index: int, free: int) -> GpuStats:
    return GpuStats(
        index=index, uuid=f"{vendor}-{index}", name=vendor, memory_total_bytes=24 * GIB, memory_free_bytes=free
    )


def report(registry: Registry, name: str, sample: GpuSample) -> None:
    """What the sampler runner writes for one GPU sampler's run."""
    registry.record_collector(name, True, 0.01, sample)
    gpus = tuple(
        GpuPressure(g.index, g.uuid, g.name, g.memory_total_bytes or 0, g.memory_free_bytes or 0) for g in sample.gpus
    )
    per_backend = {m.backend: m.bytes for m in sample.backend_memory}
    registry.record_host_pressure(name, gpus=gpus, backend_gpu_memory_bytes=per_backend)


def test_a_backend_on_a_second_vendors_gpu_has_its_free_memory_from_telemetry() -> None:
    registry = Registry()
    registry.configure_backends(parse_config("backends: [{name: box, url: 'http://box:1234'}]", env={}).config.backends)
    registry.record_success("box", ProbeResult(flavour="lmstudio-v1", models=(), duration=0.01))
    report(registry, "gpu", GpuSample("nvidia", "550", (card("nvidia", 0, 20 * GIB),)))
    tapir = GpuSample(
        "tapir", "1.0", (card("tapir", 0, 3 * GIB), card("tapir", 1, 9 * GIB)), (BackendGpuMemory("box", 1, GIB),)
    )
    report(registry, "gpu_tapir", tapir)
    snap = registry.snapshot()
    assert free_memory(snap.backends["box"], snap) == Free(9 * GIB, "telemetry")
