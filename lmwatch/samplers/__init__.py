"""Host, process and GPU telemetry: one module per source, all behind `Sampler` (see base.py).

A new source is one new module with a `Sampler` subclass and one line in
`GPU_VENDORS` (a GPU vendor) or `build_samplers`; the runner, the metrics collector and the
registry need no change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from lmwatch.config import Config, SamplingConfig
from lmwatch.samplers.base import Sampler, SamplerUnavailable
from lmwatch.samplers.host import HostSampler
from lmwatch.samplers.nvidia import NvidiaSampler
from lmwatch.samplers.process import ProcessSampler

__all__ = ["GPU_VENDORS", "Sampler", "SamplerUnavailable", "build_samplers"]


def _nvidia(sampling: SamplingConfig) -> Sampler:
    if sampling.gpu == "simulated":  # the simulator's fake NVML, imported only for it
        from lmwatch.samplers.simulated import SimulatedNvidiaSampler

        return SimulatedNvidiaSampler(sampling.gpu_interval, retry_interval=sampling.gpu_retry_interval)
    return NvidiaSampler(sampling.gpu_interval, retry_interval=sampling.gpu_retry_interval)


GPU_VENDORS: Final[dict[str, Callable[[SamplingConfig], Sampler]]] = {"nvidia": _nvidia}
"""One line per GPU vendor: the sampler `sampling.gpu: auto` (or `simulated`) runs for it. Each has a
name of its own, so two vendors on one host are both reported."""


def build_samplers(config: Config) -> list[Sampler]:
    """The samplers `config.sampling` asks for, in the order a round runs them (process before GPU:
    the GPU samplers attribute memory to the processes the process sampler found)."""
    s = config.sampling
    samplers: list[Sampler] = [
        HostSampler(s.host_interval),
        ProcessSampler(s.process_interval, s.process_rescan_interval),
    ]
    if s.gpu != "off":
        samplers.extend(make(s) for make in GPU_VENDORS.values())
    return samplers
