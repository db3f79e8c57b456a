"""The failure boundary: a failing store is bypassed for `retry_interval`, then tried again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from lmwatch.cache import CacheError, Stored
from lmwatch.cache.guard import GuardedStore
from lmwatch.metrics.cache import CacheMetrics


class FlakyStore:
    """A store whose failures the test switches on and off (the real ones are tested with files and Redis)."""

    name = "flaky"

    def __init__(self) -> None:
        self.broken = False
        self.calls = 0
        self.data: dict[str, bytes] = {}
        self.flushed = 0

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls += 1
        if self.broken:
            raise CacheError("broken")
        return [self.data.get(k) for k in keys]

    async def open(self) -> None:
        pass

    def may_hold(self, keys: Sequence[str]) -> bool:
        return True

    async def put_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> Stored:
        self.data.update(items)
        return Stored(0, sum(len(v) for v in self.data.values()))

    async def flush(self) -> None:
        self.flushed += 1

    async def close(self) -> None:
        pass


async def test_a_failing_store_is_left_alone_then_tried_again() -> None:
    now = [0.0]
    registry = CollectorRegistry()
    store = FlakyStore()
    guard = GuardedStore(store, CacheMetrics(registry), timeout=1, retry_interval=10, clock=lambda: now[0])
    await guard.opened()
    store.broken = True
    assert await guard.get_many(["a"]) is None
    assert await guard.get_many(["a"]) is None
    assert store.calls == 1  # the second request did not touch the store
    assert registry.get_sample_value("lmwatch_cache_available", {"store": "flaky"}) == 0
    store.broken = False
    now[0] = 10
    assert await guard.get_many(["a"]) == [None]
    assert registry.get_sample_value("lmwatch_cache_available", {"store": "flaky"}) == 1
    guard.put_many([("a", b"1")], ttl=5)
    await guard.settled()
    assert await guard.get_many(["a"]) == [b"1"]
    assert registry.get_sample_value("lmwatch_cache_size_bytes") == 1


async def test_a_hit_has_its_last_use_written_in_the_background() -> None:
    store = FlakyStore()
    guard = GuardedStore(store, CacheMetrics(CollectorRegistry()), timeout=1, retry_interval=10)
    await guard.opened()
    store.data["a"] = b"1"
    assert await guard.get_many(["b"]) == [None]
    await guard.settled()
    assert store.flushed == 0  # a miss noted nothing
    assert await guard.get_many(["a"]) == [b"1"]
    assert store.flushed == 0  # the answer did not wait for it
    await guard.settled()
    assert store.flushed == 1


async def test_requests_bypass_a_store_until_it_has_opened() -> None:
    store = FlakyStore()
    opening = asyncio.Event()

    async def slow_open() -> None:
        await opening.wait()

    store.open = slow_open  # type: ignore[method-assign]
    guard = GuardedStore(store, CacheMetrics(CollectorRegistry()), timeout=1, retry_interval=10)
    store.data["a"] = b"1"
    assert await guard.get_many(["a"]) is None  # bypassed: not open yet
    assert store.calls == 0
    opening.set()
    await guard.opened()
    assert await guard.get_many(["a"]) == [b"1"]
