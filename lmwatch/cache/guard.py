"""The failure boundary around a store: a store that fails or is slow is bypassed, never fatal.

The store is opened in the background (bounded by `OPEN_LIMIT`); until it is, requests bypass it.
Every operation is bounded by `cache.timeout` (per 100 keys: an embeddings batch is many lookups).
After a failure the store is left alone for `cache.retry_interval` (requests bypass it meanwhile),
the failure is logged once, and the `lmwatch_cache_available` gauge drops to 0 until an operation
succeeds again. Writes run as background tasks, off the request path; answers are written in
batches (one transaction per `WRITE_DELAY`), so a miss costs its lookup and little more, and what
hits noted (their last-use times) goes with a batch, so a hit costs its lookup alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from lmwatch.cache import CacheError, Store, Value
from lmwatch.metrics.cache import CacheMetrics

log = logging.getLogger("lmwatch.cache")
T = TypeVar("T")
WRITE_DELAY = 0.05
"""Seconds an answer to store waits for others, so a busy proxy commits a few times a second."""
MAX_PENDING = 500
"""Answers waiting past which the batch is written at once."""
OPEN_LIMIT = 30.0
"""Seconds a store may take to open (SQLite reads the hashes of all its keys then: about 0.3 s for
200,000 entries); requests bypass it meanwhile, and the daemon waits for it before it is ready."""


class GuardedStore:
    def __init__(
        self,
        store: Store,
        metrics: CacheMetrics,
        timeout: float,
        retry_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._retry_at = 0.0
        self._failing = False
        self._writes: set[asyncio.Task[None]] = set()
        self._pending: dict[float, dict[str, Value]] = {}
        """Answers waiting for the next batched write, by TTL."""
        self._flusher: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()
        metrics.store_opened(store.name)
        self._opening = asyncio.get_running_loop().create_task(
            self._write("open", store.open, OPEN_LIMIT), name="lmwatch cache open"
        )

    @property
    def available(self) -> bool:
        """Open, and not in a bypass period after a failure."""
        return self._opening.done() and (not self._failing or self._clock() >= self._retry_at)

    async def opened(self) -> None:
        """Until the store has opened, or failed to (then it is tried again as after any failure)."""
        await asyncio.shield(self._opening)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The values (None where missing), or None as a whole when the store must be bypassed."""
        if not self.store.may_hold(keys) and self.available:
            return [None] * len(keys)  # a certain miss costs no lookup, nor its time limit
        values = await self.call("get", lambda: self.store.get_many(keys), self._limit(len(keys)))
        if values is not None and any(v is not None for v in values):
            self._schedule()  # the hits' last-use times are written with the next batch
        return values

    async def call(self, operation: str, work: Callable[[], Awaitable[T]], limit: float | None = None) -> T | None:
        """`work()` on the store within the time limit; None when the store is failing or fails now."""
        if not self.available:
            return None
        try:
            async with asyncio.timeout(limit or self._timeout):
                result = await work()
        except Exception as exc:  # the boundary: whatever the store does, the request goes on
            self._failed(operation, exc)
            return None
        self._recovered()
        return result

    def put_many(self, items: Sequence[tuple[str, Value]], ttl: float) -> None:
        """Store in the background, batched with the other answers of the next `WRITE_DELAY` seconds
        (one transaction, not one per miss; a key given twice is stored once; values encoded then);
        a failure is counted and logged, the request already answered."""
        if not items or not self.available:
            return
        pending = self._pending.setdefault(ttl, {})
        pending.update(items)
        if sum(len(p) for p in self._pending.values()) >= MAX_PENDING:
            self._flush_now.set()
        self._schedule()

    def _schedule(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="lmwatch cache write")
            self._writes.add(self._flusher)
            self._flusher.add_done_callback(self._writes.discard)

    async def _flush(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WRITE_DELAY):
                await self._flush_now.wait()
        batches, self._pending, self._flusher = self._pending, {}, None
        self._flush_now.clear()
        for ttl, pending in batches.items():
            items = list(pending.items())
            await self._write("put", functools.partial(self._put, items, ttl), self._limit(len(items)) * 4)
        if not batches:  # a batch of answers writes the noted last-use times in its transaction
            await self._write("flush", self.store.flush, self._timeout * 4)

    def write(self, operation: str, work: Callable[[], Awaitable[object]], limit: float | None = None) -> None:
        """`work()` on the store as a background task, off the request path."""
        if not self.available:
            return
        # a write may evict: it gets longer than a lookup, and no request waits on it
        task = asyncio.get_running_loop().create_task(
            self._write(operation, work, (limit or self._timeout) * 4), name=f"lmwatch cache {operation}"
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, operation: str, work: Callable[[], Awaitable[object]], limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                await work()
        except Exception as exc:
            self._failed(operation, exc)
            return
        self._recovered()

    async def _put(self, values: Sequence[tuple[str, Value]], ttl: float) -> None:
        items = [(k, v if isinstance(v, bytes) else v.encode()) for k, v in values]
        stored = await self.store.put_many(items, ttl)
        self._metrics.written.inc(sum(len(v) for _, v in items))
        if stored.evicted:
            self._metrics.evictions.inc(stored.evicted)
        if stored.size_bytes is not None:
            self._metrics.size.set(stored.size_bytes)

    def _limit(self, keys: int) -> float:
        return self._timeout * (1 + keys // 100)

    def _failed(self, operation: str, exc: Exception) -> None:
        self._metrics.errors.labels(self.store.name, operation).inc()
        self._retry_at = self._clock() + self._retry_interval
        if not self._failing:
            self._failing = True
            self._metrics.available.labels(self.store.name).set(0)
            what = str(exc) if isinstance(exc, CacheError) else "timed out" if isinstance(exc, TimeoutError) else None
            if what is None:
                log.exception("the %s cache store failed unexpectedly; serving without the cache", self.store.name)
            else:
                log.warning(
                    "the %s cache store failed (%s): serving without the cache, trying it again every %g s",
                    self.store.name,
                    what,
                    self._retry_interval,
                )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            self._metrics.available.labels(self.store.name).set(1)
            log.info("the %s cache store works again", self.store.name)

    async def settled(self) -> None:
        """Until the writes started so far are done, the batch waiting included (at shutdown, and
        for tests to await)."""
        self._flush_now.set()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def close(self) -> None:
        """Let pending writes finish (bounded by their timeout), then close the store."""
        await self.opened()
        await self.settled()
        try:
            await self.store.close()
        except Exception as exc:
            log.warning("closing the %s cache store failed: %s", self.store.name, exc)
