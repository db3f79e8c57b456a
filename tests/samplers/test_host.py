"""The host sampler reads this machine through psutil."""

from __future__ import annotations

import time

import psutil

from lmwatch.registry import Registry
from lmwatch.samplers.host import HostSampler
from tests.samplers.helpers import names, parse, scrape, value

HOST_SERIES = {
    "lmwatch_host_cpu_seconds_total",
    "lmwatch_host_cpus",
    "lmwatch_host_load1",
    "lmwatch_host_load5",
    "lmwatch_host_load15",
    "lmwatch_host_memory_total_bytes",
    "lmwatch_host_memory_available_bytes",
    "lmwatch_host_memory_used_bytes",
    "lmwatch_host_swap_total_bytes",
    "lmwatch_host_swap_used_bytes",
    "lmwatch_self_resident_memory_bytes",
    "lmwatch_self_cpu_seconds_total",
    "lmwatch_self_open_fds",
    "lmwatch_self_threads",
}


def _burn_cpu(seconds: float) -> None:
    """Use CPU until this process has used `seconds` more of it (an event, not a sleep)."""
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1


def test_first_sample_is_sane() -> None:
    sampler = HostSampler()
    sample = sampler.sample(Registry().snapshot())
    assert sample.cpus == psutil.cpu_count()
    assert {"user", "system", "idle"} <= set(sample.cpu_seconds)
    assert not {"guest", "guest_nice"} & set(sample.cpu_seconds)  # already inside user/nice
    assert sample.cpu_seconds["idle"] > 0
    assert 0 < sample.memory_available_bytes <= sample.memory_total_bytes
    assert 0 < sample.memory_used_bytes <= sample.memory_total_bytes
    assert 0 <= sample.swap_used_bytes <= sample.swap_total_bytes or sample.swap_total_bytes == 0
    assert min(sample.load1, sample.load5, sample.load15) >= 0
    assert sample.self_resident_memory_bytes > 10 * 1024**2  # a Python process with psutil loaded
    assert sample.self_open_fds is not None and sample.self_open_fds >= 3
    assert sample.self_threads >= 1

    pressure = sampler.pressure(sample)
    assert pressure["memory_total_bytes"] == sample.memory_total_bytes
    assert pressure["memory_available_bytes"] == sample.memory_available_bytes
    assert pressure["cpu_load_ratio"] == sample.load1 / sample.cpus
    assert sampler.pressure(None) == {}


def test_every_series_present_and_counters_monotonic() -> None:
    registry = Registry()
    sampler = HostSampler()
    registry.record_collector("host", True, 0.001, sampler.sample(registry.snapshot()))
    first = parse(scrape(registry, [sampler]))
    _burn_cpu(0.05)
    registry.record_collector("host", True, 0.001, sampler.sample(registry.snapshot()))
    second = parse(scrape(registry, [sampler]))

    assert not HOST_SERIES - names(first)
    assert not HOST_SERIES - names(second)
    for (name, labels), v in first.items():
        if name.endswith("_total"):
            assert second[(name, labels)] >= v, (name, labels)
    busy = ("user", "system")
    before = sum(value(first, "lmwatch_self_cpu_seconds_total", mode=m) for m in busy)
    after = sum(value(second, "lmwatch_self_cpu_seconds_total", mode=m) for m in busy)
    assert after - before >= 0.03  # the CPU this test burned shows up
    host_before = sum(value(first, "lmwatch_host_cpu_seconds_total", mode=m) for m in busy)
    host_after = sum(value(second, "lmwatch_host_cpu_seconds_total", mode=m) for m in busy)
    assert host_after - host_before >= 0.03
    assert value(second, "lmwatch_host_cpus") == psutil.cpu_count()
    assert value(second, "lmwatch_collector_success", collector="host") == 1
