"""Load balancing among interchangeable targets, and the per-backend concurrency gate.

Order: targets with a free slot first, then by expected cost = (outstanding + 1) x expected seconds
per request / weight, where expected seconds come from the moving averages of time to first token
and tokens/s of that backend and model, or before any live sample from its measured profile
(`lmwatch profile`); targets known neither way get the median of the others, so they are tried
rather than starved. Equal costs break at random so idle backends share.

The gate holds each backend to its concurrency cap. Past the cap a request waits in a FIFO queue,
with a bounded wait, instead of piling onto a server that would only queue it internally; a freed
slot is handed straight to the oldest waiter, so newcomers never jump the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import statistics
from collections import deque
from collections.abc import Iterator, Sequence

from lmwatch.outcomes import RequestOutcomes
from lmwatch.routing.select import Target

TYPICAL_COMPLETION_TOKENS = 200
"""The answer length used to turn tokens/s into seconds when comparing backends."""


def expected_seconds(outcomes: RequestOutcomes, target: Target) -> float | None:
    """Seconds one typical answer takes on `target`: from its live averages, else from its measured
    profile (the prior), else None."""
    speed = outcomes.speed(target.backend, target.model)
    ttft, tps = (speed.ttft, speed.tokens_per_second) if speed is not None else (None, None)
    if ttft is None and tps is None:
        profile = outcomes.profile(target.backend, target.model_key)
        if profile is None:
            return None
        ttft, tps = profile.ttft_short_seconds, profile.generation_tokens_per_second
    seconds = ttft or 0.0
    if tps:
        seconds += TYPICAL_COMPLETION_TOKENS / tps
    return seconds or None


def order(targets: Sequence[Target], outcomes: RequestOutcomes, rng: random.Random) -> Iterator[Target]:
    """Best first: a free slot beats a queue, then least outstanding work weighted by speed.

    Lazy: every target gets its cost (one pass, the same random draws in the same order), but only
    the ones taken are ranked, so a request served by its first choice among 300 sorts nothing;
    the order taken is the one sorting them all would give (ties keep the given order)."""
    if len(targets) == 1:
        yield targets[0]
        return
    estimates = [expected_seconds(outcomes, t) for t in targets]
    fallback = 1.0
    if None in estimates:
        known = [e for e in estimates if e is not None]
        fallback = statistics.median(known) if known else 1.0
    inflight, queued = outcomes.inflight, outcomes.queued
    heap = []
    for index, (t, estimate) in enumerate(zip(targets, estimates, strict=True)):
        busy = inflight.get(t.backend, 0)
        waiting = queued.get(t.backend, 0)
        full = t.cap is not None and (busy >= t.cap or waiting > 0)
        cost = (busy + waiting + 1) * (estimate or fallback) / t.weight
        heap.append((full, cost, rng.random(), index, t))
    heapq.heapify(heap)
    while heap:
        yield heapq.heappop(heap)[-1]


class Gate:
    """Admission per backend; the counts live in the registry's request outcomes."""

    def __init__(self, outcomes: RequestOutcomes) -> None:
        self._outcomes = outcomes
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._caps: dict[str, int] = {}

    def try_acquire(self, backend: str, cap: int) -> bool:
        self._caps[backend] = cap
        if self._outcomes.inflight.get(backend, 0) < cap and not self._waiters.get(backend):
            self._outcomes.started(backend)
            return True
        return False

    def waiting(self, backend: str) -> int:
        return len(self._waiters.get(backend) or ())

    async def acquire(self, backend: str, cap: int, timeout: float, max_queue: int) -> bool:
        """Take a slot, waiting up to `timeout` seconds in line; False when none came in time."""
        if self.try_acquire(backend, cap):
            return True
        queue = self._waiters.setdefault(backend, deque())
        if timeout <= 0 or len(queue) >= max_queue:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        self._outcomes.queue_changed(backend, +1)
        self._pump(backend)  # the cap may have grown since the last release
        granted = False
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(waiter)
            granted = True
            return True
        except TimeoutError:
            return False
        finally:
            self._outcomes.queue_changed(backend, -1)
            if not granted:
                if waiter.done():
                    self.release(backend)  # the slot came just as we gave up: pass it on
                else:
                    waiter.cancel()
                    with contextlib.suppress(ValueError):
                        queue.remove(waiter)

    def release(self, backend: str) -> None:
        """Hand the slot straight to the oldest waiter (so nobody jumps the line), else free it."""
        queue = self._waiters.get(backend)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over: in-flight stays the same
                return
        self._outcomes.finished(backend)

    def _pump(self, backend: str) -> None:
        """Admit waiters while the cap has room (it may have grown with a reload or a new report)."""
        queue = self._waiters.get(backend)
        cap = self._caps.get(backend, 0)
        while queue and self._outcomes.inflight.get(backend, 0) < cap:
            waiter = queue.popleft()
            if not waiter.done():
                self._outcomes.started(backend)
                waiter.set_result(None)
