"""The exact response cache over real HTTP: a simulated LM Studio behind a daemon with the SQLite store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lmwatch.cache.response import Entry
from lmwatch.cache.sqlite_store import SqliteStore
from lmwatch.simulator import SimSettings
from tests.api.fleets import Fleet, chat, fleet, models

MODEL = "meta-llama-3.1-8b-instruct"
SIM = SimSettings(models=models(MODEL, "qwen2.5-7b-instruct"))


def cache_config(tmp_path: Path, **cache: Any) -> dict[str, Any]:
    return {"state_dir": str(tmp_path), "cache": {"enabled": True, **cache}}


@pytest.fixture
async def cached(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with fleet({"studio": SIM}, extra=cache_config(tmp_path)) as f:
        yield f


async def post(f: Fleet, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f.url + "/v1/chat/completions", json=body, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def settled(f: Fleet) -> None:
    """Until the cache writes of answered requests are done (they run after the answer)."""
    assert f.daemon.services.cache is not None
    await f.daemon.services.cache.settled()


def completed(f: Fleet) -> int:
    return f.sims["studio"].state.stats.completed_total


async def test_a_deterministic_request_is_answered_from_the_cache_the_second_time(cached: Fleet) -> None:
    body = chat("name three rivers", model=MODEL, temperature=0)
    status, first, raw = await post(cached, body)
    assert (status, first["X-LMWatch-Cache"], first["X-LMWatch-Route"]) == (200, "miss", "explicit")
    await settled(cached)
    status, second, again = await post(cached, body)
    assert (status, second["X-LMWatch-Cache"], second["X-LMWatch-Route"]) == (200, "hit", "cache")
    assert (second["X-LMWatch-Backend"], second["X-LMWatch-Model"]) == ("studio", MODEL)
    assert again == raw
    assert completed(cached) == 1
    assert cached.metric("lmwatch_cache_requests_total", kind="response", result="hit") == 1
    assert cached.metric("lmwatch_cache_requests_total", kind="response", result="miss") == 1
    assert cached.metric("lmwatch_requests_total", route="cache", code="200") == 1
    assert cached.metric("lmwatch_cache_size_bytes") > len(raw)


async def test_what_changes_the_answer_changes_the_key(cached: Fleet) -> None:
    await post(cached, chat("hi", model=MODEL, temperature=0))
    await settled(cached)
    for body in (
        chat("hi", model="qwen2.5-7b-instruct", temperature=0),
        chat("hi there", model=MODEL, temperature=0),
        chat("hi", model=MODEL, temperature=0, max_tokens=5),
        chat("hi", model=MODEL, seed=7),
    ):
        _, headers, _ = await post(cached, body)
        assert headers["X-LMWatch-Cache"] == "miss", body
    _, headers, _ = await post(cached, chat("hi", model=MODEL, temperature=0))
    assert headers["X-LMWatch-Cache"] == "hit"


async def test_user_and_metadata_do_not_change_the_key_however_the_body_is_spelled(cached: Fleet) -> None:
    await post(cached, chat("hi", model=MODEL, temperature=0, user="someone"))
    await settled(cached)
    other = chat("hi", model=MODEL, temperature=0, user="someone-else", metadata={"run": "2"})
    spelled = json.dumps(dict(reversed(other.items())), indent=1)  # another key order, other spaces
    async with (
        aiohttp.ClientSession() as http,
        http.post(cached.url + "/v1/chat/completions", data=spelled, headers={"Content-Type": "application/json"}) as r,
    ):
        assert (r.status, r.headers["X-LMWatch-Cache"]) == (200, "hit")
    assert completed(cached) == 1


async def test_only_requests_meant_to_repeat_are_cached_unless_the_client_opts_in(cached: Fleet) -> None:
    body = chat("a poem", model=MODEL)
    for _ in range(2):
        _, headers, _ = await post(cached, body)
        assert headers["X-LMWatch-Cache"] == "bypass"
    _, headers, _ = await post(cached, body, **{"X-LMWatch-Cache": "on"})
    assert headers["X-LMWatch-Cache"] == "miss"
    await settled(cached)
    _, headers, _ = await post(cached, body, **{"X-LMWatch-Cache": "on"})
    assert headers["X-LMWatch-Cache"] == "hit"
    assert completed(cached) == 3


async def test_cache_control_no_store_and_no_cache_are_honoured(cached: Fleet) -> None:
    body = chat("hello", model=MODEL, temperature=0)
    _, headers, _ = await post(cached, body, **{"Cache-Control": "no-store"})
    assert headers["X-LMWatch-Cache"] == "bypass"
    _, headers, _ = await post(cached, body, **{"Cache-Control": "no-cache"})  # not read, but stored
    assert headers["X-LMWatch-Cache"] == "miss"
    await settled(cached)
    _, headers, _ = await post(cached, body, **{"Cache-Control": "no-cache"})
    assert headers["X-LMWatch-Cache"] == "miss"
    _, headers, _ = await post(cached, body, **{"X-LMWatch-Cache": "off"})
    assert headers["X-LMWatch-Cache"] == "bypass"
    _, headers, _ = await post(cached, body)
    assert headers["X-LMWatch-Cache"] == "hit"
    assert completed(cached) == 4


async def test_a_streamed_answer_is_replayed_as_a_valid_stream(cached: Fleet) -> None:
    client = cached.client()
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "count to five"}],
        "temperature": 0,
        "stream": True,
    }
    texts, caches = [], []
    for _ in range(2):
        raw = await client.chat.completions.with_raw_response.create(**request)
        caches.append(raw.headers["x-lmwatch-cache"])
        chunks = [c async for c in raw.parse()]
        texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "stop"
        await settled(cached)
    assert caches == ["miss", "hit"]
    assert texts[0] and texts[0] == texts[1]
    assert completed(cached) == 1
    # a JSON answer and a stream are stored apart
    _, headers, body = await post(cached, {**request, "stream": False})
    assert headers["X-LMWatch-Cache"] == "miss" and json.loads(body)["object"] == "chat.completion"


async def test_answers_survive_a_restart_and_the_first_request_after_is_a_hit(tmp_path: Path) -> None:
    """The next daemon on the same state directory reads the stored keys back into its index."""
    body = chat("name three rivers", model=MODEL, temperature=0)
    async with fleet({"studio": SIM}, extra=cache_config(tmp_path)) as f:
        _, headers, raw = await post(f, body)
        assert headers["X-LMWatch-Cache"] == "miss"
    async with fleet({"studio": SIM}, extra=cache_config(tmp_path)) as f:
        status, headers, again = await post(f, body)
        assert (status, headers["X-LMWatch-Cache"], again) == (200, "hit", raw)
        _, headers, _ = await post(f, chat("something new", model=MODEL, temperature=0))
        assert headers["X-LMWatch-Cache"] == "miss"


async def test_a_corrupt_cache_file_is_bypassed_and_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cache.sqlite").write_bytes(b"this is not a database" * 100)
    async with fleet({"studio": SIM}, extra=cache_config(tmp_path)) as f:
        body = chat("hello", model=MODEL, temperature=0)
        for _ in range(3):
            status, headers, raw = await post(f, body)
            assert (status, headers["X-LMWatch-Cache"]) == (200, "bypass")
            assert json.loads(raw)["choices"]
        assert completed(f) == 3
        assert f.metric("lmwatch_cache_available", store="sqlite") == 0
        assert f.metric("lmwatch_cache_errors_total", store="sqlite", operation="open") == 1
        assert f.metric("lmwatch_cache_requests_total", kind="response", result="bypass") == 3
    failures = [r for r in caplog.records if "cache store failed" in r.getMessage()]
    assert len(failures) == 1


async def test_a_locked_cache_file_is_bypassed(tmp_path: Path) -> None:
    async with fleet({"studio": SIM}, extra=cache_config(tmp_path)) as f:
        body = chat("hello", model=MODEL, temperature=0)
        await post(f, body)  # creates the file
        await settled(f)
        locker = sqlite3.connect(tmp_path / "cache.sqlite", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            status, headers, _ = await post(f, chat("another", model=MODEL, temperature=0))
            assert (status, headers["X-LMWatch-Cache"]) == (200, "miss")  # read fine; the write fails after
            await settled(f)
            status, headers, _ = await post(f, chat("another", model=MODEL, temperature=0))
            assert (status, headers["X-LMWatch-Cache"]) == (200, "bypass")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert f.metric("lmwatch_cache_errors_total", store="sqlite", operation="put") == 1
        assert f.metric("lmwatch_cache_available", store="sqlite") == 0
        assert completed(f) == 3


async def test_a_full_disk_is_bypassed_and_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with fleet({"studio": SIM}, extra=cache_config(tmp_path)) as f:
        await post(f, chat("hello", model=MODEL, temperature=0))  # creates the file
        await settled(f)
        assert f.daemon.services.cache is not None and f.daemon.services.cache.store is not None
        store = f.daemon.services.cache.store.store
        assert isinstance(store, SqliteStore)
        # the disk is full: SQLite may not grow the file by one page more (a real SQLITE_FULL, set on
        # the store's own connection in its worker thread)
        await store._run(lambda db: db.execute("PRAGMA max_page_count = 1"))
        for text in ("a long answer", "another", "a third"):
            status, headers, raw = await post(f, chat(text, model=MODEL, temperature=0, max_tokens=400))
            assert (status, json.loads(raw)["object"]) == (200, "chat.completion")
            await settled(f)
        status, headers, _ = await post(f, chat("hello", model=MODEL, temperature=0))
        assert (status, headers["X-LMWatch-Cache"]) == (200, "bypass")  # bypassed for retry_interval
        assert f.metric("lmwatch_cache_errors_total", store="sqlite", operation="put") == 1
        assert f.metric("lmwatch_cache_available", store="sqlite") == 0
        assert completed(f) == 5
    failures = [r.getMessage() for r in caplog.records if "cache store failed" in r.getMessage()]
    assert len(failures) == 1 and "full" in failures[0]


async def test_a_client_key_with_cache_false_always_bypasses(tmp_path: Path) -> None:
    (tmp_path / "ci.key").write_text("sk-cached-key-0123456789abcdef")
    (tmp_path / "private.key").write_text("sk-private-key-0123456789abcdef")
    keys = {
        "keys": [
            {"name": "ci", "key_file": str(tmp_path / "ci.key")},
            {"name": "private", "key_file": str(tmp_path / "private.key"), "cache": False},
        ]
    }
    async with fleet({"studio": SIM}, clients=keys, extra=cache_config(tmp_path)) as f:
        body = chat("the same question", model=MODEL, temperature=0)
        seen = []
        for key in (
            "sk-private-key-0123456789abcdef",
            "sk-private-key-0123456789abcdef",
            "sk-cached-key-0123456789abcdef",
        ):
            _, headers, _ = await post(f, body, Authorization=f"Bearer {key}")
            seen.append(headers["X-LMWatch-Cache"])
            await settled(f)
        _, headers, _ = await post(f, body, Authorization="Bearer sk-cached-key-0123456789abcdef")
        seen.append(headers["X-LMWatch-Cache"])
        assert seen == ["bypass", "bypass", "miss", "hit"]  # the private key's answers were never stored
        _, headers, _ = await post(f, body, Authorization="Bearer sk-private-key-0123456789abcdef")
        assert headers["X-LMWatch-Cache"] == "bypass"  # nor is it served what another key stored


def test_an_entry_of_another_version_or_damaged_is_a_miss_not_an_error() -> None:
    entry = Entry("studio", MODEL, "chat", True, 3, 5, b'data: {"x": 1}\n\ndata: [DONE]\n\n')
    assert Entry.decode(entry.encode()) == entry
    older = b'{"backend":"studio","model":"m","task":"chat","sse":false,"prompt_tokens":3,"completion_tokens":5}\n{}'
    for raw in (older, b"[1, 2]\n{}", b"not json\n{}", b"no head line"):
        assert Entry.decode(raw) is None, raw
