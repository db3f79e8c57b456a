"""The cache as the daemon holds it: the store for the config in force, swapped when a reload changes it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lmwatch.cache import Store, Value
from lmwatch.cache.guard import GuardedStore
from lmwatch.cache.semantic import SemanticCache
from lmwatch.cache.sqlite_store import SqliteStore
from lmwatch.config import CacheConfig
from lmwatch.metrics.cache import CacheMetrics

if TYPE_CHECKING:
    from lmwatch.cache.redis_store import RedisStore

log = logging.getLogger("lmwatch.cache")


def _redis(config: CacheConfig, path: Path) -> Store:
    """Imported here, when a config asks for it (at start-up or a reload): the Redis client is
    about 6 MB of modules the daemon otherwise never needs."""
    from lmwatch.cache.redis_store import RedisStore

    return RedisStore(str(config.url), config.max_bytes, config.timeout)


STORES: dict[str, Callable[[CacheConfig, Path], Store]] = {
    "sqlite": lambda config, path: SqliteStore(path, config.max_bytes),
    "redis": _redis,
}
"""`cache.backend` -> how to make its store (a new store is one module and one line here)."""


class Cache:
    def __init__(self, metrics: CacheMetrics) -> None:
        self.metrics = metrics
        self.semantic = SemanticCache(metrics)
        self.config = CacheConfig()
        self.store: GuardedStore | None = None
        self._made_for: tuple[object, ...] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def configure(self, config: CacheConfig, path: Path) -> None:
        """Use `config` from now on; a new store only when the store settings changed. Never fails:
        the store opens on first use, and a store that cannot open is bypassed."""
        self.config = config
        made_for: tuple[object, ...] = (config.enabled, config.backend, config.url, path, config.max_bytes)
        made_for += (config.timeout, config.retry_interval)
        if made_for == self._made_for:
            return
        old, self._made_for = self.store, made_for
        self.store = None
        if config.enabled:
            store = STORES[config.backend](config, path)
            self.store = GuardedStore(store, self.metrics, config.timeout, config.retry_interval)
            log.info("response cache: %s store%s", config.backend, f" at {path}" if config.backend == "sqlite" else "")
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close(), name="lmwatch cache close")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @property
    def redis(self) -> RedisStore | None:
        """The Redis store when the cache uses one (the client-key buckets live there too)."""
        if self.store is None or self.config.backend != "redis":
            return None
        return cast("RedisStore", self.store.store)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None] | None:
        return await self.store.get_many(keys) if self.store is not None else None

    async def take(self, name: str, per_minute: float) -> float | None:
        """A request from client key `name`'s bucket in Redis (shared by replicas); None without Redis
        or while it fails (the caller's own bucket decides then)."""
        redis = self.redis
        if redis is None or self.store is None:
            return None
        return await self.store.call("ratelimit", lambda: redis.take(name, per_minute))

    def put_many(self, items: Sequence[tuple[str, Value]]) -> None:
        if self.store is not None:
            self.store.put_many(items, self.config.ttl)

    async def opened(self) -> None:
        """Until the store in use has opened (or failed to)."""
        if self.store is not None:
            await self.store.opened()

    async def settled(self) -> None:
        """Until the cache writes started so far are done."""
        if self.store is not None:
            await self.store.settled()

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
