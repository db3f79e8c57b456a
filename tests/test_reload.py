"""Hot reload (POST /admin/reload and SIGHUP): a valid config is swapped in without failing requests
in flight or resetting counters; an invalid one is refused with path-named errors and the running
config stays."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lmwatch.daemon import Daemon
from lmwatch.registry import Health
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.daemons import (
    ADMIN_TOKEN,
    admin,
    backend_yaml,
    config_file,
    daemon_for,
    daemon_process,
    metric_value,
    write,
)


@pytest.fixture
async def sims() -> AsyncIterator[list[RunningSimulator]]:
    servers = [
        await start_simulator(SimSettings(ttft=0.05, tokens_per_second=150, parallel=16), port=0) for _ in range(2)
    ]
    yield servers
    for server in servers:
        await server.stop()


async def scrape(http: aiohttp.ClientSession, daemon: Daemon) -> str:
    async with http.get(daemon.url + "/metrics") as resp:
        return await resp.text()


async def chat(http: aiohttp.ClientSession, daemon: Daemon) -> int:
    body = {"model": "qwen2.5-coder-7b-instruct", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(daemon.url + "/v1/chat/completions", json=body) as resp:
        await resp.read()
        return resp.status


async def test_a_valid_config_is_swapped_in_and_counters_carry_over(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, two = sims
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', one.url)}]\n")
    async with daemon_for(config) as daemon:
        assert await chat(http, daemon) == 200
        status, _ = await admin(http, daemon, "POST", "/admin/backends/a/drain")
        assert status == 200
        status, _ = await admin(
            http, daemon, "POST", "/admin/backends", {"name": "runtime", "url": two.url, "poll_interval": 1}
        )
        assert status == 201
        loaded_before = daemon.holder.loaded

        text = config.read_text().replace(
            f"backends: [{backend_yaml('a', one.url)}]",
            f"backends: [{backend_yaml('a', one.url, weight=2)}, {backend_yaml('b', two.url)}]",
        )
        write(config, text + "routing: {preferences: {coding: [qwen2.5-coder]}}\n")
        status, answer = await admin(http, daemon, "POST", "/admin/reload")
        assert status == 200, answer
        assert answer == {"reloaded": True, "backends": ["a", "b"]}
        assert daemon.holder.loaded is not loaded_before
        assert daemon.holder.config.routing.preferences == {"coding": ["qwen2.5-coder"]}
        snap = await daemon.registry.wait_for(
            lambda s: s.backends.get("b") is not None and s.backends["b"].health is Health.UP, timeout=5
        )
        assert "runtime" not in snap.backends  # runtime changes are ephemeral: reload = the file's state
        assert snap.backends["a"].config.weight == 2
        assert snap.backends["a"].draining  # an operator's drain survives a reload
        assert snap.backends["a"].health is Health.UP  # state kept: no re-probe needed

        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_requests_total", [("backend", "a"), ("code", "200")]) == 1.0
        assert metric_value(text, "lmwatch_client_requests_total", [("key_name", "anonymous"), ("code", "200")]) == 1
        assert metric_value(text, "lmwatch_config_reloads_total", [("result", "success")]) == 1.0
        assert metric_value(text, "lmwatch_config_last_reload_successful") == 1.0


async def test_an_invalid_config_is_refused_and_the_running_one_stays(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, _ = sims
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', one.url)}]\n")
    async with daemon_for(config) as daemon:
        loaded = daemon.holder.loaded
        good = config.read_text()
        write(config, good + "backends: [{name: a, url: 'nope'}, {name: b, url: 'http://h:1', timeout: 0}]\n")
        status, answer = await admin(http, daemon, "POST", "/admin/reload")
        assert status == 400
        assert answer["problems"] == [
            "backends[0].url: Input should be a valid URL, relative URL without a base (got 'nope')",
            "backends[1].timeout: Input should be greater than 0 (got 0)",
        ]
        assert answer["error"]["code"] == "invalid_config"
        assert daemon.holder.loaded is loaded
        assert set(daemon.registry.snapshot().backends) == {"a"}

        write(config, good.replace("port: 0", "port: [0"))
        status, answer = await admin(http, daemon, "POST", "/admin/reload")
        assert status == 400 and answer["problems"][0].startswith("line ")

        (tmp_path / "admin.token").unlink()  # a secret the config names must be readable
        write(config, good)
        status, answer = await admin(http, daemon, "POST", "/admin/reload")
        assert status == 400
        assert answer["problems"][0].startswith(f"admin.token_file: cannot read {tmp_path / 'admin.token'}")
        assert daemon.holder.loaded is loaded
        status, _ = await admin(http, daemon, "GET", "/admin/backends")  # the old token still works
        assert status == 200

        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_config_reloads_total", [("result", "failure")]) == 3.0
        assert metric_value(text, "lmwatch_config_last_reload_successful") == 0.0
        _, doc = await admin(http, daemon, "GET", "/admin/backends")
        assert doc["last_reload"]["success"] is False


async def test_reloads_while_streams_run_fail_no_request(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, two = sims
    base = f"backends: [{backend_yaml('a', one.url)}, {backend_yaml('b', two.url)}]\n"
    config = config_file(tmp_path, base)
    good = config.read_text()
    async with daemon_for(config) as daemon:
        body = {
            "model": "qwen2.5-coder-7b-instruct",
            "stream": True,
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "write a long function"}],
        }
        started = asyncio.Event()
        first_chunks = 0
        streams = 16

        async def stream() -> tuple[int, bytes]:
            nonlocal first_chunks
            async with http.post(daemon.url + "/v1/chat/completions", json=body) as resp:
                head = await resp.content.readline()
                first_chunks += 1
                if first_chunks == streams:
                    started.set()
                return resp.status, head + await resp.read()

        tasks = [asyncio.create_task(stream()) for _ in range(streams)]
        await asyncio.wait_for(started.wait(), 20)  # every stream is mid-flight now
        reloads = [
            good.replace(backend_yaml("a", one.url), backend_yaml("a", one.url, weight=3)),
            good + "routing: {default_model: [broken}\n",  # refused
            good + "routing: {preferences: {coding: [qwen2.5-coder]}}\n",
            good.replace(backend_yaml("b", two.url), backend_yaml("b", two.url, timeout=45)),
        ]
        results = []
        for text in reloads:
            write(config, text)
            results.append((await admin(http, daemon, "POST", "/admin/reload"))[0])
        assert results == [200, 400, 200, 200]
        assert first_chunks == streams and not any(t.done() for t in tasks)  # the reloads overlapped them
        outcomes = await asyncio.gather(*tasks)
        for status, raw in outcomes:
            assert status == 200
            assert raw.rstrip().endswith(b"data: [DONE]"), raw[-200:]
            assert b'"error"' not in raw
        text = await scrape(http, daemon)
        served = sum(
            metric_value(text, "lmwatch_requests_total", [("backend", n), ("code", "200")]) or 0 for n in ("a", "b")
        )
        assert served == streams


async def test_sighup_reloads_and_a_bad_file_keeps_the_daemon_running(
    tmp_path: Path, sims: list[RunningSimulator], http: aiohttp.ClientSession
) -> None:
    one, two = sims
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', one.url)}]\n")
    good = config.read_text()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with daemon_process(config) as proc:
        url = await proc.wait_listening()
        await proc.wait_ready()
        write(config, good + "logging: {level: loud}\n")
        proc.signal(signal.SIGHUP)
        line = await proc.read_log_until("reload refused")
        assert "logging.level: Input should be 'debug', 'info', 'warning' or 'error' (got 'loud')" in line
        await proc.read_log_until("the running config stays in force")

        write(
            config,
            good.replace(
                f"backends: [{backend_yaml('a', one.url)}]",
                f"backends: [{backend_yaml('a', one.url)}, {backend_yaml('b', two.url)}]",
            ),
        )
        proc.signal(signal.SIGHUP)
        await proc.read_log_until("config reloaded from")
        async with http.get(url + "/admin/backends", headers=headers) as resp:
            names = [b["name"] for b in (await resp.json())["backends"]]
        assert names == ["a", "b"]
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
