"""The Redis store on a real redis-server: shared between replicas (two lmwatch processes), the size
bound, the shared client-key rate limit, and Redis going down and coming back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from lmwatch.cache.redis_store import PREFIX, RedisStore
from lmwatch.simulator import SimSettings, start_simulator
from tests.api.fleets import chat, eventually, fleet, models
from tests.cache.conftest import RedisServer
from tests.daemons import daemon_process, metric_value, write

MODEL = "meta-llama-3.1-8b-instruct"
KEY = "sk-replica-test-key-0123456789"


async def test_two_stores_share_entries_and_the_size_bound(redis_server: RedisServer) -> None:
    a = RedisStore(redis_server.url, 3000, timeout=1)
    b = RedisStore(redis_server.url, 3000, timeout=1)
    try:
        await a.put_many([("x", b"1" * 1000), ("y", b"2" * 1000)], ttl=60)
        assert await b.get_many(["y", "z"]) == [b"2" * 1000, None]
        assert await b.get_many(["x"]) == [b"1" * 1000]  # `x` is the one used last now
        stored = await b.put_many([("z", b"3" * 1000), ("w", b"4" * 1000)], ttl=60)
        assert (stored.evicted, stored.size_bytes) == (1, 3000)
        assert [v is not None for v in await a.get_many(["x", "y", "z", "w"])] == [True, False, True, True]
        await a.put_many([("short", b"s")], ttl=0.05)
        client = aioredis.Redis.from_url(redis_server.url)
        assert 0 < await client.pttl(PREFIX + "short") <= 50
        await client.aclose()
    finally:
        await a.close()
        await b.close()


async def test_replicas_share_the_cache_and_a_keys_rate_limit(tmp_path: Path, redis_server: RedisServer) -> None:
    sim = await start_simulator(SimSettings(models=models(MODEL)), port=0)
    key_file = write(tmp_path / "ci.key", KEY)
    urls = []
    try:
        configs = [
            write(
                tmp_path / f"replica-{i}.yaml",
                f"server: {{port: 0}}\nstate_dir: {tmp_path / f'state-{i}'}\n"
                f'backends: [{{name: studio, url: "{sim.url}", poll_interval: 60}}]\n'
                f"cache: {{enabled: true, backend: redis, url: '{redis_server.url}'}}\n"
                f"clients: {{keys: [{{name: ci, key_file: {key_file}, requests_per_minute: 3}}]}}\n",
            )
            for i in (1, 2)
        ]
        async with daemon_process(configs[0]) as one, daemon_process(configs[1]) as two:
            for replica in (one, two):
                urls.append(await replica.wait_listening())
                await replica.wait_ready()
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http:

                async def ask(url: str) -> tuple[int, str]:
                    body = chat("the same question", model=MODEL, temperature=0)
                    async with http.post(url + "/v1/chat/completions", json=body) as resp:
                        await resp.read()
                        return resp.status, resp.headers.get("X-LMWatch-Cache", "")

                assert await ask(urls[0]) == (200, "miss")
                client = aioredis.Redis.from_url(redis_server.url)
                entries = 0

                async def stored() -> None:
                    nonlocal entries
                    entries = await client.hlen(PREFIX + "@sizes")

                async def written() -> bool:
                    await stored()
                    return entries == 1

                deadline = asyncio.get_running_loop().time() + 5
                while not await written():  # the first replica writes after it answered
                    assert asyncio.get_running_loop().time() < deadline, "the answer never reached Redis"
                    await asyncio.sleep(0.01)
                await client.aclose()
                assert await ask(urls[1]) == (200, "hit")  # the other replica answers from the shared cache
                assert await ask(urls[1]) == (200, "hit")
                status, _ = await ask(urls[0])  # the key's fourth request in the minute, on either replica
                assert status == 429
                async with http.get(urls[1] + "/metrics") as resp:
                    text = await resp.text()
                assert (
                    metric_value(text, "lmwatch_cache_requests_total", [("kind", "response"), ("result", "hit")]) == 2
                )
        assert sim.state.stats.completed_total == 1
    finally:
        await sim.stop()


async def test_redis_down_mid_run_means_bypass_said_once(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    extra = {"state_dir": str(tmp_path), "cache": {"enabled": True, "backend": "redis", "url": redis_server.url}}
    async with fleet({"studio": SimSettings(models=models(MODEL))}, extra=extra) as f:
        async with aiohttp.ClientSession() as http:

            async def ask() -> tuple[int, str]:
                body = chat("hello", model=MODEL, temperature=0)
                async with http.post(f.url + "/v1/chat/completions", json=body) as resp:
                    await resp.read()
                    return resp.status, resp.headers["X-LMWatch-Cache"]

            assert await ask() == (200, "miss")
            await redis_server.stop()
            assert await ask() == (200, "bypass")
            assert await ask() == (200, "bypass")
        await eventually(lambda: f.metric("lmwatch_cache_available", store="redis") == 0)
        assert f.metric("lmwatch_cache_errors_total", store="redis") >= 1
        assert f.sims["studio"].state.stats.completed_total == 3
    failures = [r.getMessage() for r in caplog.records if "cache store failed" in r.getMessage()]
    assert len(failures) == 1 and "redis" in failures[0]


async def test_after_an_outage_the_cache_and_the_shared_rate_limit_come_back(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "lmwatch.cache")
    cache = {"enabled": True, "backend": "redis", "url": redis_server.url, "retry_interval": 0.05}
    extra = {"state_dir": str(tmp_path), "cache": cache}
    clients = {"keys": [{"name": "ci", "key_file": str(write(tmp_path / "ci.key", KEY)), "requests_per_minute": 50}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        fleet({"studio": SimSettings(models=models(MODEL))}, clients=clients, extra=extra) as f,
        aiohttp.ClientSession(headers=headers) as http,
    ):
        cache = f.daemon.services.cache
        assert cache is not None and cache.store is not None
        store = cache.store

        async def ask(text: str) -> tuple[int, str]:
            async with http.post(f.url + "/v1/chat/completions", json=chat(text, model=MODEL, temperature=0)) as r:
                await r.read()
                return r.status, r.headers.get("X-LMWatch-Cache", "")

        await redis_server.stop()
        assert await ask("during") == (200, "bypass")  # this replica's own bucket let it in
        assert f.metric("lmwatch_cache_available", store="redis") == 0
        await redis_server.start()  # the same port, empty
        replica = RedisStore(redis_server.url, 1 << 20, timeout=1)  # another replica, on the same Redis
        try:
            for _ in range(50):  # takes every token of the key's shared bucket
                await replica.take("ci", 50)
        finally:
            await replica.close()
        await eventually(lambda: store.available)  # cache.retry_interval passed: the store is tried again
        assert (await ask("after"))[0] == 429  # the shared bucket decides again (this replica's had 49 left)
        assert f.metric("lmwatch_cache_available", store="redis") == 1
        await refill_bucket(redis_server)
        assert await ask("back") == (200, "miss")
        await cache.settled()
        assert await ask("back") == (200, "hit")  # the cache works again, without a restart
    messages = [r.getMessage() for r in caplog.records if r.name == "lmwatch.cache"]
    assert len([m for m in messages if "cache store failed" in m]) == 1
    assert len([m for m in messages if "works again" in m]) == 1


async def refill_bucket(redis_server: RedisServer) -> None:
    """Give the key's shared bucket its tokens back (as a minute's wait would)."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.delete("lmwatch:ratelimit:ci")
    await client.aclose()
