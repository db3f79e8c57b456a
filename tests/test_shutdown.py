"""SIGTERM: stop accepting, let requests in flight (streams too) finish up to server.shutdown_grace,
exit 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.daemons import ADMIN_TOKEN, backend_yaml, config_file, daemon_for, daemon_process, write

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def arrival(sim: RunningSimulator, path: str) -> asyncio.Event:
    """An event set when the simulator receives a request for `path`."""
    event = asyncio.Event()
    stats = sim.state.stats
    original = stats.count_request

    def count(seen: str) -> None:
        original(seen)
        if seen == path:
            event.set()

    stats.count_request = count  # type: ignore[method-assign]
    return event


async def refused(url: str) -> None:
    """Until a new connection to `url` is refused (the listener is closed)."""
    async with aiohttp.ClientSession() as fresh:
        while True:
            try:
                async with fresh.get(url + "/healthz") as resp:
                    await resp.read()
            except aiohttp.ClientConnectionError:
                return
            await asyncio.sleep(0.02)


def load_through(http: aiohttp.ClientSession, url: str) -> asyncio.Task[aiohttp.ClientResponse]:
    """A model load through the daemon at `url`: a request in flight for as long as the simulator loads."""
    body = {"model": "mistral-7b-instruct-v0.3"}
    return asyncio.create_task(http.post(url + "/admin/backends/a/models/load", json=body, headers=HEADERS))


async def test_sigterm_lets_a_request_in_flight_finish_and_exits_0(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = await start_simulator(SimSettings(load_seconds=3), port=0)
    try:
        config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
        async with daemon_process(config) as proc:
            url = await proc.wait_listening()
            await proc.wait_ready()
            arrived = arrival(sim, "/api/v1/models/load")
            load = load_through(http, url)
            await asyncio.wait_for(arrived.wait(), 10)  # the daemon's upstream call started: a request in flight
            proc.signal(signal.SIGTERM)
            await proc.read_log_until("stopping: no new requests")
            await asyncio.wait_for(refused(url), 5)  # no new connections while the load still runs
            assert not load.done()
            resp = await load
            assert resp.status == 200 and (await resp.json())["loaded"] is True
            assert await proc.wait() == 0
    finally:
        await sim.stop()


async def test_requests_past_the_grace_period_are_cut_and_the_exit_is_still_0(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sim = await start_simulator(SimSettings(load_seconds=30), port=0)
    try:
        config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
        write(config, config.read_text().replace("shutdown_grace: 10", "shutdown_grace: 0.5"))
        async with daemon_process(config) as proc:
            url = await proc.wait_listening()
            await proc.wait_ready()
            arrived = arrival(sim, "/api/v1/models/load")
            load = load_through(http, url)
            await asyncio.wait_for(arrived.wait(), 10)
            started = time.monotonic()
            proc.signal(signal.SIGTERM)
            assert await proc.wait(timeout=20) == 0
            assert time.monotonic() - started < 10  # not the 30 s the load would take
            with pytest.raises(aiohttp.ClientError):
                await load
    finally:
        await sim.stop()


async def test_stop_lets_streams_in_flight_finish(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = await start_simulator(SimSettings(ttft=0.05, tokens_per_second=60), port=0)
    try:
        config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
        async with daemon_for(config) as daemon:
            body = {
                "model": "qwen2.5-coder-7b-instruct",
                "stream": True,
                "max_tokens": 40,
                "messages": [{"role": "user", "content": "count"}],
            }
            async with http.post(daemon.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                await resp.content.readline()
                stopping = asyncio.create_task(daemon.stop())  # what SIGTERM does
                await asyncio.wait_for(refused(daemon.url), 5)
                rest = await resp.read()
            assert rest.rstrip().endswith(b"data: [DONE]")
            await stopping
    finally:
        await sim.stop()


async def test_sigterm_during_the_first_poll_round_stops_at_once_without_a_traceback(tmp_path: Path) -> None:
    """A backend that never answers holds the first poll round for its whole probe_timeout (60 s
    here): SIGTERM then abandons the round instead of waiting it out."""
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/{path:.*}", hang)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        config = config_file(tmp_path, f"backends: [{backend_yaml('hung', url, probe_timeout=60, kind='openai')}]\n")
        async with daemon_process(config) as proc:
            await proc.wait_listening()
            await asyncio.wait_for(arrived.wait(), 30)
            proc.signal(signal.SIGTERM)
            assert await proc.wait(timeout=20) == 0
    log = "".join(proc.log)
    assert "the first poll round is abandoned" in log
    assert "Traceback" not in log and "CancelledError" not in log
