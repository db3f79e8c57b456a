"""Host, process and GPU telemetry: one module per source, all behind `Sampler` (see base.py).

A new source (another GPU vendor) is one new module with a `Sampler` subclass and one line in
`build_samplers`; the runner, the metrics collector and the registry need no change.
"""

from __future__ import annotations

from lmwatch.config import Config
from lmwatch.samplers.base import Sampler, SamplerUnavailable
from lmwatch.samplers.host import HostSampler
from lmwatch.samplers.nvidia import NvidiaSampler
from lmwatch.samplers.process import ProcessSampler

__all__ = ["Sampler", "SamplerUnavailable", "build_samplers"]


def build_samplers(config: Config) -> list[Sampler]:
    """The samplers `config.sampling` asks for, in the order a round runs them (process before GPU:
    the GPU sampler attributes memory to the processes the process sampler found)."""
    s = config.sampling
    samplers: list[Sampler] = [
        HostSampler(s.host_interval),
        ProcessSampler(s.process_interval, s.process_rescan_interval),
    ]
    if s.gpu == "auto":
        samplers.append(NvidiaSampler(s.gpu_interval, retry_interval=s.gpu_retry_interval))
    elif s.gpu == "simulated":
        from lmwatch.samplers.fake_nvml import SimulatedNvidiaSampler

        samplers.append(SimulatedNvidiaSampler(s.gpu_interval, retry_interval=s.gpu_retry_interval))
    return samplers
