"""Demand placement over real HTTP: a model loaded nowhere is loaded where it fits, without cutting
anyone's request, one load per backend, and a refusal that says why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from lmwatch.simulator import RunningSimulator, SimModel, SimSettings, start_simulator
from tests.daemons import backend_yaml
from tests.lifecycle.helpers import GIB, lifecycle_daemon, loaded, status

SERVING = "serving-7b"
WANTED = "wanted-8b"


def _models(serving_loaded: bool = True) -> list[SimModel]:
    return [
        SimModel(id=SERVING, size_bytes=4 * GIB, context_length=4096, loaded=serving_loaded),
        SimModel(id=WANTED, size_bytes=5 * GIB, context_length=4096, loaded=False),
    ]


def _fleet(*sims: tuple[str, RunningSimulator, str]) -> str:
    lines = ["routing: {allow_jit: true}", "backends:"]
    for name, sim, extra in sims:
        lines.append(f"  - {backend_yaml(name, sim.url)[:-1]}{', ' + extra if extra else ''}}}")
    return "\n".join(lines) + "\n"


def _chat(model: str, stream: bool = False, max_tokens: int = 4) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream, "max_tokens": max_tokens}


async def _refused_while_serving(url: str, http: aiohttp.ClientSession) -> str:
    """Ask for WANTED while a stream runs on SERVING: the 503's message (the stream must finish)."""
    async with http.post(url + "/v1/chat/completions", json=_chat(SERVING, stream=True, max_tokens=20)) as stream:
        await stream.content.readline()
        async with http.post(url + "/v1/chat/completions", json=_chat(WANTED)) as resp:
            assert resp.status == 503
            message: str = (await resp.json())["error"]["message"]
        assert "[DONE]" in (await stream.read()).decode()
    return message


async def test_a_request_for_a_model_loaded_nowhere_never_evicts_a_model_serving_a_request(tmp_path: Path) -> None:
    """LM Studio's JIT load of WANTED would auto-evict the JIT-loaded SERVING and cut its stream; lmwatch
    loads WANTED through the load API instead (no auto-evict), so the stream finishes."""
    settings = SimSettings(models=_models(serving_loaded=False), tokens_per_second=40)
    async with await start_simulator(settings) as sim, aiohttp.ClientSession() as http:
        async with http.post(sim.url + "/v1/chat/completions", json=_chat(SERVING)) as resp:
            assert resp.status == 200  # SERVING is now a JIT load: auto-evict would take it
        assert sim.state.catalogue.instances[SERVING].jit
        async with lifecycle_daemon(tmp_path, _fleet(("a", sim, ""))) as daemon:
            url = daemon.url + "/v1/chat/completions"
            async with http.post(url, json=_chat(SERVING, stream=True, max_tokens=20)) as stream:
                await stream.content.readline()  # generating on SERVING now
                async with http.post(url, json=_chat(WANTED)) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["model"] == WANTED
                rest = (await stream.read()).decode()
            assert "[DONE]" in rest and '"error"' not in rest
            assert sim.state.stats.evictions_total == 0
            assert not sim.state.catalogue.instances[WANTED].jit
            section = (await status(daemon))["lifecycle"]["recent"]
        assert [(r["action"], r["model"], r["reason"], r["result"]) for r in section] == [
            ("load", WANTED, "demand", "success")
        ]


async def test_the_model_goes_where_it_fits_and_a_refusal_says_why(tmp_path: Path) -> None:
    small, roomy = SimSettings(models=_models()), SimSettings(models=_models())
    async with await start_simulator(small) as a, await start_simulator(roomy) as b:
        kept = f"gpu_memory: 9GiB, keep_loaded: [{SERVING}]"
        body = _fleet(("a", a, kept), ("b", b, "gpu_memory: 24GiB"))
        async with lifecycle_daemon(tmp_path, body) as daemon, aiohttp.ClientSession() as http:
            async with http.post(daemon.url + "/v1/chat/completions", json=_chat(WANTED)) as resp:
                assert resp.status == 200
                assert resp.headers["X-LMWatch-Backend"] == "b"
            assert WANTED not in a.state.catalogue.instances and WANTED in b.state.catalogue.instances
            async with http.get(daemon.url + "/metrics") as resp:
                text = await resp.text()
            assert 'lmwatch_placements_total{backend="b",result="loaded"} 1.0' in text

            b.state.catalogue.unload(WANTED)
            b.state.settings.memory_bytes = 1  # b is full now (its config still says 24 GiB): nowhere fits
            daemon.watcher.poll_now("b")
            await daemon.registry.wait_for(loaded("b", WANTED, False), timeout=10)
            async with http.post(daemon.url + "/v1/chat/completions", json=_chat(WANTED)) as resp:
                status_code, answer = resp.status, await resp.json()
            failures = (await status(daemon))["lifecycle"]["backends"]
    assert status_code == 503
    message = answer["error"]["message"]
    assert "b (wanted-8b): load_failed: out of memory: " in message  # the server's refusal
    assert "insufficient system resources" in message
    assert "a (wanted-8b): load_failed: out of memory: does not fit: needs 5.6 GiB" in message  # the estimate
    assert f"held by {SERVING} (4.5 GiB: keep_loaded)" in message
    assert failures["a"]["load_failures"][WANTED].startswith("out of memory: does not fit")
    assert failures["b"]["load_failures"][WANTED].startswith("out of memory: ")


async def test_memory_is_made_by_unloading_an_idle_model_but_never_one_serving(tmp_path: Path) -> None:
    settings = SimSettings(models=_models(), tokens_per_second=40, memory_bytes=9 * GIB)
    async with (
        await start_simulator(settings) as sim,
        aiohttp.ClientSession() as http,
        lifecycle_daemon(tmp_path, _fleet(("a", sim, "gpu_memory: 9GiB"))) as daemon,
    ):
        refused = await _refused_while_serving(daemon.url, http)
        assert f"held by {SERVING} (4.5 GiB: 1 request running)" in refused
        async with http.post(daemon.url + "/v1/chat/completions", json=_chat(WANTED)) as resp:  # SERVING is idle
            assert resp.status == 200, await resp.text()
        assert list(sim.state.catalogue.instances) == [WANTED]
        assert sim.state.stats.load_failures_total == 0  # lmwatch never asked for a load that could not fit


async def test_concurrent_requests_share_one_load(tmp_path: Path) -> None:
    models = [*_models(), SimModel(id="third-3b", size_bytes=2 * GIB, loaded=False)]
    async with (
        await start_simulator(SimSettings(models=models, load_seconds=0.3)) as sim,
        lifecycle_daemon(tmp_path, _fleet(("a", sim, ""))) as daemon,
        aiohttp.ClientSession() as http,
    ):

        async def ask(model: str) -> int:
            async with http.post(daemon.url + "/v1/chat/completions", json=_chat(model)) as resp:
                return resp.status

        statuses = await asyncio.gather(*(ask(WANTED) for _ in range(5)), ask("third-3b"))
    assert statuses == [200] * 6
    assert sim.state.stats.loads_total == 2  # five requests, one load of WANTED; then third-3b


async def test_a_load_that_takes_too_long_is_a_timeout(tmp_path: Path) -> None:
    async with await start_simulator(SimSettings(models=_models(), load_seconds=2)) as sim:
        body = _fleet(("a", sim, "")) + "lifecycle: {load_timeout: 0.3}\n"
        async with lifecycle_daemon(tmp_path, body) as daemon, aiohttp.ClientSession() as http:
            async with http.post(daemon.url + "/v1/chat/completions", json=_chat(WANTED)) as resp:
                answer = await resp.json()
            failures = (await status(daemon))["lifecycle"]["backends"]["a"]["load_failures"]
    assert "load_failed: timeout: the server did not finish loading in time" in answer["error"]["message"]
    assert failures[WANTED].startswith("timeout: ")


async def test_a_just_in_time_server_is_used_only_when_nothing_runs_there(tmp_path: Path) -> None:
    settings = SimSettings(flavour="0.3", models=_models(), tokens_per_second=40)
    async with (
        await start_simulator(settings) as sim,
        aiohttp.ClientSession() as http,
        lifecycle_daemon(tmp_path, _fleet(("old", sim, ""))) as daemon,
    ):
        refused = await _refused_while_serving(daemon.url, http)
        assert "its just-in-time load could evict their model and cut them" in refused
        async with http.post(daemon.url + "/v1/chat/completions", json=_chat(WANTED)) as resp:
            assert resp.status == 200
        assert sim.state.stats.jit_loads_total == 1
