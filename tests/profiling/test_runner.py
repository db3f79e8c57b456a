"""`lmwatch profile` in a daemon against simulated LM Studio servers: the configured speeds are
measured back, results persist in the state directory, are shown in /status, /admin/models and
metrics, and are kept, skipped or measured again as the rules say."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import generate_latest

from lmwatch.daemon import Daemon
from lmwatch.profiling.measure import Options
from lmwatch.profiling.store import FILENAME, ProfileStore
from lmwatch.registry import ModelProfile, ModelType
from lmwatch.simulator import RunningSimulator, SimModel, SimSettings, start_simulator
from tests.api.fleets import eventually, fleet
from tests.daemons import ADMIN_TOKEN, backend_yaml, bearer, config_file, daemon_for, run_cli

TTFT, GENERATION, PROMPT = 0.2, 100.0, 1000.0
MODELS = [
    SimModel(id="meta-llama-3.1-8b-instruct", context_length=8192),
    SimModel(id="text-embedding-nomic-embed-text-v1.5", type="embeddings", context_length=2048),
]


@pytest.fixture
async def paced() -> AsyncIterator[RunningSimulator]:
    settings = SimSettings(
        models=MODELS, ttft=TTFT, tokens_per_second=GENERATION, prompt_tokens_per_second=PROMPT, parallel=4
    )
    server = await start_simulator(settings, port=0)
    yield server
    await server.stop()


@pytest.fixture
async def daemon(tmp_path: Path, paced: RunningSimulator) -> AsyncIterator[Daemon]:
    async with daemon_for(config_file(tmp_path, f"backends: [{backend_yaml('studio', paced.url)}]\n")) as running:
        yield running


def near(measured: float | None, expected: float, tolerance: float = 0.10, slower: float | None = None) -> bool:
    """Within `tolerance` of `expected`; a run on a loaded machine can only come out slower, by up to
    `slower` when given (a wrong formula, such as counting the prompt or a stream twice, is off by more)."""
    low = expected * (1 - (slower if slower is not None else tolerance))
    return measured is not None and low <= measured <= expected * (1 + tolerance)


async def test_the_simulators_configured_speeds_are_measured_within_ten_percent_or_slower(daemon: Daemon) -> None:
    assert daemon.profiles is not None
    results = {r.model: r for r in await daemon.profiles.run(options=Options(tokens=48))}
    llm = results["meta-llama-3.1-8b-instruct"].profile
    assert llm is not None and results["meta-llama-3.1-8b-instruct"].outcome == "measured"
    assert llm.prompt_tokens_short and llm.prompt_tokens_long and llm.prompt_tokens_long > 300
    assert near(llm.ttft_short_seconds, TTFT + llm.prompt_tokens_short / PROMPT)
    assert near(llm.ttft_long_seconds, TTFT + llm.prompt_tokens_long / PROMPT)
    assert near(llm.prompt_tokens_per_second, PROMPT)
    assert near(llm.generation_tokens_per_second, GENERATION)
    assert [p.concurrency for p in llm.throughput] == [1, 2, 4]  # up to the 4 parallel slots
    # four streams paced by one simulator on a shared 2-CPU machine: the speed that load bends most
    assert all(near(p.per_request_tokens_per_second, GENERATION, slower=0.25) for p in llm.throughput)
    assert llm.throughput[2].tokens_per_second > 3 * llm.throughput[0].tokens_per_second
    assert llm.chars_per_token is not None and 5 < llm.chars_per_token < 8  # the simulator counts words
    embedding = results["text-embedding-nomic-embed-text-v1.5"].profile
    assert embedding is not None and embedding.throughput == () and embedding.generation_tokens_per_second is None
    assert near(embedding.prompt_tokens_per_second, PROMPT)


def quick(model: str, **numbers: float) -> ModelProfile:
    return ModelProfile(backend="studio", model=model, model_type=ModelType.LLM, measured_at=1.0, **numbers)  # type: ignore[arg-type]


async def test_profiles_persist_are_kept_skipped_when_busy_and_measured_again_with_force(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('studio', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        assert daemon.profiles is not None
        first = await daemon.profiles.run(model="qwen2.5-coder-7b-instruct", options=Options(tokens=4))
        assert [(r.model, r.outcome) for r in first] == [("qwen2.5-coder-7b-instruct", "measured")]
    assert (tmp_path / "state" / FILENAME).exists()
    async with daemon_for(config) as daemon:
        assert daemon.profiles is not None
        stored = daemon.registry.snapshot().profiles[("studio", "qwen2.5-coder-7b-instruct")]
        assert stored == first[0].profile
        again = await daemon.profiles.run(model="qwen2.5-coder-7b-instruct")
        assert again[0].outcome == "kept" and "--force" in (again[0].reason or "")
        daemon.registry.outcomes.started("studio")  # a request in flight: the backend is busy
        busy = await daemon.profiles.run(backend="studio", model="meta-llama-3.1-8b-instruct")
        assert busy[0].outcome == "skipped" and "serving traffic (1 requests)" in (busy[0].reason or "")
        forced = await daemon.profiles.run(model="qwen2.5-coder-7b-instruct", force=True, options=Options(tokens=4))
        assert forced[0].outcome == "measured" and forced[0].profile is not None
        assert forced[0].profile.measured_at >= stored.measured_at


async def test_shown_in_status_admin_models_and_metrics(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    daemon.registry.record_profiles(
        [quick("meta-llama-3.1-8b-instruct", ttft_short_seconds=0.2, generation_tokens_per_second=42.0)]
    )
    async with http.get(daemon.url + "/status") as resp:
        status = await resp.json()
    [row] = status["profiles"]["models"]
    assert (row["model"], row["ttft_short_seconds"], row["generation_tokens_per_second"]) == (
        "meta-llama-3.1-8b-instruct",
        0.2,
        42.0,
    )
    async with http.get(daemon.url + "/admin/models", headers=bearer(ADMIN_TOKEN)) as resp:
        models = {m["id"]: m for m in (await resp.json())["models"]}
    assert models["meta-llama-3.1-8b-instruct"]["profile"]["generation_tokens_per_second"] == 42.0
    assert models["text-embedding-nomic-embed-text-v1.5"]["profile"] is None
    async with http.get(daemon.url + "/admin/models?task=research", headers=bearer(ADMIN_TOKEN)) as resp:
        ranked = await resp.json()
    assert [(m["rank"], m["id"]) for m in ranked["models"]] == [(1, "meta-llama-3.1-8b-instruct")]
    async with http.get(daemon.url + "/admin/models?task=nope", headers=bearer(ADMIN_TOKEN)) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "unknown_task"
    text = generate_latest(daemon.services.metrics).decode()
    assert (
        'lmwatch_model_profile_generation_tokens_per_second{backend="studio",model="meta-llama-3.1-8b-instruct"} 42.0'
        in text
    )
    labels = 'backend="studio",model="meta-llama-3.1-8b-instruct",prompt="short"'
    assert f"lmwatch_model_profile_time_to_first_token_seconds{{{labels}}} 0.2" in text


async def test_the_admin_endpoint_refuses_bad_input_and_names_what_is_missing(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    for body, status, code in [
        ({"backend": "nope"}, 404, "not_found"),
        ({"model": "no-such-model"}, 404, "not_found"),
        ({"tokens": 1}, 400, "invalid_type"),
        ({"force": "yes"}, 400, "invalid_type"),
        ([1], 400, "invalid_json"),
    ]:
        async with http.post(daemon.url + "/admin/profile", json=body, headers=bearer(ADMIN_TOKEN)) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (status, code), body


def test_a_broken_store_is_an_error_never_a_crash_and_bad_rows_are_skipped(tmp_path: Path) -> None:
    store = ProfileStore(tmp_path)
    store.save([quick("a", ttft_short_seconds=0.1), quick("b")])
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE profiles SET data = '{\"model_type\": \"nope\"}' WHERE model = 'b'")
    assert [p.model for p in store.load()] == ["a"]
    store.path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(Exception, match="cannot read"):
        store.load()


async def test_measured_profiles_are_the_balancers_prior_before_any_live_average(tmp_path: Path) -> None:
    """Two backends with the same model, measured for real: the faster one gets the first requests,
    before either has a live sample (without the prior the first would go either way)."""
    model = [SimModel(id="meta-llama-3.1-8b-instruct")]
    fast = SimSettings(models=model, ttft=0.01, tokens_per_second=2000.0)
    slow = SimSettings(models=model, ttft=0.3, tokens_per_second=40.0)
    async with fleet({"fast": fast, "slow": slow}, extra={"state_dir": str(tmp_path)}) as f:
        assert f.daemon.profiles is not None
        measured = await f.daemon.profiles.run(options=Options(tokens=4))
        assert sorted((r.backend, r.outcome) for r in measured) == [("fast", "measured"), ("slow", "measured")]
        assert f.outcomes.speed("fast", "meta-llama-3.1-8b-instruct") is None  # no live numbers yet
        slow_calls = f.sims["slow"].state.stats.requests_total.get("/v1/chat/completions", 0)
        client = f.client()
        served = []
        for _ in range(4):
            raw = await client.chat.completions.with_raw_response.create(
                model="meta-llama-3.1-8b-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
            served.append(raw.headers["X-LMWatch-Backend"])
        assert served == ["fast"] * 4
        assert f.sims["slow"].state.stats.requests_total.get("/v1/chat/completions", 0) == slow_calls


async def test_lmwatch_profile_leaves_a_backend_serving_traffic_alone_unless_forced(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A real request in flight through lmwatch: `lmwatch profile` skips the backend and says why;
    `--force` measures it anyway, and the request still completes."""
    settings = SimSettings(models=MODELS[:1], ttft=30.0)
    sim = await start_simulator(settings, port=0)
    try:
        async with daemon_for(config_file(tmp_path, f"backends: [{backend_yaml('studio', sim.url)}]\n")) as daemon:
            body = {"model": "meta-llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}
            serving = asyncio.create_task(
                http.post(daemon.url + "/v1/chat/completions", json={**body, "max_tokens": 2})
            )
            await eventually(lambda: daemon.registry.outcomes.inflight.get("studio", 0) == 1)
            env = {"LMWATCH_URL": daemon.url, "LMWATCH_ADMIN_TOKEN": ADMIN_TOKEN}
            code, out, err = await run_cli("profile", "--tokens", "2", env=env)
            assert code == 0, err
            assert "skipped" in out.splitlines()[1]
            assert "studio / meta-llama-3.1-8b-instruct: serving traffic (1 requests); use --force" in out
            assert ("studio", "meta-llama-3.1-8b-instruct") not in daemon.registry.snapshot().profiles
            sim.state.configure({"ttft": 0.0})  # the request in flight keeps waiting; new ones are quick
            code, out, err = await run_cli("profile", "--tokens", "2", "--force", env=env)
            assert code == 0, err
            assert out.splitlines()[1].split()[:3] == ["studio", "meta-llama-3.1-8b-instruct", "measured"]
            assert not serving.done()
            serving.cancel()
    finally:
        await sim.stop()


async def test_lmwatch_compare_per_task_shows_the_profiles_and_how_that_tasks_requests_went(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with daemon_for(config_file(tmp_path, f"backends: [{backend_yaml('studio', sim.url)}]\n")) as daemon:
        daemon.registry.record_profiles(
            [quick("qwen2.5-coder-7b-instruct", ttft_short_seconds=0.1, generation_tokens_per_second=99.0)]
        )
        for text in ("Write a Python function that reverses a list", "Fix this SQL query: SELEC * FROM t"):
            body = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 4}
            async with http.post(daemon.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200 and resp.headers["X-LMWatch-Task"] == "coding"
                assert resp.headers["X-LMWatch-Model"] == "qwen2.5-coder-7b-instruct"
        env = {"LMWATCH_URL": daemon.url, "LMWATCH_ADMIN_TOKEN": ADMIN_TOKEN}
        code, out, err = await run_cli("compare", "--task", "coding", env=env)
        assert code == 0, err
        header, qwen, llama, *_ = out.splitlines()
        assert header.split()[-7:] == ["CODING", "REQS", "MEAN", "S", "MEAN", "TTFT", "TOK/S"]
        assert qwen.split()[:3] == ["1", "capability", "qwen2.5-coder-7b-instruct"]
        assert qwen.split()[6:8] == ["0.100", "-"] and qwen.split()[9] == "99.0"  # its profile
        assert qwen.split()[-4] == "2" and llama.split()[-4:] == ["0", "-", "-", "-"]  # the coding requests
        async with http.get(daemon.url + "/admin/models?task=coding", headers=bearer(ADMIN_TOKEN)) as resp:
            usage = (await resp.json())["models"][0]["task_usage"]
        assert usage["requests"] == 2 and usage["failed"] == 0 and usage["mean_latency_seconds"] > 0
        async with http.get(daemon.url + "/admin/models?task=research", headers=bearer(ADMIN_TOKEN)) as resp:
            assert all(m["task_usage"] is None for m in (await resp.json())["models"])
        async with http.get(daemon.url + "/admin/models?task=coding&since=x", headers=bearer(ADMIN_TOKEN)) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["param"] == "since"
