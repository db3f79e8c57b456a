"""The runner (schedule, threads, failures) and the scrape-time collector (health, lint)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from lmwatch.config import BackendConfig, Config
from lmwatch.metrics.samplers import SamplerCollector
from lmwatch.registry import Registry, Snapshot
from lmwatch.samplers import build_samplers
from lmwatch.samplers.base import Sampler, gauge_value
from lmwatch.samplers.fake_nvml import GIB, FakeGpu, FakeNvml, SimulatedNvidiaSampler
from lmwatch.samplers.host import HostSampler
from lmwatch.samplers.nvidia import NvidiaSampler
from lmwatch.samplers.process import ProcessSampler
from lmwatch.samplers.runner import SamplerRunner
from lmwatch.samplers.status import host_status
from tests.samplers.helpers import (
    has,
    listening_port,
    names,
    parse,
    promtool_problems,
    records,
    scrape,
    value,
)


class Recording(Sampler):
    """A sampler that records how it is driven, and fails on request."""

    name = "rec"

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.threads: list[int] = []
        self.pressures: list[Any] = []
        self.fail = False
        self.broken_families = False
        self.closed = 0
        self.rendered = 0

    def sample(self, snapshot: Snapshot) -> dict[str, int]:
        self.threads.append(threading.get_ident())
        if self.fail:
            raise RuntimeError("boom")
        return {"n": len(self.threads)}

    def families(self, sample: dict[str, int]) -> Iterable[Metric]:
        self.rendered += 1
        if self.broken_families:
            raise ValueError("cannot render")
        yield gauge_value("lmwatch_test_samples", "Samples taken.", sample["n"])

    def pressure(self, sample: Any) -> dict[str, Any]:
        self.pressures.append(sample)
        return {"cpu_load_ratio": 0.5} if sample is not None else {}

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def listener() -> Iterator[int]:
    with listening_port() as port:
        yield port


async def test_scheduled_jobs_sample_off_the_loop() -> None:
    registry = Registry()
    recording = Recording(interval=0.05)
    scheduler = AsyncIOScheduler()
    scheduler.start()
    runner = SamplerRunner(registry, [recording, HostSampler(interval=0.05)], scheduler)
    try:
        runner.start()
        jobs = scheduler.get_jobs()
        assert {j.id for j in jobs} == {"sampler:rec", "sampler:host"}
        assert all(j.max_instances == 1 and j.coalesce for j in jobs)
        # Repeated runs on the schedule: wait for the registry to show the third sample.
        await registry.wait_for(lambda s: "host" in s.collectors and len(recording.threads) >= 3, timeout=10)
    finally:
        await runner.stop()
        scheduler.shutdown(wait=False)
    assert threading.get_ident() not in recording.threads  # sample() never ran on the loop's thread
    assert not scheduler.get_jobs()
    assert recording.closed == 1
    snapshot = registry.snapshot()
    assert snapshot.collectors["rec"].success and snapshot.host.cpu_load_ratio is not None


async def test_a_failing_sampler_is_recorded_logged_once_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    registry = Registry()
    recording = Recording()
    runner = SamplerRunner(registry, [recording], scheduler=None)
    await runner.run_once()
    good = registry.snapshot().collectors["rec"]
    recording.fail = True
    for _ in range(3):
        await runner.run_once()  # never raises

    status = registry.snapshot().collectors["rec"]
    assert not status.success and status.error == "RuntimeError: boom"
    assert status.last_success == good.last_success and status.sample == {"n": 1}
    series = parse(scrape(registry, [recording]))
    assert value(series, "lmwatch_collector_success", collector="rec") == 0
    assert value(series, "lmwatch_test_samples") == 1  # the last good sample is still served
    assert value(series, "lmwatch_collector_last_success_timestamp_seconds", collector="rec") == good.last_success
    assert has(series, "lmwatch_collector_duration_seconds", collector="rec")
    assert recording.pressures[-1] is None  # a failed run asks the sampler what to clear
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 1 and "boom" in failures[0].getMessage()

    recording.fail = False
    await runner.run_once()
    assert registry.snapshot().collectors["rec"].success
    assert any("works again" in m for m in records(caplog.records))


async def test_a_failed_gpu_sampler_serves_no_stale_gpu_series(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    registry = Registry()
    sampler = NvidiaSampler()
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    await runner.run_once()
    assert has(parse(scrape(registry, [sampler])), "lmwatch_gpu_memory_total_bytes")
    fake.fail_with = fake.NVML_ERROR_LIB_RM_VERSION_MISMATCH
    await runner.run_once()
    series = parse(scrape(registry, [sampler]))
    assert not has(series, "lmwatch_gpu_memory_total_bytes")
    assert value(series, "lmwatch_gpu_available") == 0


def test_broken_rendering_never_fails_a_scrape(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    broken, host = Recording(), HostSampler()
    registry.record_collector("rec", True, 0.001, {"n": 1})
    registry.record_collector("host", True, 0.001, host.sample(registry.snapshot()))
    broken.broken_families = True
    metrics = CollectorRegistry()
    metrics.register(SamplerCollector(registry, [broken, host]))
    for _ in range(2):
        series = parse(generate_latest(metrics).decode())
        assert value(series, "lmwatch_collector_success", collector="rec") == 0
        assert value(series, "lmwatch_collector_success", collector="host") == 1
        assert has(series, "lmwatch_host_memory_total_bytes")
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_registering_the_collector_does_not_collect() -> None:
    recording = Recording()
    registry = Registry()
    registry.record_collector("rec", True, 0.001, {"n": 1})
    metrics = CollectorRegistry(auto_describe=True)
    metrics.register(SamplerCollector(registry, [recording]))
    assert recording.rendered == 0
    generate_latest(metrics)
    assert recording.rendered == 1


def test_build_samplers_follows_the_config() -> None:
    def kinds(gpu: str) -> list[tuple[str, str]]:
        config = Config.model_validate({"sampling": {"gpu": gpu, "host_interval": 7}})
        return [(s.name, type(s).__name__) for s in build_samplers(config)]

    base = [("host", "HostSampler"), ("process", "ProcessSampler")]
    assert kinds("auto") == [*base, ("gpu", "NvidiaSampler")]
    assert kinds("simulated") == [*base, ("gpu", "SimulatedNvidiaSampler")]
    assert kinds("off") == base
    config = Config.model_validate({"sampling": {"host_interval": 7, "gpu_retry_interval": 90}})
    host, _, gpu = build_samplers(config)
    assert host.interval == 7 and isinstance(gpu, NvidiaSampler) and gpu.retry_interval == 90


async def test_every_series_is_lint_clean_and_named_by_convention(
    listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All families at once, with two GPUs (one a consumer card) and a backend holding GPU memory."""
    registry = Registry()
    registry.configure_backends([BackendConfig(name="sim", url=f"http://127.0.0.1:{listener}")])
    fake = FakeNvml([FakeGpu(), FakeGpu.consumer()])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    samplers: list[Sampler] = [HostSampler(), ProcessSampler(), NvidiaSampler()]
    runner = SamplerRunner(registry, samplers, scheduler=None)
    await runner.run_once()
    pid = next(iter(registry.snapshot().collectors["process"].sample.backend_pids))
    fake.gpus[0].compute_processes = [(pid, 2 * GIB)]
    await runner.run_once()

    text = scrape(registry, samplers)
    series = parse(text)
    assert value(series, "lmwatch_backend_gpu_memory_bytes", backend="sim", gpu="0") == 2 * GIB
    assert value(series, "lmwatch_backend_process_visible", backend="sim") == 1
    for name in names(series):
        assert name.startswith("lmwatch_") and ":" not in name, name
    labels = {label for _, lbls in series for label, _ in lbls}
    assert not labels & {"instance", "job", "type", "pid"}, labels

    problems = promtool_problems(text)
    if problems is not None:  # skip only this check without promtool
        assert problems == (0, ""), problems

    metrics = CollectorRegistry()
    metrics.register(SamplerCollector(registry, samplers))
    om = openmetrics.generate_latest(metrics).decode()  # type: ignore[no-untyped-call]
    assert om.endswith("# EOF\n")
    om_names = {f.name for f in parse_openmetrics(om)}  # type: ignore[no-untyped-call]
    assert {"lmwatch_gpu_energy_joules", "lmwatch_host_cpu_seconds"} <= om_names

    status = host_status(registry.snapshot())
    assert json.loads(json.dumps(status)) == status
    assert [g["index"] for g in status["gpus"]] == [0, 1]
    assert status["backend_gpu_memory_bytes"] == {"sim": 2 * GIB}
    assert status["collectors"]["gpu"]["success"] is True
    assert status["memory_available_bytes"] > 0


async def test_simulated_mode_through_the_config(listener: int) -> None:
    config = Config.model_validate(
        {"sampling": {"gpu": "simulated"}, "backends": [{"name": "sim", "url": f"http://localhost:{listener}"}]}
    )
    registry = Registry()
    registry.configure_backends(config.backends)
    samplers = build_samplers(config)
    await SamplerRunner(registry, samplers, scheduler=None).run_once()
    series = parse(scrape(registry, samplers))
    assert value(series, "lmwatch_gpu_available") == 1
    assert {dict(lbls)["gpu"] for n, lbls in series if n == "lmwatch_gpu_info"} == {"0", "1"}
    assert value(series, "lmwatch_backend_gpu_memory_bytes", backend="sim", gpu="0") == 6 * GIB
    assert all(value(series, "lmwatch_collector_success", collector=s.name) == 1 for s in samplers)
    assert isinstance(samplers[-1], SimulatedNvidiaSampler)


async def test_run_once_and_scheduled_runs_never_overlap() -> None:
    """Two runs of one sampler at once (the first round and a scheduled job) are serialised."""
    inside = 0
    overlap = False
    second_call = threading.Event()
    count = threading.Lock()

    class Slow(Recording):
        def sample(self, snapshot: Snapshot) -> dict[str, int]:
            nonlocal inside, overlap
            with count:
                inside += 1
                overlap = overlap or inside > 1
                first = not self.threads
            if first:
                second_call.wait(0.5)  # an overlapping second call would wake this one at once
            else:
                second_call.set()
            with count:
                inside -= 1
            return super().sample(snapshot)

    slow = Slow()
    runner = SamplerRunner(Registry(), [slow], scheduler=None)
    await asyncio.gather(runner.run(slow), runner.run(slow))
    assert not overlap and len(slow.threads) == 2


async def test_a_stop_during_a_hung_sample_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """scheduler.shutdown() cancels a job still running (a sample stuck in its thread): no APScheduler
    `raised an exception` traceback for it."""
    started, release = threading.Event(), threading.Event()

    class Hung(Recording):
        def sample(self, snapshot: Snapshot) -> dict[str, int]:
            started.set()
            release.wait(10)
            return super().sample(snapshot)

    hung = Hung(interval=0.05)
    scheduler = AsyncIOScheduler()
    scheduler.start()
    runner = SamplerRunner(Registry(), [hung], scheduler)
    runner.start()
    await asyncio.to_thread(started.wait, 10)
    scheduler.shutdown(wait=False)  # what Daemon.stop does last
    release.set()
    await runner.run(hung)  # takes the sampler's lock once the cancelled job let it go
    await runner.stop()
    assert "raised an exception" not in caplog.text and "CancelledError" not in caplog.text
