"""The simulator's memory model over HTTP: loads that do not fit fail as LM Studio fails them, per-model
load times, memory in use in /__sim/stats, and a JIT load that evicts a model cutting its request."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from lmwatch.simulator import SimModel, SimSettings, start_simulator
from lmwatch.simulator.memory import footprint

GIB = 1024**3
BIG = SimModel(id="big-70b", size_bytes=40 * GIB, loaded=False, load_seconds=0.2)
SMALL = SimModel(id="small-1b", size_bytes=1 * GIB, loaded=False)


async def test_an_api_load_that_does_not_fit_fails_with_the_guardrail_message(http: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimSettings(models=[BIG, SMALL], memory_bytes=24 * GIB)) as sim:
        started = time.monotonic()
        async with http.post(sim.url + "/api/v1/models/load", json={"model": "big-70b"}) as resp:
            status, body = resp.status, await resp.json()
        assert time.monotonic() - started >= 0.2  # the failure shows part-way through the load time
        assert status == 500
        assert body["error"]["code"] == "model_load_failed"
        assert "insufficient system resources" in body["error"]["message"]
        async with http.post(sim.url + "/api/v1/models/load", json={"model": "small-1b"}) as resp:
            assert resp.status == 200
        async with http.get(sim.url + "/__sim/stats") as resp:
            stats = await resp.json()
        assert stats["memory"] == {"budget_bytes": 24 * GIB, "used_bytes": footprint(1 * GIB, 4096)}
        assert stats["instances"]["small-1b"]["memory_bytes"] == footprint(1 * GIB, 4096)
        assert stats["load_failures_total"] == 1


async def test_a_hidden_out_of_memory_says_only_failed_to_load(http: aiohttp.ClientSession) -> None:
    settings = SimSettings(models=[BIG], memory_bytes=24 * GIB, load_error_detail=False)
    async with (
        await start_simulator(settings) as sim,
        http.post(sim.url + "/api/v1/models/load", json={"model": "big-70b"}) as resp,
    ):
        body = await resp.json()
    assert body["error"]["message"] == 'Failed to load model "big-70b".'


async def test_a_jit_load_that_does_not_fit_fails_the_request(http: aiohttp.ClientSession) -> None:
    async with await start_simulator(SimSettings(models=[BIG], memory_bytes=24 * GIB)) as sim:
        body = {"model": "big-70b", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(sim.url + "/v1/chat/completions", json=body) as resp:
            status, answer = resp.status, await resp.json()
    assert status == 400
    assert answer["error"]["code"] == "model_load_failed"
    assert "insufficient system resources" in answer["error"]["message"]


async def test_a_jit_load_evicts_the_earlier_jit_model_and_cuts_its_stream(http: aiohttp.ClientSession) -> None:
    """LM Studio's bug #671, faithfully: auto-evict does not wait for the evicted model's requests."""
    settings = SimSettings(models=[SMALL, SimModel(id="other-1b", size_bytes=GIB, loaded=False)], tokens_per_second=20)
    async with await start_simulator(settings) as sim:
        long = {"model": "small-1b", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 200}
        async with http.post(sim.url + "/v1/chat/completions", json=long) as first:
            await first.content.readline()  # generating now
            other = {"model": "other-1b", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(sim.url + "/v1/chat/completions", json=other) as second:
                assert second.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):  # cut: no [DONE], the chunked body never ends
                await asyncio.wait_for(first.content.read(), 10)
        assert sim.state.stats.evictions_total == 1
        assert "small-1b" not in sim.state.catalogue.instances
