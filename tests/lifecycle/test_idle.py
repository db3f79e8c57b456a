"""Idle unload over real HTTP: idle models go, keep_loaded ones and those serving a request stay."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from lmwatch.simulator import SimModel, SimSettings, start_simulator
from tests.daemons import audit_lines, backend_yaml
from tests.lifecycle.helpers import GIB, lifecycle_daemon

MODELS = ("kept-7b", "idle-7b", "busy-7b")


async def test_idle_models_are_unloaded_except_kept_and_serving_ones(tmp_path: Path) -> None:
    models = [SimModel(id=m, size_bytes=GIB) for m in MODELS]
    async with await start_simulator(SimSettings(models=models, tokens_per_second=40)) as sim:
        body = f"backends:\n  - {backend_yaml('a', sim.url)[:-1]}, keep_loaded: [kept-7b]}}\n"
        body += "lifecycle: {idle_unload_after: 600}\n"
        async with lifecycle_daemon(tmp_path, body) as daemon, aiohttp.ClientSession() as http:
            idle = daemon.lifecycle.idle
            now = time.time()
            assert await idle.sweep(now) == []  # first seen now: nothing has been idle yet
            request = {"model": "busy-7b", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with http.post(daemon.url + "/v1/chat/completions", json={**request, "max_tokens": 20}) as stream:
                await stream.content.readline()
                assert await idle.sweep(now + 601) == [("a", "idle-7b")]  # busy-7b is serving
                assert "[DONE]" in (await stream.read()).decode()
            finished = time.time()
            assert await idle.sweep(finished + 599) == []  # busy-7b served until just now
            assert await idle.sweep(finished + 601) == [("a", "busy-7b")]
            assert list(sim.state.catalogue.instances) == ["kept-7b"]
    lines = [x for x in audit_lines(tmp_path / "state" / "audit.jsonl") if x.get("action") == "unload_model"]
    assert [(x["target"], x["reason"]) for x in lines] == [("a/idle-7b", "idle"), ("a/busy-7b", "idle")]


async def test_the_backend_setting_wins_over_the_fleet_default(tmp_path: Path) -> None:
    models = [SimModel(id=m, size_bytes=GIB) for m in MODELS]
    async with await start_simulator(SimSettings(models=models)) as a, await start_simulator(SimSettings()) as b:
        body = (
            f"backends:\n  - {backend_yaml('a', a.url)[:-1]}, idle_unload_after: 60}}\n"
            f"  - {backend_yaml('b', b.url)}\nlifecycle: {{idle_unload_after: 3600}}\n"
        )
        async with lifecycle_daemon(tmp_path, body) as daemon:
            now = time.time()
            await daemon.lifecycle.idle.sweep(now)
            done = await daemon.lifecycle.idle.sweep(now + 61)
    assert sorted(done) == [("a", m) for m in sorted(MODELS)]
