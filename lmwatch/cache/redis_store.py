"""The shared store: Redis, so every lmwatch replica behind one load balancer sees the same cache,
and the same client-key rate-limit buckets.

Entries expire by Redis' own TTL. The size bound is lmwatch's: a hash of entry sizes, a running
total and a sorted set by last use, kept by two Lua scripts (one round trip per lookup or write,
atomic across replicas); past `max_bytes` the least recently used go. Times come from Redis' clock,
so replicas whose clocks disagree still share one bucket. The semantic cache's prompt vectors are a
hash per scope (model and parameters) with a sorted set of their ages beside it, trimmed by a third
script. Redis errors become `CacheError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lmwatch.cache import CacheError, Stored

PREFIX = "lmwatch:cache:"
_SIZES, _LRU, _TOTAL = PREFIX + "@sizes", PREFIX + "@lru", PREFIX + "@bytes"
_NOW_US = "local t = redis.call('TIME') local now = t[1] * 1000000 + t[2]\n"
"""Redis' clock in microseconds (exact in a Lua double), the same for every replica."""

_GET = (
    _NOW_US
    + """
local values = redis.call('MGET', unpack(KEYS))
for i, v in ipairs(values) do
  if v then redis.call('ZADD', ARGV[1], 'XX', now, KEYS[i]) end
end
return values
"""
)

_PUT = (
    _NOW_US
    + """
local sizes, lru, total, ttl, limit = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
for i, k in ipairs(KEYS) do
  local v = ARGV[5 + i]
  local old = tonumber(redis.call('HGET', sizes, k) or 0)
  redis.call('SET', k, v, 'PX', ttl)
  redis.call('HSET', sizes, k, #v)
  redis.call('ZADD', lru, now, k)
  redis.call('INCRBY', total, #v - old)
end
local evicted, size = 0, tonumber(redis.call('GET', total) or 0)
while size > limit do
  local victim = redis.call('ZPOPMIN', lru)
  if #victim == 0 then break end
  local gone = tonumber(redis.call('HGET', sizes, victim[1]) or 0)
  redis.call('HDEL', sizes, victim[1])
  redis.call('DEL', victim[1])
  size = redis.call('DECRBY', total, gone)
  evicted = evicted + 1
end
return {evicted, size}
"""
)

_TAKE = (
    _NOW_US
    + """
local capacity = tonumber(ARGV[1])
local rate = capacity / 60000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(bucket[1]) or capacity
local updated = tonumber(bucket[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', now)
redis.call('PEXPIRE', KEYS[1], 120000)
return tostring(wait / 1000000)
"""
)

_ADD_VECTOR = (
    _NOW_US
    + """
local vectors, ages = KEYS[1], KEYS[2]
local ttl, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('HSET', vectors, ARGV[1], ARGV[2])
redis.call('ZADD', ages, now, ARGV[1])
local old = redis.call('ZRANGEBYSCORE', ages, '-inf', now - ttl * 1000)
local over = redis.call('ZCARD', ages) - #old - limit
if over > 0 then
  for _, k in ipairs(redis.call('ZRANGE', ages, #old, #old + over - 1)) do table.insert(old, k) end
end
for _, k in ipairs(old) do
  redis.call('ZREM', ages, k)
  redis.call('HDEL', vectors, k)
end
redis.call('PEXPIRE', vectors, ttl)
redis.call('PEXPIRE', ages, ttl)
"""
)
"""Add one prompt vector to a scope, dropping those older than the TTL and the oldest past `limit`."""


class RedisStore:
    name = "redis"

    def __init__(self, url: str, max_bytes: int, timeout: float) -> None:
        self.max_bytes = max_bytes
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._get = self._redis.register_script(_GET)
        self._put = self._redis.register_script(_PUT)
        self._take = self._redis.register_script(_TAKE)
        self._add_vector = self._redis.register_script(_ADD_VECTOR)

    async def _call(self, result: Awaitable[Any]) -> Any:
        try:
            return await result
        except (RedisError, OSError) as exc:
            raise CacheError(f"redis cache: {exc}") from exc

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._call(self._get(keys=[PREFIX + k for k in keys], args=[_LRU]))
        return cast(list[bytes | None], list(values))

    async def put_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> Stored:
        keys = [PREFIX + k for k, _ in items]
        args: list[Any] = [_SIZES, _LRU, _TOTAL, max(1, int(ttl * 1000)), self.max_bytes, *(v for _, v in items)]
        evicted, size = await self._call(self._put(keys=keys, args=args))
        return Stored(int(evicted), int(size))

    async def open(self) -> None:
        """Nothing to read first: the connection is made by the first command."""

    def may_hold(self, keys: Sequence[str]) -> bool:
        return True  # another replica may have stored any key

    async def flush(self) -> None:
        """Nothing waits: a lookup notes its use in its own script."""

    async def vectors(self, scope: str) -> list[tuple[str, bytes]]:
        pairs = await self._call(self._redis.hgetall(f"{PREFIX}@vectors:{scope}"))
        return [(k.decode(), v) for k, v in cast(dict[bytes, bytes], pairs).items()]

    async def add_vector(self, scope: str, key: str, vector: bytes, ttl: float, limit: int) -> None:
        keys = [f"{PREFIX}@vectors:{scope}", f"{PREFIX}@vector-ages:{scope}"]
        await self._call(self._add_vector(keys=keys, args=[key, vector, max(1, int(ttl * 1000)), limit]))

    async def take(self, name: str, per_minute: float) -> float:
        """Take one request from the shared bucket of client key `name`: 0, or seconds to wait."""
        wait = await self._call(self._take(keys=[f"lmwatch:ratelimit:{name}"], args=[per_minute]))
        return float(wait)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
