"""The process sampler finds the process serving a local backend by its listening port."""

from __future__ import annotations

import logging
import os
import socket
from collections import namedtuple
from collections.abc import Iterator, Sequence
from typing import Any

import psutil
import pytest

from lmwatch.config import BackendConfig
from lmwatch.registry import Registry
from lmwatch.samplers.process import ProcessSampler, Visibility, _CpuAccount
from lmwatch.samplers.runner import SamplerRunner
from lmwatch.samplers.simulated import SimulatedNvidiaSampler
from lmwatch.simulator.nvml import GIB
from tests.samplers.helpers import (
    Clock,
    Server,
    has,
    listening_port,
    parse,
    records,
    running_server,
    scrape,
    stop,
    value,
)

Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "fd family type laddr raddr status pid")


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server() as running:
        yield running


def _registry(*backends: tuple[str, str]) -> Registry:
    registry = Registry()
    registry.configure_backends([BackendConfig(name=n, url=u) for n, u in backends])
    return registry


@pytest.fixture
def listener() -> Iterator[int]:
    with listening_port() as port:
        yield port


async def test_finds_the_separate_server_process(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    registry = _registry(("sim", server.url), ("far", "http://192.0.2.10:1234"))
    sampler = ProcessSampler()
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    await runner.run_once()

    sample = registry.snapshot().collectors["process"].sample
    [found] = sample.backends  # the non-local backend is skipped
    assert (found.backend, found.visibility, found.port) == ("sim", Visibility.VISIBLE, server.port)
    assert server.process.pid in found.pids
    assert sample.backend_pids[server.process.pid] == "sim"

    series = parse(scrape(registry, [sampler]))
    assert value(series, "lmwatch_backend_process_visible", backend="sim") == 1
    expected_rss = psutil.Process(server.process.pid).memory_info().rss
    rss = value(series, "lmwatch_backend_process_resident_memory_bytes", backend="sim")
    assert 0.5 * expected_rss < rss < 3 * expected_rss
    assert value(series, "lmwatch_backend_process_threads", backend="sim") >= 1
    assert value(series, "lmwatch_backend_processes", backend="sim") >= 1
    assert has(series, "lmwatch_backend_process_cpu_seconds_total", backend="sim", mode="user")
    assert has(series, "lmwatch_backend_process_cpu_seconds_total", backend="sim", mode="system")
    start = value(series, "lmwatch_backend_process_start_time_seconds", backend="sim")
    assert start == pytest.approx(psutil.Process(server.process.pid).create_time())
    assert not any(dict(labels).get("backend") == "far" for _, labels in series)
    assert not any("pid" in dict(labels) for _, labels in series)

    # The server goes away: the cached process is dead, the next sample looks again and says so.
    stop(server.process)
    await runner.run_once()
    await runner.run_once()
    series = parse(scrape(registry, [sampler]))
    assert value(series, "lmwatch_backend_process_visible", backend="sim") == 0
    assert not has(series, "lmwatch_backend_process_resident_memory_bytes")
    gone = [m for m in records(caplog.records) if "no process listens" in m]
    assert len(gone) == 1, gone


async def test_simulated_gpu_memory_belongs_to_the_separate_server(server: Server) -> None:
    registry = _registry(("sim", server.url))
    samplers = [ProcessSampler(), SimulatedNvidiaSampler()]
    await SamplerRunner(registry, samplers, scheduler=None).run_once()
    series = parse(scrape(registry, samplers))
    assert value(series, "lmwatch_backend_gpu_memory_bytes", backend="sim", gpu="0") == 6 * GIB
    assert registry.snapshot().host.backend_gpu_memory_bytes == {"sim": 6 * GIB}
    gpus = samplers[1].fake.gpus  # type: ignore[attr-defined]
    assert gpus[0].compute_processes == [(server.process.pid, 6 * GIB)]


def _hidden_listener(port: int) -> Sequence[Any]:
    return [Conn(3, socket.AF_INET, socket.SOCK_STREAM, Addr("0.0.0.0", port), (), psutil.CONN_LISTEN, None)]


async def test_another_users_process_is_a_reported_gap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    registry = _registry(("lmstudio", "http://localhost:1234"))
    sampler = ProcessSampler(net_connections=lambda: _hidden_listener(1234), rescan_interval=0.001)
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    for _ in range(3):
        await runner.run_once()
    series = parse(scrape(registry, [sampler]))
    assert value(series, "lmwatch_backend_process_visible", backend="lmstudio") == 0
    assert value(series, "lmwatch_collector_success", collector="process") == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "another user" in warnings[0].getMessage()


async def test_denied_socket_list_is_a_reported_gap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    def denied() -> Sequence[Any]:
        raise psutil.AccessDenied(pid=None)

    registry = _registry(("lmstudio", "http://127.0.0.1:1234"))
    sampler = ProcessSampler(net_connections=denied, rescan_interval=0.001)
    runner = SamplerRunner(registry, [sampler], scheduler=None)
    for _ in range(3):
        await runner.run_once()
    sample = registry.snapshot().collectors["process"].sample
    assert sample.backends[0].visibility is Visibility.DENIED
    assert value(parse(scrape(registry, [sampler])), "lmwatch_backend_process_visible", backend="lmstudio") == 0
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_the_socket_table_is_scanned_only_when_needed(listener: int) -> None:
    scans: list[int] = []

    def counting() -> Sequence[Any]:
        scans.append(1)
        return psutil.net_connections(kind="tcp")

    clock = Clock()
    sampler = ProcessSampler(rescan_interval=30, clock=clock, net_connections=counting)
    registry = _registry(("me", f"http://127.0.0.1:{listener}"))
    first = sampler.sample(registry.snapshot())
    assert first.backends[0].pid == os.getpid() and len(scans) == 1
    clock.advance(29)
    assert sampler.sample(registry.snapshot()).backends[0].visible
    assert len(scans) == 1  # the cached owner is still alive: no scan
    clock.advance(1)
    sampler.sample(registry.snapshot())
    assert len(scans) == 2  # the periodic re-check
    registry.configure_backends(
        [BackendConfig(name="me", url=f"http://127.0.0.1:{listener}"), BackendConfig(name="new", url="http://[::1]:9")]
    )
    sample = sampler.sample(registry.snapshot())
    assert len(scans) == 3  # a new port is looked up at once
    assert {b.backend: b.visibility for b in sample.backends} == {
        "me": Visibility.VISIBLE,
        "new": Visibility.NOT_LISTENING,
    }


def test_backends_served_by_one_process_share_its_one_reading(listener: int) -> None:
    """One process listening for two backends (an LM Studio twice in the config, the bench's fleet)
    is read once per sample, and each backend reports it whole."""
    with listening_port() as other:
        registry = _registry(("a", f"http://127.0.0.1:{listener}"), ("b", f"http://localhost:{other}"))
        sampler = ProcessSampler()
        a, b = sampler.sample(registry.snapshot()).backends
    assert a.visible and b.visible and a.pid == b.pid == os.getpid() and a.pids == b.pids
    assert (a.resident_memory_bytes, a.threads, a.start_time_seconds) == (
        b.resident_memory_bytes,
        b.threads,
        b.start_time_seconds,
    )
    assert a.cpu_seconds == b.cpu_seconds and a.cpu_seconds["user"] > 0


def test_which_backends_are_local() -> None:
    sampler = ProcessSampler()
    local_ip = next((a for a in sampler._interface_addresses() if not a.startswith(("127.", "::1", "fe80"))), None)
    assert sampler._local_target("http://localhost:1234") == (1234, frozenset({"127.0.0.1", "::1"}))
    assert sampler._local_target("http://127.0.0.1:1234/v1")[0] == 1234  # type: ignore[index]
    assert sampler._local_target("http://[::1]:8080")[0] == 8080  # type: ignore[index]
    assert sampler._local_target("http://0.0.0.0:1234") is not None
    assert sampler._local_target("https://127.0.0.1")[0] == 443  # type: ignore[index]
    assert sampler._local_target("http://192.0.2.10:1234") is None  # TEST-NET-1: never local
    assert sampler._local_target("http://lmstudio.invalid:1234") is None  # does not resolve
    if local_ip is not None:
        host = f"[{local_ip}]" if ":" in local_ip else local_ip
        assert sampler._local_target(f"http://{host}:1234") is not None


def test_cpu_counters_stay_monotonic_as_children_come_and_go() -> None:
    account = _CpuAccount()
    account.update({(1, 1.0): (10.0, 1.0), (2, 2.0): (5.0, 0.5)})
    assert (account.user, account.system) == (15.0, 1.5)
    account.update({(1, 1.0): (11.0, 1.0)})  # child 2 exited
    assert (account.user, account.system) == (16.0, 1.5)
    account.update({(1, 1.0): (11.5, 1.25), (3, 3.0): (0.5, 0.0)})  # child 3 started
    assert (account.user, account.system) == (16.5 + 0.5, 1.75)
    account.update({(9, 9.0): (1.0, 0.0)})  # the server restarted as a new process
    assert (account.user, account.system) == (18.0, 1.75)
