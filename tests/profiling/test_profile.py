"""`lmwatch profile` in a daemon against simulated LM Studio servers: the configured speeds are
measured back, results persist in the state directory, are shown in /status, /admin/models and
metrics, and are kept, skipped or measured again as the rules say."""

from __future__ import annotations

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
from tests.daemons import ADMIN_TOKEN, backend_yaml, bearer, config_file, daemon_for

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


def near(measured: float | None, expected: float, tolerance: float = 0.10) -> bool:
    return measured is not None and abs(measured - expected) <= tolerance * expected


async def test_the_simulators_configured_speeds_are_measured_within_ten_percent(daemon: Daemon) -> None:
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
    assert all(near(p.per_request_tokens_per_second, GENERATION) for p in llm.throughput)
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
