"""A GPU vendor is one module plus one line in `GPU_VENDORS`: this one is defined here alone, and runs
beside the (simulated) NVIDIA sampler on one host; both vendors' GPUs are reported."""

from __future__ import annotations

import pytest

from lmwatch.config import Config, SamplingConfig
from lmwatch.registry import Registry, Snapshot
from lmwatch.samplers import GPU_VENDORS, build_samplers
from lmwatch.samplers.base import Sampler
from lmwatch.samplers.gpu import GpuSample, GpuSampler, GpuStats
from lmwatch.samplers.runner import SamplerRunner
from tests.samplers.helpers import Series, parse, scrape, value

GIB = 1024**3


class TapirGpuSampler(GpuSampler):
    name = "gpu_tapir"
    vendor = "tapir"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.working = True

    def sample(self, snapshot: Snapshot) -> GpuSample:
        if not self.working:
            raise RuntimeError("tapir driver gone")
        cards = tuple(
            GpuStats(index=i, uuid=f"TAPIR-{i}", name="Tapir T1", memory_total_bytes=8 * GIB, memory_free_bytes=GIB)
            for i in range(2)
        )
        return GpuSample(vendor=self.vendor, driver_version="1.0", gpus=cards)


@pytest.fixture
def tapir_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GPU_VENDORS, "tapir", lambda s: TapirGpuSampler(s.gpu_interval))


def gpu_info(series: Series) -> set[tuple[str, str]]:
    return {(dict(labels)["vendor"], dict(labels)["uuid"]) for name, labels in series if name == "lmwatch_gpu_info"}


@pytest.mark.usefixtures("tapir_vendor")
async def test_two_vendors_on_one_host_are_both_reported() -> None:
    samplers = build_samplers(Config(sampling=SamplingConfig(gpu="simulated")))
    names = [s.name for s in samplers]
    assert names == ["host", "process", "gpu", "gpu_tapir"]
    registry = Registry()
    runner = SamplerRunner(registry, samplers, scheduler=None)
    await runner.run_once()

    host = registry.snapshot().host
    assert [g.uuid.startswith("TAPIR") for g in host.gpus].count(True) == 2
    assert len(host.gpus) == 4, host.gpus
    text = scrape(registry, samplers)
    assert text.count("# TYPE lmwatch_gpu_info gauge") == 1  # one family, the series of both vendors
    series = parse(text)
    assert {v for v, _ in gpu_info(series)} == {"nvidia", "tapir"} and len(gpu_info(series)) == 4
    assert value(series, "lmwatch_collector_success", collector="gpu_tapir") == 1
    assert value(series, "lmwatch_collector_success", collector="gpu") == 1

    tapir = samplers[-1]
    assert isinstance(tapir, TapirGpuSampler)
    tapir.working = False  # one vendor's driver goes away: only its GPUs leave the summary
    await runner.run(tapir)
    assert [g.uuid for g in registry.snapshot().host.gpus if g.uuid.startswith("TAPIR")] == []
    assert len(registry.snapshot().host.gpus) == 2
    assert {v for v, _ in gpu_info(parse(scrape(registry, samplers)))} == {"nvidia"}


def test_two_samplers_with_one_name_are_refused() -> None:
    first: Sampler = TapirGpuSampler(5)
    second: Sampler = TapirGpuSampler(5)
    with pytest.raises(ValueError, match="two samplers share a name"):
        SamplerRunner(Registry(), [first, second], scheduler=None)
