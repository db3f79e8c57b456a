"""`sampling.gpu: simulated`: the NVIDIA sampler over the simulator's fake NVML, so the GPU metrics
and dashboards can be tried without a GPU."""

from __future__ import annotations

import time
from collections.abc import Callable

from lmwatch.registry import Snapshot
from lmwatch.samplers.nvidia import NvidiaSampler
from lmwatch.samplers.process import main_pids
from lmwatch.simulator.memory import footprint
from lmwatch.simulator.nvml import GIB, FakeNvml


class SimulatedNvidiaSampler(NvidiaSampler):
    """`sampling.gpu: simulated`: the NVIDIA sampler over two fake GPUs whose memory is held by the
    processes serving the local backends (as found by the process sampler)."""

    def __init__(
        self,
        interval: float = 5.0,
        fake: FakeNvml | None = None,
        retry_interval: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fake = fake if fake is not None else FakeNvml.simulated()
        super().__init__(interval, nvml=self.fake, retry_interval=retry_interval, clock=clock)

    def _prepare(self, snapshot: Snapshot) -> None:
        """Each backend's process holds what its loaded models hold (weights + KV cache by the
        simulator's rule), so loads and unloads show on the GPUs; 6 GiB when the server reports no sizes."""
        pids = main_pids(snapshot)
        held: dict[int, int] = {}
        for name in sorted(pids):
            backend = snapshot.backends.get(name)
            models = backend.loaded_models if backend is not None else ()
            size = sum(footprint(m.size_bytes or 0, m.loaded_context_length or 4096) for m in models if m.size_bytes)
            held[pids[name]] = held.get(pids[name], 0) + (size or 6 * GIB)
        self.fake.place_processes(held)
