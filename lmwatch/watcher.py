"""The backend watcher: one scheduled poll per backend, turned into registry updates.

Polls are timed by one event-loop timer for the whole fleet, set for the next backend due (each
backend keeps its own interval and random phase): an APScheduler job per backend cost about a
quarter of a poll in its bookkeeping. Each poll detects the API flavour (richest first, and again
whenever the cached one stops answering, since servers get upgraded), lists the models, and
records the outcome. Connection failures are retried a few times within one poll
(`retry_attempts`) so a blip does not flip a backend to down; a backend that stays down is probed
with exponential backoff, and once it answers again it is re-probed promptly because a server that
just started is often still loading models.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lmwatch import backends
from lmwatch.backends import BackendClient, Flavour, ProbeError
from lmwatch.config import BackendConfig
from lmwatch.failures import FailureReason
from lmwatch.flavours import AUTO
from lmwatch.http_client import Pool
from lmwatch.registry import Health, ModelInfo, ProbeResult, Registry

log = logging.getLogger("lmwatch.watcher")

BACKOFF_CAP_SECONDS = 30.0
RETRY_DELAY_SECONDS = 0.1
RECOVERY_REPROBE_SECONDS = 1.0
BATCH_SECONDS = 0.02
"""Polls due this close together start on one wake-up of the timer (a poll starts up to this much
early, never late, and at most a quarter of its interval early). Each wake-up of an idle daemon
costs more than the Python it runs (the process wakes with cold caches): at 300 backends polled
every second, 5 ms windows cost 0.23 ms of CPU per poll, 20 ms windows about 0.17 ms, and a
window's polls hold the loop well under a millisecond."""


@dataclass
class _Target:
    config: BackendConfig
    client: BackendClient
    not_before: float = 0.0
    """Monotonic time before which scheduled polls are skipped (backoff while down)."""


class Watcher:
    """Owns the probe HTTP session and the poll schedule of every backend."""

    def __init__(
        self,
        registry: Registry,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._registry = registry
        self._timetable = PollSchedule(self._tick)
        self._clock = clock
        self._jitter = jitter
        self._targets: dict[str, _Target] = {}
        self._pool: Pool | None = None
        self._running: set[str] = set()
        self._polls: dict[str, asyncio.Task[None]] = {}
        """Scheduled polls in flight: run as tasks of their own, so a hung backend never makes the
        schedule wait on it, and stop() can cancel them without a traceback."""
        self._overrunning: set[str] = set()

    async def start(self, backends: Sequence[BackendConfig]) -> None:
        """Open the connection pool, run the first poll round, then schedule the regular polls."""
        self._pool = Pool()
        self.sync(backends, schedule=False)
        await self.poll_all()
        for name in self._targets:
            self._schedule(name)

    async def stop(self) -> None:
        self._timetable.stop()
        polls = list(self._polls.values())
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        if self._pool is not None:
            self._pool.close()

    def sync(self, backends: Sequence[BackendConfig], schedule: bool = True) -> None:
        """Match the polled set to `backends` (start, reload, runtime add/remove)."""
        assert self._pool is not None, "start() first"
        self._registry.configure_backends(backends)
        wanted = {b.name: b for b in backends}
        for name in list(self._targets):
            if name not in wanted:
                self._unschedule(name)
                del self._targets[name]
        for name, config in wanted.items():
            current = self._targets.get(name)
            if current is not None and current.config == config:
                continue
            self._targets[name] = _Target(config=config, client=BackendClient(self._pool, config))
            if schedule:
                self._schedule(name)
                self.poll_now(name)

    def poll_now(self, name: str | None = None) -> None:
        """Probe one backend (or all) right away, regardless of backoff."""
        for target_name in [name] if name else list(self._targets):
            if target_name in self._targets:
                self._targets[target_name].not_before = 0.0
                self._timetable.move(target_name, 0.0)

    async def poll_all(self) -> None:
        await asyncio.gather(*(self.poll(name) for name in list(self._targets)))

    def _tick(self, name: str) -> None:
        """A backend is due: start its poll and return. While the last one still runs (a backend that
        hangs past its interval), say so once, and once more when it ends, not at every interval."""
        if name in self._running:
            if name not in self._overrunning:
                self._overrunning.add(name)
                log.warning("poll of %s still running after its interval: next polls wait for it", name)
            return
        task = asyncio.create_task(self.poll(name, True), name=f"poll {name}")
        self._polls[name] = task
        task.add_done_callback(lambda done: self._polls.pop(name, None) if self._polls.get(name) is done else None)

    async def poll(self, name: str, scheduled: bool = False) -> None:
        """One poll of one backend. Never raises: every outcome is recorded in the registry."""
        target = self._targets.get(name)
        if target is None or name in self._running:
            return
        if scheduled and self._clock() < target.not_before:
            return
        self._running.add(name)
        started = self._clock()
        try:
            result = await self._probe(target)
        except ProbeError as exc:
            self._registry.record_failure(name, exc.reason, exc.message, self._clock() - started)
            self._back_off(target)
        except Exception as exc:  # a bug in a flavour must not stop polling
            log.exception("poll of %s failed unexpectedly", name)
            self._registry.record_failure(name, FailureReason.BAD_RESPONSE, repr(exc), self._clock() - started)
            self._back_off(target)
        else:
            backend = self._registry.snapshot().backend(name)
            if backend is None:  # removed while this poll ran
                return
            was_down = backend.health in (Health.DOWN, Health.UNKNOWN)
            self._registry.record_success(name, result)
            target.not_before = 0.0
            if was_down and scheduled:
                self._reprobe_soon(name)
        finally:
            self._running.discard(name)
            if name in self._overrunning:
                self._overrunning.discard(name)
                log.info("poll of %s ended: polls run on schedule again", name)

    async def _probe(self, target: _Target) -> ProbeResult:
        started = self._clock()
        known = self._registry.snapshot().backends[target.config.name].flavour
        attempts = target.config.retry_attempts
        for attempt in range(attempts):
            try:
                flavour, models, warnings = await self._list(target, known)
                break
            except ProbeError as exc:
                if exc.reason is not FailureReason.CONNECT or attempt == attempts - 1:
                    raise
                await asyncio.sleep(RETRY_DELAY_SECONDS * 2**attempt)
        version = None
        if flavour.name != known:
            version = await flavour.version(target.client)
            if known is not None:
                log.info("backend %s now speaks %s (was %s)", target.config.name, flavour.name, known)
        return ProbeResult(
            flavour=flavour.name,
            models=tuple(models),
            duration=self._clock() - started,
            version=version,
            warnings=tuple(warnings),
        )

    async def _list(self, target: _Target, known: str | None) -> tuple[Flavour, list[ModelInfo], list[str]]:
        """Ask the flavour detected last (the registry's) first; on "not this API" the others in order."""
        candidates = _candidates(target.config, known)
        last_error: ProbeError | None = None
        for flavour in candidates:
            try:
                models, warnings = await flavour.list_models(target.client)
                return flavour, models, warnings
            except ProbeError as exc:
                if not exc.not_this_api:
                    raise
                last_error = exc
        assert last_error is not None
        if len(candidates) > 1:
            raise ProbeError(last_error.reason, f"no known API answered; last: {last_error.message}")
        raise last_error

    def _back_off(self, target: _Target) -> None:
        interval = target.config.poll_interval
        backend = self._registry.snapshot().backend(target.config.name)
        if backend is None:  # removed (a reload, the admin API) while this poll ran
            return
        failures = backend.consecutive_failures
        cap = max(interval, min(BACKOFF_CAP_SECONDS, 8 * interval))
        delay = min(cap, interval * 2 ** max(0, failures - 1))
        target.not_before = self._clock() + delay - interval * 0.5

    def _reprobe_soon(self, name: str) -> None:
        interval = self._targets[name].config.poll_interval
        if interval > RECOVERY_REPROBE_SECONDS:
            self._timetable.move(name, RECOVERY_REPROBE_SECONDS)

    def _schedule(self, name: str) -> None:
        """Every `interval` seconds from a random phase: backends are not probed in lockstep, and the
        gap between two polls of one backend never exceeds its interval."""
        interval = self._targets[name].config.poll_interval
        self._timetable.add(name, interval, interval * (0.5 + 0.5 * self._jitter()))

    def _unschedule(self, name: str) -> None:
        self._timetable.remove(name)

    def client_of(self, name: str) -> BackendClient | None:
        target = self._targets.get(name)
        return target.client if target else None


def _candidates(config: BackendConfig, known: str | None) -> list[Flavour]:
    if config.kind != AUTO:
        return [backends.flavour(config.kind)]
    order = backends.detection_order()
    return sorted(order, key=lambda f: f.name != known)  # stable: the known one first, the rest in order


class PollSchedule:
    """When each backend is due, and one timer on the event loop for the earliest.

    A backend due at `t` with interval `i` is due next at the first `t + k*i` after the time it
    ran: a poll that could not start on time is not repeated to catch up."""

    def __init__(self, due: Callable[[str], None]) -> None:
        self._run = due
        self._intervals: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        """(time, name), the earliest first; an entry whose time is no longer `_next[name]` is stale."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def add(self, name: str, interval: float, first_in: float) -> None:
        """Poll `name` every `interval` seconds, first in `first_in` seconds (replaces its schedule)."""
        self._intervals[name] = interval
        self.move(name, first_in)

    def remove(self, name: str) -> None:
        self._intervals.pop(name, None)
        self._next.pop(name, None)

    def move(self, name: str, seconds: float) -> None:
        """`name` is due in `seconds` (0: now); its interval runs on from then."""
        if name not in self._intervals:
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + seconds
        self._next[name] = at
        heapq.heappush(self._heap, (at, name))
        if self._timer is None or at < self._timer_at:
            self._arm(loop, at)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._intervals.clear()
        self._next.clear()
        self._heap.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap, upcoming = self._heap, self._next
        due, soon = [], []
        while heap and heap[0][0] <= now + BATCH_SECONDS:
            at, name = heapq.heappop(heap)
            if upcoming.get(name) != at:
                continue  # moved or removed since
            interval = self._intervals[name]
            horizon = now + min(BATCH_SECONDS, interval / 4)  # a short interval is not cut by the window
            if at > horizon:
                soon.append((at, name))  # due within the window, but early by too much of its interval
                continue
            later = at + interval
            if later <= horizon:  # late: the next time of its rhythm after this wake-up, not a second run now
                later += interval * ((horizon - later) // interval + 1)
                later = max(later, math.nextafter(horizon, math.inf))  # rounding must not leave it due again
            upcoming[name] = later
            heapq.heappush(heap, (later, name))
            due.append(name)
        for entry in soon:
            heapq.heappush(heap, entry)
        while heap and upcoming.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            self._arm(loop, heap[0][0])
        for name in due:
            self._run(name)
