"""The NVIDIA sampler against a fake NVML in place of `pynvml`, and against the real nvidia-ml-py
package on this GPU-less machine (where it raises NVMLError_LibraryNotFound)."""

from __future__ import annotations

import ctypes
import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmwatch.config import BackendConfig
from lmwatch.registry import Registry
from lmwatch.samplers.nvidia import NvidiaSampler
from lmwatch.samplers.process import BackendProcess, ProcessSample, Visibility
from lmwatch.samplers.runner import SamplerRunner
from lmwatch.samplers.simulated import SimulatedNvidiaSampler
from lmwatch.simulator import nvml as fake_nvml
from lmwatch.simulator.nvml import GIB, FakeGpu, FakeNvml
from tests.samplers.helpers import (
    Clock,
    has,
    label_values,
    parse,
    records,
    scrape,
    value,
)

GPU_GAUGES = (
    "lmwatch_gpu_utilization_ratio",
    "lmwatch_gpu_memory_utilization_ratio",
    "lmwatch_gpu_memory_total_bytes",
    "lmwatch_gpu_memory_used_bytes",
    "lmwatch_gpu_memory_free_bytes",
    "lmwatch_gpu_temperature_celsius",
    "lmwatch_gpu_power_draw_watts",
    "lmwatch_gpu_power_limit_watts",
    "lmwatch_gpu_sm_clock_hertz",
    "lmwatch_gpu_memory_clock_hertz",
    "lmwatch_gpu_fan_speed_ratio",
    "lmwatch_gpu_energy_joules_total",
)


def _real_pynvml() -> Any:
    module = importlib.import_module("pynvml")
    assert not isinstance(module, FakeNvml) and Path(str(module.__file__)).name == "pynvml.py", module
    return module


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    """Two GPUs: a full-featured one and a consumer card without fan and energy, as `pynvml`."""
    gpus = [
        FakeGpu(uuid="GPU-aaaaaaaa-0000-4000-8000-000000000000"),
        FakeGpu.consumer(uuid="GPU-bbbbbbbb-0000-4000-8000-000000000001", utilization_gpu=88),
    ]
    module = FakeNvml(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    yield module


def _registry_with(process: ProcessSample | None = None) -> Registry:
    registry = Registry()
    registry.configure_backends([BackendConfig(name="sim", url="http://127.0.0.1:1234")])
    if process is not None:
        registry.record_collector("process", True, 0.0, process)
    return registry


# --- the fake is faithful ------------------------------------------------------------------------


def test_fake_has_the_real_constants_and_error_classes() -> None:
    real = _real_pynvml()
    codes = {n: getattr(real, n) for n in dir(real) if n.startswith("NVML_ERROR_")}
    assert codes == {n: getattr(fake_nvml, n) for n in dir(fake_nvml) if n.startswith("NVML_ERROR_")}
    for name in ("NVML_TEMPERATURE_GPU", "NVML_CLOCK_SM", "NVML_CLOCK_MEM", "NVML_CLOCK_GRAPHICS"):
        assert getattr(fake_nvml, name) == getattr(real, name), name
    for code in codes.values():
        real_error, fake_error = real.NVMLError(code), fake_nvml.NVMLError(code)
        assert type(fake_error).__name__ == type(real_error).__name__
        assert fake_error.value == real_error.value == code
        assert isinstance(fake_error, fake_nvml.nvmlExceptionClass(code))
    assert str(fake_nvml.NVMLError(12)) == str(real.NVMLError(12)) == "NVML Shared Library Not Found"
    # Raising a subclass by name gives its code, as in pynvml.
    assert fake_nvml.NVMLError_GpuIsLost().value == real.NVMLError_GpuIsLost().value == 15
    assert (fake_nvml.NVMLError_NotSupported().value, fake_nvml.NVMLError_LibraryNotFound().value) == (3, 12)
    assert (fake_nvml.NVMLError_DriverNotLoaded().value, fake_nvml.NVMLError_NoPermission().value) == (9, 4)
    assert (fake_nvml.NVMLError_InvalidArgument().value, fake_nvml.NVMLError_Uninitialized().value) == (2, 1)


def test_fake_behaves_like_the_library(fake: FakeNvml) -> None:
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(1)
    memory = fake.nvmlDeviceGetMemoryInfo(handle)
    assert isinstance(memory, ctypes.Structure)
    assert memory.total == memory.used + memory.free == 12 * GIB
    assert fake.nvmlDeviceGetUtilizationRates(handle).gpu == 88
    assert fake.nvmlDeviceGetPowerUsage(handle) == 31_250  # milliwatts
    with pytest.raises(fake.NVMLError_NotSupported) as caught:
        fake.nvmlDeviceGetFanSpeed(handle)
    assert caught.value.value == 3
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(2)
    fake.gpus[1].lose_after = 1
    fake.nvmlDeviceGetName(handle)
    with pytest.raises(fake.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetName(handle)


# --- the GPU path with the fake in place of pynvml -----------------------------------------------


def test_two_gpus_every_series_in_base_units(fake: FakeNvml) -> None:
    fake.gpus[1].unsupported.clear()  # both cards support everything here
    sampler = NvidiaSampler()  # imports "pynvml": the fake
    registry = _registry_with()
    registry.record_collector("gpu", True, 0.01, sampler.sample(registry.snapshot()))
    series = parse(scrape(registry, [sampler]))

    for name in GPU_GAUGES:
        assert label_values(series, name, "gpu") == {"0", "1"}, name
    labels = {"gpu": "0", "uuid": "GPU-aaaaaaaa-0000-4000-8000-000000000000", "name": "NVIDIA RTX A6000"}
    assert value(series, "lmwatch_gpu_power_draw_watts", **labels) == pytest.approx(123.456)
    assert value(series, "lmwatch_gpu_power_limit_watts", **labels) == pytest.approx(300.0)
    assert value(series, "lmwatch_gpu_energy_joules_total", **labels) == pytest.approx(987_654.321)
    assert value(series, "lmwatch_gpu_sm_clock_hertz", **labels) == pytest.approx(1.41e9)
    assert value(series, "lmwatch_gpu_memory_clock_hertz", **labels) == pytest.approx(8.001e9)
    assert value(series, "lmwatch_gpu_utilization_ratio", **labels) == pytest.approx(0.37)
    assert value(series, "lmwatch_gpu_memory_utilization_ratio", **labels) == pytest.approx(0.21)
    assert value(series, "lmwatch_gpu_fan_speed_ratio", **labels) == pytest.approx(0.41)
    assert value(series, "lmwatch_gpu_temperature_celsius", **labels) == 54
    assert value(series, "lmwatch_gpu_memory_total_bytes", **labels) == 48 * GIB
    assert value(series, "lmwatch_gpu_memory_used_bytes", **labels) == 512 * 1024**2
    assert value(series, "lmwatch_gpu_memory_free_bytes", **labels) == 48 * GIB - 512 * 1024**2
    assert value(series, "lmwatch_gpu_info", **labels, vendor="nvidia", driver_version=fake.driver_version) == 1
    assert value(series, "lmwatch_gpu_available") == 1
    assert value(series, "lmwatch_collector_success", collector="gpu") == 1


def test_unsupported_fields_are_absent_not_errors(fake: FakeNvml, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sampler = NvidiaSampler()
    registry = _registry_with()
    registry.record_collector("gpu", True, 0.01, sampler.sample(registry.snapshot()))
    series = parse(scrape(registry, [sampler]))
    for name in ("lmwatch_gpu_fan_speed_ratio", "lmwatch_gpu_energy_joules_total"):
        assert label_values(series, name, "gpu") == {"0"}, name  # the consumer card (gpu 1) lacks it
    for name in set(GPU_GAUGES) - {"lmwatch_gpu_fan_speed_ratio", "lmwatch_gpu_energy_joules_total"}:
        assert label_values(series, name, "gpu") == {"0", "1"}, name
    assert value(series, "lmwatch_collector_success", collector="gpu") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_gpu_lost_between_calls_drops_only_its_series(fake: FakeNvml, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    registry = _registry_with()
    sampler = NvidiaSampler()
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    await runner.run_once()
    assert label_values(parse(scrape(registry, [sampler])), "lmwatch_gpu_temperature_celsius", "gpu") == {
        "0",
        "1",
    }

    fake.gpus[1].lose_after = 2  # answers its first calls of the next round, then falls off the bus
    await runner.run_once()
    series = parse(scrape(registry, [sampler]))
    for name in GPU_GAUGES:
        assert label_values(series, name, "gpu") <= {"0"}, name
    assert value(series, "lmwatch_gpu_power_draw_watts", gpu="0", uuid=fake.gpus[0].uuid, name=fake.gpus[0].name)
    assert value(series, "lmwatch_collector_success", collector="gpu") == 1
    assert value(series, "lmwatch_gpu_available") == 1
    assert [g.index for g in registry.snapshot().host.gpus] == [0]

    await runner.run_once()  # still lost: no new log line
    lost = [m for m in records(caplog.records) if "GPU 1" in m]
    assert len(lost) == 1 and "does not answer" in lost[0]

    fake.gpus[1].lost = False
    await runner.run_once()
    assert label_values(parse(scrape(registry, [sampler])), "lmwatch_gpu_temperature_celsius", "gpu") == {
        "0",
        "1",
    }
    assert fake.calls["nvmlInit"] == 1 and fake.calls["nvmlShutdown"] == 0  # never per sample


async def test_gpu_memory_is_attributed_to_the_backend_process(fake: FakeNvml) -> None:
    fake.gpus[0].compute_processes = [(4242, 3 * GIB), (999, 1 * GIB)]  # 999 serves no backend
    fake.gpus[1].compute_processes = [(4243, 2 * GIB)]  # a child of the backend's process
    fake.gpus[1].graphics_processes = [(4243, 2 * GIB)]  # the same process seen as a graphics user
    process = ProcessSample(
        backends=(BackendProcess("sim", 1234, Visibility.VISIBLE, pid=4242, pids=(4242, 4243)),),
        backend_pids={4242: "sim", 4243: "sim"},
    )
    registry = _registry_with(process)
    sampler = NvidiaSampler()
    await SamplerRunner(registry, [sampler], scheduler=None).run_once()
    series = parse(scrape(registry, [sampler]))
    assert value(series, "lmwatch_backend_gpu_memory_bytes", backend="sim", gpu="0") == 3 * GIB
    assert value(series, "lmwatch_backend_gpu_memory_bytes", backend="sim", gpu="1") == 2 * GIB
    assert label_values(series, "lmwatch_backend_gpu_memory_bytes", "backend") == {"sim"}
    host = registry.snapshot().host
    assert host.backend_gpu_memory_bytes == {"sim": 5 * GIB}
    assert [(g.index, g.memory_free_bytes) for g in host.gpus] == [
        (0, 48 * GIB - 512 * 1024**2 - 4 * GIB),
        (1, 12 * GIB - 512 * 1024**2 - 2 * GIB),
    ]


async def test_driver_gone_then_back(fake: FakeNvml, caplog: pytest.LogCaptureFixture) -> None:
    """NVML stops answering as a whole: GPU series go, one line, re-init after the retry interval."""
    caplog.set_level(logging.INFO)
    clock = Clock()
    registry = _registry_with()
    sampler = NvidiaSampler(retry_interval=60, clock=clock)
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    await runner.run_once()
    assert value(parse(scrape(registry, [sampler])), "lmwatch_gpu_available") == 1

    fake.fail_with = fake.NVML_ERROR_DRIVER_NOT_LOADED
    for _ in range(3):
        await runner.run_once()
        clock.advance(10)
    series = parse(scrape(registry, [sampler]))
    assert value(series, "lmwatch_gpu_available") == 0
    assert value(series, "lmwatch_collector_success", collector="gpu") == 0
    assert not has(series, "lmwatch_gpu_temperature_celsius")  # no stale series of vanished GPUs
    assert registry.snapshot().host.gpus == ()
    assert len([m for m in records(caplog.records) if "not loaded" in m]) == 1
    init_calls = fake.calls["nvmlInit"]
    assert init_calls == 1  # no re-init before the retry interval

    fake.fail_with = None
    clock.advance(60)
    await runner.run_once()
    series = parse(scrape(registry, [sampler]))
    assert fake.calls["nvmlInit"] == init_calls + 1
    assert value(series, "lmwatch_gpu_available") == 1
    assert label_values(series, "lmwatch_gpu_temperature_celsius", "gpu") == {"0", "1"}


async def test_driver_installed_later_is_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    module = FakeNvml(init_error=fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    clock = Clock()
    registry = _registry_with()
    sampler = NvidiaSampler(retry_interval=60, clock=clock)
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    await runner.run_once()
    clock.advance(59)
    await runner.run_once()
    assert module.calls["nvmlInit"] == 1
    module.init_error = None  # the driver got installed
    clock.advance(1)
    await runner.run_once()
    assert module.calls["nvmlInit"] == 2
    assert value(parse(scrape(registry, [sampler])), "lmwatch_gpu_available") == 1
    sampler.close()
    assert module.calls["nvmlShutdown"] == 1 and not module.initialized


# --- the real nvidia-ml-py without a driver ------------------------------------------------------


def _driver_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver")
async def test_no_driver_with_the_real_package(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    real = _real_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", real)
    attempts: list[str] = []
    real_init = real.nvmlInit

    def counting_init() -> None:
        try:
            real_init()
        except real.NVMLError as exc:
            attempts.append(type(exc).__name__)
            raise

    monkeypatch.setattr(real, "nvmlInit", counting_init)
    clock = Clock()
    registry = _registry_with()
    sampler = NvidiaSampler(retry_interval=60, clock=clock)
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    for _ in range(5):
        await runner.run_once()
        clock.advance(5)

    text = scrape(registry, [sampler])  # the scrape itself works
    series = parse(text)
    assert value(series, "lmwatch_gpu_available") == 0
    assert value(series, "lmwatch_collector_success", collector="gpu") == 0
    assert not has(series, "lmwatch_gpu_info")
    assert attempts == ["NVMLError_LibraryNotFound"]
    lines = records(caplog.records)
    assert len(lines) == 1, lines
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "no NVIDIA driver" in lines[0]
    assert not any(r.exc_info for r in caplog.records)  # a line, not a traceback
    status = registry.snapshot().collectors["gpu"]
    assert not status.success and status.error and "no NVIDIA driver" in status.error

    clock.advance(60 - 25)  # the retry interval since the first attempt has passed
    await runner.run_once()
    assert attempts == ["NVMLError_LibraryNotFound"] * 2
    assert len(records(caplog.records)) == 1


# --- the simulated mode --------------------------------------------------------------------------


async def test_simulated_gpus_hold_the_backend_process_memory() -> None:
    registry = _registry_with(
        ProcessSample(
            backends=(BackendProcess("sim", 1234, Visibility.VISIBLE, pid=31337, pids=(31337,)),),
            backend_pids={31337: "sim"},
        )
    )
    clock = Clock()
    fake = FakeNvml.simulated(clock=clock)
    sampler = SimulatedNvidiaSampler(fake=fake)
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    await runner.run_once()
    first = parse(scrape(registry, [sampler]))
    clock.advance(10)
    await runner.run_once()
    series = parse(scrape(registry, [sampler]))
    for name in GPU_GAUGES:
        assert label_values(series, name, "gpu") == {"0", "1"}, name
    assert value(series, "lmwatch_backend_gpu_memory_bytes", backend="sim", gpu="0") == 6 * GIB
    gpu0 = {"gpu": "0", "uuid": fake.gpus[0].uuid, "name": fake.gpus[0].name}
    joules = value(series, "lmwatch_gpu_energy_joules_total", **gpu0)
    assert joules > value(first, "lmwatch_gpu_energy_joules_total", **gpu0)
    assert value(series, "lmwatch_gpu_memory_used_bytes", **gpu0) >= 6 * GIB


async def test_a_backends_gpu_memory_is_the_sum_over_its_processes_on_one_gpu(fake: FakeNvml) -> None:
    """llama.cpp with a worker per slot, vLLM with tensor-parallel ranks: several processes of one
    backend on the same GPU; its memory there is their sum, not the last one seen."""
    fake.gpus[0].compute_processes = [(4242, 3 * GIB), (4243, 2 * GIB), (4244, 1 * GIB)]
    fake.gpus[1].compute_processes = []
    process = ProcessSample(
        backends=(BackendProcess("sim", 1234, Visibility.VISIBLE, pid=4242, pids=(4242, 4243, 4244)),),
        backend_pids={4242: "sim", 4243: "sim", 4244: "sim"},
    )
    registry = _registry_with(process)
    sampler = NvidiaSampler()
    await SamplerRunner(registry, [sampler], scheduler=None).run_once()
    series = parse(scrape(registry, [sampler]))
    assert value(series, "lmwatch_backend_gpu_memory_bytes", backend="sim", gpu="0") == 6 * GIB
    assert registry.snapshot().host.backend_gpu_memory_bytes == {"sim": 6 * GIB}
