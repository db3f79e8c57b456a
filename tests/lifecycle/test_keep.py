"""keep_loaded over real HTTP: loaded at start, re-loaded after an unload or a crash, backoff with
the reason shown, a warning for servers that cannot load, and two lmwatch that do not fight."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from lmwatch.config import parse_config
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.daemons import audit_lines, backend_yaml
from tests.lifecycle.helpers import GIB, MISTRAL, lifecycle_daemon, loaded, sim_post, status


def _config(sim: RunningSimulator, extra: str = "", backend: str = "") -> str:
    keep = f"keep_loaded: [{{model: {MISTRAL}, context_length: 8192}}]" + (", " + backend if backend else "")
    return f"backends:\n  - {backend_yaml('studio', sim.url)[:-1]}, {keep}}}\n" + extra


async def test_kept_model_is_loaded_at_start_warmed_up_and_audited(sim: RunningSimulator, tmp_path: Path) -> None:
    async with lifecycle_daemon(tmp_path, _config(sim)) as daemon:
        await daemon.registry.wait_for(loaded("studio", MISTRAL), timeout=10)
        await daemon.lifecycle.settle()
        inst = sim.state.catalogue.instances[MISTRAL]
        assert (inst.context_length, inst.jit) == (8192, False)  # an API load with the context asked for
        assert sim.state.stats.requests_total.get("/v1/chat/completions") == 1  # the warm-up
        section = (await status(daemon))["lifecycle"]["backends"]["studio"]
        assert section["keep_loaded"] == [
            {"model": MISTRAL, "state": "loaded", "reason": "", "attempts": 0, "retry_at": None, "warning": None}
        ]
        assert section["managed"] is True
    lines = [x for x in audit_lines(tmp_path / "state" / "audit.jsonl") if x.get("actor") == "lifecycle"]
    assert [(x["action"], x["target"], x["result"], x["reason"]) for x in lines] == [
        ("load_model", f"studio/{MISTRAL}", "ok", "keep_loaded")
    ]


async def test_a_manual_unload_and_a_crash_are_undone(tmp_path: Path) -> None:
    sim = await start_simulator(SimSettings())
    port = sim.port
    try:
        async with lifecycle_daemon(tmp_path, _config(sim)) as daemon:
            await daemon.registry.wait_for(loaded("studio", MISTRAL), timeout=10)
            status_code, _ = await sim_post(sim.url, "/api/v1/models/unload", {"instance_id": MISTRAL})
            assert status_code == 200
            daemon.watcher.poll_now("studio")
            await daemon.registry.wait_for(loaded("studio", MISTRAL, False), timeout=10)
            await daemon.registry.wait_for(loaded("studio", MISTRAL), timeout=10)
            assert sim.state.stats.loads_total == 2

            await sim.stop()  # the server crashes and comes back with only its default models
            daemon.watcher.poll_now("studio")
            await daemon.registry.wait_for(lambda s: not s.backends["studio"].reachable, timeout=10)
            sim = await start_simulator(SimSettings(), port=port)
            daemon.watcher.poll_now("studio")
            await daemon.registry.wait_for(loaded("studio", MISTRAL), timeout=15)
            assert MISTRAL in sim.state.catalogue.instances, sim.state.snapshot()
    finally:
        await sim.stop()


async def test_a_failing_load_backs_off_says_why_and_recovers(tmp_path: Path) -> None:
    settings = SimSettings(memory_bytes=15 * GIB)  # the four loaded defaults hold ~13 GiB: mistral does not fit
    async with await start_simulator(settings) as sim:
        extra = "lifecycle: {retry_backoff: 0.2, max_backoff: 0.4, interval: 0.2}\n"
        async with lifecycle_daemon(tmp_path, _config(sim, extra)) as daemon:
            await daemon.lifecycle.settle()
            state = (await status(daemon))["lifecycle"]["backends"]["studio"]["keep_loaded"][0]
            assert state["state"] == "failed"
            assert state["attempts"] >= 1 and state["retry_at"] is not None
            assert state["reason"].startswith("out of memory: ")
            assert "insufficient system resources" in state["reason"]
            async with daemon.lifecycle.loader.slot("studio", "probe"):
                pass  # the slot is free again after a failure
            await sim_post(sim.url, "/__sim/config", {"memory_bytes": 64 * GIB})
            await daemon.registry.wait_for(loaded("studio", MISTRAL), timeout=10)
            async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as resp:
                text = await resp.text()
        series = f'lmwatch_model_loads_total{{backend="studio",model="{MISTRAL}",reason="keep_loaded",result='
        assert series + '"out_of_memory"}' in text and series + '"success"} 1.0' in text


async def test_a_generic_load_failure_is_told_as_out_of_memory_from_the_estimate(tmp_path: Path) -> None:
    """LM Studio can hide a CUDA OOM behind a bare "Failed to load model"; lmwatch's estimate says why."""
    settings = SimSettings(memory_bytes=15 * GIB, load_error_detail=False)
    async with await start_simulator(settings) as sim:
        body = _config(sim, backend="gpu_memory: 15GiB")
        async with lifecycle_daemon(tmp_path, body) as daemon:
            await daemon.lifecycle.settle()
            reason = daemon.lifecycle.keep.states["studio"][MISTRAL].reason
    assert reason.startswith("out of memory: ")
    assert "the server gave no reason; lmwatch's estimate: does not fit" in reason


async def test_servers_that_cannot_load_get_a_clear_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with await start_simulator(SimSettings(flavour="0.3")) as sim:
        with caplog.at_level(logging.WARNING, "lmwatch.lifecycle"):
            async with lifecycle_daemon(tmp_path, _config(sim)) as daemon:
                await daemon.lifecycle.settle()
                state = daemon.lifecycle.keep.states["studio"][MISTRAL]
        assert sim.state.stats.loads_total == 0
    assert state.state == "unsupported"
    assert "keep_loaded needs LM Studio 0.4+" in state.reason
    assert any("backends[studio].keep_loaded" in r.getMessage() for r in caplog.records)
    text = f'backends: [{{name: b, url: "http://h:1", kind: lmstudio-v0, keep_loaded: [{MISTRAL}]}}]'
    assert parse_config(text).warnings == (
        "backends[0].keep_loaded: kind lmstudio-v0 cannot load models over HTTP (LM Studio 0.4+ can), "
        "so these models are not kept loaded",
    )


async def test_two_lmwatch_on_one_fleet_do_not_fight(sim: RunningSimulator, tmp_path: Path) -> None:
    """Only the owner loads; the other shows who manages the backend."""
    body = _config(sim, backend="owner: alpha")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        lifecycle_daemon(tmp_path / "a", body + "lifecycle: {instance: alpha}\n") as alpha,
        lifecycle_daemon(tmp_path / "b", body + "lifecycle: {instance: beta}\n") as beta,
    ):
        await alpha.registry.wait_for(loaded("studio", MISTRAL), timeout=10)
        await sim_post(sim.url, "/api/v1/models/unload", {"instance_id": MISTRAL})
        beta.watcher.poll_now("studio")
        await beta.registry.wait_for(loaded("studio", MISTRAL, False), timeout=10)
        await beta.lifecycle.settle()
        alpha.watcher.poll_now("studio")
        await alpha.registry.wait_for(loaded("studio", MISTRAL), timeout=10)
        await alpha.lifecycle.settle()
        beta_state = (await status(beta))["lifecycle"]["backends"]["studio"]
    assert sim.state.stats.loads_total == 2  # alpha's two loads; beta never loaded
    assert f"{MISTRAL}:2" not in sim.state.catalogue.instances  # nobody loaded a second copy
    assert beta_state["managed"] is False
    assert beta_state["keep_loaded"][0]["state"] in ("not_owner", "loaded")


async def test_an_unknown_model_is_not_found_and_ignored_parallel_slots_are_told(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    keep = f"keep_loaded: [no-such-model, {{model: {MISTRAL}, parallel: 2}}]"
    body = f"backends:\n  - {backend_yaml('studio', sim.url)[:-1]}, {keep}}}\n"
    async with lifecycle_daemon(tmp_path, body) as daemon:
        await daemon.registry.wait_for(loaded("studio", MISTRAL), timeout=10)
        await daemon.lifecycle.settle()
        states = {s["model"]: s for s in daemon.lifecycle.keep.document("studio")}
    assert states["no-such-model"]["state"] == "failed"
    assert states["no-such-model"]["reason"].startswith("not found: /api/v1/models/load: HTTP 404")
    assert states[MISTRAL]["state"] == "loaded"  # LM Studio gives API loads 4 slots whatever is asked
    assert states[MISTRAL]["warning"] == "asked for 2 parallel slots, the server reports 4"
