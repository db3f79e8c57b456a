"""Parallel prediction slots of one loaded instance, with a strict FIFO queue behind them.

LM Studio serves at most `parallel` predictions per instance and queues the rest. A hand-rolled gate
(rather than `asyncio.Semaphore`) gives exact FIFO order, an exact queue length for the stats, a
limit that can change live, and a way to fail every waiter when the instance is unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class InstanceUnloaded(Exception):
    """The instance went away (unload, JIT eviction) while a request waited for or held a slot."""


class SlotGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot without waiting, if one is free and nobody is queued ahead."""
        if self._closed:
            raise InstanceUnloaded()
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait in line for a slot. Cancelling the wait leaves the line (or gives back a granted slot)."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.active -= 1
        self._wake()

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        self._wake()

    def close(self) -> None:
        """Fail every waiter with `InstanceUnloaded`; later acquires fail too."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(InstanceUnloaded())

    def _wake(self) -> None:
        while self._waiters and self.active < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(None)
