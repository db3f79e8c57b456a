"""The semantic cache over real HTTP: a simulated embedding model embeds prompts (the simulator's
vectors are sums of word directions, so texts sharing words are close), answers are stored in
SQLite or a real redis-server, and every failure of the embedding is a bypass."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lmwatch.cache.redis_store import RedisStore
from lmwatch.cache.semantic import closest, prompt_of, unit_vector
from lmwatch.cache.sqlite_store import SqliteStore
from lmwatch.config import ConfigError, parse_config
from lmwatch.simulator import SimSettings
from tests.api.fleets import Fleet, chat, eventually, fleet, models
from tests.cache.conftest import RedisServer
from tests.cache.test_response import completed, post, settled

MODEL = "meta-llama-3.1-8b-instruct"
EMBED = "text-embedding-nomic-embed-text-v1.5"
STUDIO = SimSettings(models=models(MODEL, "qwen2.5-7b-instruct"))
EMBEDDER = SimSettings(models=models(EMBED, kind="embeddings"))
QUESTION = "What is the capital of France?"


def semantic_config(tmp_path: Path, cache: dict[str, Any] | None = None, **semantic: Any) -> dict[str, Any]:
    # long timeouts: a loaded CI machine is slow
    semantic = {"enabled": True, "model": EMBED, "threshold": 0.9, "timeout": 10, **semantic}
    cache = {"enabled": True, "timeout": 5, **(cache or {}), "semantic": semantic}
    return {"state_dir": str(tmp_path), "cache": cache}


@pytest.fixture
async def similar(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with fleet({"studio": STUDIO, "embedder": EMBEDDER}, extra=semantic_config(tmp_path)) as f:
        yield f


def embedded(f: Fleet) -> int:
    return f.sims["embedder"].state.stats.embedded_inputs_total


async def test_a_prompt_that_means_the_same_gets_the_stored_answer(similar: Fleet) -> None:
    status, first, raw = await post(similar, chat(QUESTION, model=MODEL, temperature=0))
    assert (status, first["X-LMWatch-Cache"]) == (200, "miss")
    await settled(similar)
    status, headers, again = await post(similar, chat("what is the capital of france", model=MODEL, temperature=0))
    assert (status, headers["X-LMWatch-Cache"], headers["X-LMWatch-Route"]) == (200, "hit", "cache")
    assert float(headers["X-LMWatch-Cache-Similarity"]) == pytest.approx(1.0, abs=1e-4)
    assert again == raw and completed(similar) == 1
    assert "X-LMWatch-Cache-Similarity" not in first
    # sharing words, but under the threshold (0.55 with the simulator's vectors): another question
    _, headers, _ = await post(similar, chat("What is the capital of Spain?", model=MODEL, temperature=0))
    assert headers["X-LMWatch-Cache"] == "miss" and "X-LMWatch-Cache-Similarity" not in headers
    assert completed(similar) == 2
    assert similar.metric("lmwatch_cache_requests_total", kind="semantic", result="hit") == 1
    assert similar.metric("lmwatch_cache_requests_total", kind="semantic", result="miss") == 2


async def test_only_the_same_model_parameters_and_history_match(similar: Fleet) -> None:
    await post(similar, chat(QUESTION, model=MODEL, temperature=0))
    await settled(similar)
    paraphrase = "what is the capital of france"
    earlier = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    for body in (
        chat(paraphrase, model="qwen2.5-7b-instruct", temperature=0),
        chat(paraphrase, model=MODEL, temperature=0, max_tokens=5),
        {"model": MODEL, "temperature": 0, "messages": [*earlier, {"role": "user", "content": paraphrase}]},
    ):
        _, headers, _ = await post(similar, body)
        assert headers["X-LMWatch-Cache"] == "miss", body
    _, headers, _ = await post(similar, chat(paraphrase, model=MODEL, temperature=0, user="someone"))
    assert headers["X-LMWatch-Cache"] == "hit"


async def test_it_is_used_only_where_the_exact_cache_is(similar: Fleet) -> None:
    await post(similar, chat(QUESTION, model=MODEL, temperature=0))
    await settled(similar)
    before = embedded(similar)
    paraphrase = "what is the capital of france"
    _, headers, _ = await post(similar, chat(paraphrase, model=MODEL))  # not deterministic: not cached
    assert headers["X-LMWatch-Cache"] == "bypass"
    _, headers, _ = await post(similar, chat(paraphrase, model=MODEL, temperature=0), **{"Cache-Control": "no-store"})
    assert headers["X-LMWatch-Cache"] == "bypass"
    assert embedded(similar) == before  # nothing was embedded for them
    _, headers, _ = await post(similar, chat(paraphrase, model=MODEL, temperature=0), **{"Cache-Control": "no-cache"})
    assert headers["X-LMWatch-Cache"] == "miss"  # not read, but stored (and its prompt embedded)
    assert embedded(similar) == before + 1
    on = {"X-LMWatch-Cache": "on"}  # a client opts a request that is not deterministic in
    _, headers, _ = await post(similar, chat("a poem about rivers", model=MODEL), **on)
    assert headers["X-LMWatch-Cache"] == "miss"
    await settled(similar)
    _, headers, _ = await post(similar, chat("A poem about rivers!", model=MODEL), **on)
    assert headers["X-LMWatch-Cache"] == "hit"


async def test_the_same_words_in_another_order_are_never_served(similar: Fleet) -> None:
    """Embeddings barely see word order (the simulator's not at all: similarity 1.0 here), and
    swapping two words is often another question."""
    await post(similar, chat("Convert 100 degrees Fahrenheit to Celsius.", model=MODEL, temperature=0))
    await settled(similar)
    _, headers, _ = await post(similar, chat("Convert 100 degrees Celsius to Fahrenheit.", model=MODEL, temperature=0))
    assert headers["X-LMWatch-Cache"] == "miss"
    _, headers, _ = await post(similar, chat("convert 100 degrees fahrenheit to celsius", model=MODEL, temperature=0))
    assert headers["X-LMWatch-Cache"] == "hit"  # the same words in the same order are


async def test_a_streamed_request_gets_a_stored_stream(similar: Fleet) -> None:
    client = similar.client()
    texts, caches = [], []
    for text in (QUESTION, "What is the capital of France"):
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": text}], temperature=0, stream=True
        )
        caches.append(raw.headers["x-lmwatch-cache"])
        texts.append("".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]))
        await settled(similar)
    assert caches == ["miss", "hit"] and texts[0] and texts[0] == texts[1]


async def test_a_slow_embedding_model_is_bypassed_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slow = SimSettings(models=models(EMBED, kind="embeddings"), ttft=60)
    extra = semantic_config(tmp_path, timeout=0.2)
    async with fleet({"studio": STUDIO, "embedder": slow}, extra=extra) as f:
        for text in ("one question", "another question"):
            status, headers, raw = await post(f, chat(text, model=MODEL, temperature=0))
            assert (status, headers["X-LMWatch-Cache"], json.loads(raw)["object"]) == (200, "miss", "chat.completion")
        await settled(f)
        _, headers, _ = await post(f, chat("one question", model=MODEL, temperature=0))
        assert headers["X-LMWatch-Cache"] == "hit"  # the exact cache works on
        assert f.metric("lmwatch_cache_semantic_failures_total", reason="timeout") == 2
        assert f.metric("lmwatch_cache_requests_total", kind="semantic", result="bypass") == 2
    warnings = [r.getMessage() for r in caplog.records if "semantic cache" in r.getMessage()]
    assert len(warnings) == 1 and "0.2 s" in warnings[0]


async def test_the_embedding_takes_a_slot_under_the_backends_concurrency_cap(tmp_path: Path) -> None:
    """A one-slot embedding backend busy with a client's batch: the prompt is not sent alongside
    (no queue here), the request goes on without the semantic cache."""
    slow = SimSettings(models=models(EMBED, kind="embeddings"), ttft=1)
    extra = semantic_config(tmp_path)
    async with fleet(
        {"studio": STUDIO, "embedder": slow}, routing={"max_queue": 0}, extra=extra, embedder={"max_concurrency": 1}
    ) as f:
        batch = asyncio.create_task(f.client().embeddings.create(model=EMBED, input=["a document"]))
        await eventually(lambda: f.sims["embedder"].state.stats.inflight == 1)  # the slot is taken
        status, headers, _ = await post(f, chat(QUESTION, model=MODEL, temperature=0))
        assert (status, headers["X-LMWatch-Cache"]) == (200, "miss")
        assert f.metric("lmwatch_cache_semantic_failures_total", reason="busy") == 1
        assert embedded(f) == 0  # the prompt was never sent to the busy backend
        await batch
        assert embedded(f) == 1


async def test_no_embedding_model_is_a_bypass(tmp_path: Path) -> None:
    async with fleet({"studio": STUDIO}, extra=semantic_config(tmp_path, model="no-such-embedder")) as f:
        status, headers, _ = await post(f, chat(QUESTION, model=MODEL, temperature=0))
        assert (status, headers["X-LMWatch-Cache"]) == (200, "miss")
        assert f.metric("lmwatch_cache_semantic_failures_total", reason="no_model") == 1


async def test_prompts_are_kept_in_redis_too(tmp_path: Path, redis_server: RedisServer) -> None:
    extra = semantic_config(tmp_path, cache={"backend": "redis", "url": redis_server.url}, threshold=0.8)
    async with fleet({"studio": STUDIO, "embedder": EMBEDDER}, extra=extra) as f:
        _, headers, raw = await post(f, chat(QUESTION, model=MODEL, temperature=0))
        assert headers["X-LMWatch-Cache"] == "miss"
        await settled(f)
        _, headers, again = await post(f, chat("What's the capital of France?", model=MODEL, temperature=0))
        assert (headers["X-LMWatch-Cache"], again) == ("hit", raw)
        assert 0.8 <= float(headers["X-LMWatch-Cache-Similarity"]) < 0.9  # 5 of 6 words shared


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_scope_keeps_its_newest_vectors(tmp_path: Path, redis_server: RedisServer, backend: str) -> None:
    sqlite = backend == "sqlite"
    store = SqliteStore(tmp_path / "c.sqlite", 1 << 20) if sqlite else RedisStore(redis_server.url, 1 << 20, 1)
    try:
        vectors = [unit_vector([1.0, float(i), 0.0]) for i in range(3)]
        for i, vector in enumerate(vectors):
            assert vector is not None
            await store.add_vector("s:one", f"k{i}", vector, ttl=60, limit=2)
        await store.add_vector("s:other", "x", unit_vector([0.0, 0.0, 1.0]) or b"", ttl=60, limit=2)
        kept = await store.vectors("s:one")
        assert sorted(k for k, _ in kept) == ["k1", "k2"]
        best = closest(unit_vector([1.0, 2.1, 0.0]) or b"", kept)
        assert best is not None and best[0] == "k2" and best[1] > 0.99
        assert await store.vectors("s:none") == []
    finally:
        await store.close()


def test_what_is_compared_by_meaning() -> None:
    system = {"role": "system", "content": "Answer briefly."}
    plain = prompt_of("chat", [MODEL], {"messages": [system, {"role": "user", "content": "hi"}]}, False, False)
    assert plain is not None and plain.text == "Answer briefly.\nhi"
    parts = [{"type": "text", "text": "hello there"}]
    other = prompt_of("chat", [MODEL], {"messages": [system, {"role": "user", "content": parts}]}, False, False)
    assert other is not None and other.scope == plain.scope  # only the embedded text differs
    image = [*parts, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert prompt_of("chat", [MODEL], {"messages": [{"role": "user", "content": image}]}, False, False) is None
    assert prompt_of("completions", [MODEL], {"prompt": "Once upon"}, False, False) is not None
    assert unit_vector([0.0, 0.0]) is None and unit_vector(["a"]) is None and unit_vector("AAAA") is None


def test_the_semantic_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"semantic\.enabled: true needs enabled: true"):
        parse_config("cache: {semantic: {enabled: true, model: m}}")
    with pytest.raises(ConfigError, match=r"cache\.semantic: enabled: true needs model"):
        parse_config("cache: {enabled: true, semantic: {enabled: true}}")
    with pytest.raises(ConfigError, match=r"cache\.semantic\.threshold"):
        parse_config("cache: {enabled: true, semantic: {enabled: true, threshold: 0}}")
    with pytest.raises(ConfigError, match=r"cache\.semantic\.timeout"):
        parse_config("cache: {enabled: true, semantic: {timeout: -1}}")
