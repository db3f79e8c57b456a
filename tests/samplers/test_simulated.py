"""`sampling.gpu: simulated`: the fake GPUs show what the simulated backends' loaded models hold,
so a load shows up on them (weights + KV cache by the simulator's rule)."""

from __future__ import annotations

from pathlib import Path

from lmwatch.registry import Snapshot
from lmwatch.samplers.gpu import GpuSample
from lmwatch.simulator import RunningSimulator
from lmwatch.simulator.memory import footprint
from tests.daemons import backend_yaml
from tests.lifecycle.helpers import MISTRAL, lifecycle_daemon


def _held(snap: Snapshot) -> int | None:
    status = snap.collectors.get("gpu")
    sample = status.sample if status is not None else None
    if not isinstance(sample, GpuSample):
        return None
    return sum(e.bytes for e in sample.backend_memory if e.backend == "studio") or None


async def test_a_load_shows_on_the_simulated_gpus(sim: RunningSimulator, tmp_path: Path) -> None:
    before = sum(i.memory_bytes for i in sim.state.catalogue.instances.values())
    model = sim.state.catalogue.models[MISTRAL]
    body = (
        f"backends:\n  - {backend_yaml('studio', sim.url)[:-1]}, keep_loaded: [{MISTRAL}]}}\n"
        "sampling: {gpu: simulated, gpu_interval: 0.2, process_interval: 0.2}\n"
    )
    async with lifecycle_daemon(tmp_path, body) as daemon:
        after = before + footprint(model.size_bytes, model.context_length)
        snap = await daemon.registry.wait_for(lambda s: _held(s) == after, timeout=10)
    assert sum(i.memory_bytes for i in sim.state.catalogue.instances.values()) == after  # the same rule
    sample = snap.collectors["gpu"].sample
    assert sample.gpus[0].memory_used_bytes == sample.gpus[0].memory_total_bytes - sample.gpus[0].memory_free_bytes
    assert sample.gpus[0].memory_used_bytes >= after
