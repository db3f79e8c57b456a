"""Swap without downtime under load (admin API), the CLI's swap and fit, and swap's refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from lmwatch.simulator import SimModel, SimSettings, start_simulator
from tests.daemons import ADMIN_TOKEN, admin, backend_yaml, run_cli
from tests.lifecycle.helpers import GIB, lifecycle_daemon, loaded

OLD, NEW = "old-7b", "new-8b"


def _models() -> list[SimModel]:
    return [SimModel(id=OLD, size_bytes=4 * GIB), SimModel(id=NEW, size_bytes=5 * GIB, loaded=False)]


def _config(url: str, extra: str = "") -> str:
    return (
        f"backends:\n  - {backend_yaml('a', url)[:-1]}, keep_loaded: [{OLD}]{extra}}}\n"
        f"routing: {{aliases: {{chat: [{OLD}, {NEW}]}}}}\n"
    )


async def test_swap_under_load_fails_no_request(tmp_path: Path) -> None:
    settings = SimSettings(models=_models(), tokens_per_second=200, load_seconds=0.3)
    async with await start_simulator(settings) as sim, lifecycle_daemon(tmp_path, _config(sim.url)) as daemon:
        served: list[str] = []
        failures: list[str] = []
        stop = asyncio.Event()
        progress = asyncio.Condition()

        async def served_at_least(n: int) -> None:
            async with progress:
                await progress.wait_for(lambda: len(served) >= n)

        async def client(http: aiohttp.ClientSession) -> None:
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 10}
            while not stop.is_set():
                async with http.post(daemon.url + "/v1/chat/completions", json=body) as resp:
                    text = (await resp.read()).decode()
                    if resp.status != 200 or "[DONE]" not in text or '"error"' in text:
                        failures.append(f"{resp.status}: {text[:200]}")
                    else:
                        served.append(resp.headers["X-LMWatch-Model"])
                        async with progress:
                            progress.notify_all()

        async with aiohttp.ClientSession() as http:
            clients = [asyncio.create_task(client(http)) for _ in range(4)]
            await asyncio.wait_for(served_at_least(8), 10)  # traffic is flowing on OLD
            status, result = await admin(http, daemon, "POST", "/admin/backends/a/swap", {"old": OLD, "new": NEW})
            before = len(served)
            await asyncio.wait_for(served_at_least(before + 8), 10)  # and keeps flowing, on NEW
            stop.set()
            await asyncio.gather(*clients)
        assert status == 200, result
        assert failures == []
        assert set(served[:8]) == {OLD} and set(served[-8:]) == {NEW}
        assert result["drained"] is True and result["load_seconds"] >= 0.3 and result["warm_up_seconds"] is not None
        assert list(sim.state.catalogue.instances) == [NEW]
        await daemon.lifecycle.tick()  # keep_loaded now names NEW: OLD does not come back
        await daemon.lifecycle.settle()
        assert list(sim.state.catalogue.instances) == [NEW]
        assert [s["model"] for s in daemon.lifecycle.keep.document("a")] == [NEW]


async def test_swap_and_fit_from_the_cli_and_the_refusals(tmp_path: Path) -> None:
    async with (
        await start_simulator(SimSettings(models=_models())) as sim,
        lifecycle_daemon(tmp_path, _config(sim.url, ", gpu_memory: 16GiB")) as daemon,
    ):
        env = {"LMWATCH_URL": daemon.url, "LMWATCH_ADMIN_TOKEN": ADMIN_TOKEN}
        code, out, err = await run_cli("fit", NEW, "--context-length", "8192", env=env)
        assert code == 0, err
        header, row = out.splitlines()
        assert header.split() == ["BACKEND", "FITS", "MAX-CONTEXT", "WHY"]
        assert row.split()[:3] == ["a", "yes", "32768"]
        assert "fits: needs 6.2 GiB with 8192 tokens of context, 11.5 GiB free (gpu_memory)" in row

        code, out, err = await run_cli("swap", "a", OLD, NEW, env=env)  # as the docs show it
        assert code == 0, err
        assert out.startswith(f"swapped {OLD} for {NEW} on a: loaded {NEW} in ")
        assert out.rstrip().endswith(f"0 requests on {OLD} finished first")
        async with aiohttp.ClientSession() as http:
            status, body = await admin(http, daemon, "POST", "/admin/backends/a/swap", {"old": NEW, "new": "nope"})
            assert (status, body["error"]["message"]) == (404, "a: not found: nope is not downloaded on a")
            status, body = await admin(http, daemon, "GET", "/admin/fit?model=nope")
            assert (status, body["error"]["code"]) == (404, "model_not_found")
            status, body = await admin(http, daemon, "POST", "/admin/backends/a/swap", {"old": OLD, "new": NEW})
            assert (status, body["error"]["code"]) == (404, "load_not_found")  # OLD is gone now
        assert await daemon.reload() == []  # the config's keep_loaded is in force again: OLD comes back
        await daemon.lifecycle.tick()
        await daemon.registry.wait_for(loaded("a", OLD), timeout=10)
        assert [s["model"] for s in daemon.lifecycle.keep.document("a")] == [OLD]
