"""Runs the samplers on their own schedules, off the event loop, and records what they found.

Each sampler is one APScheduler interval job (`max_instances=1, coalesce=True`): a slow sample
delays that sampler's next run, never piles up, and never blocks the loop, because `sample` runs in
a worker thread. A failing sampler is recorded (`lmwatch_collector_success 0`) and logged once per
failure streak; it never raises out of its job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from lmwatch.registry import Registry, Snapshot
from lmwatch.samplers.base import Sampler, SamplerUnavailable
from lmwatch.scheduling import quiet_when_cancelled

log = logging.getLogger("lmwatch.samplers")

JOB_PREFIX = "sampler:"


def _timed(sampler: Sampler, snapshot: Snapshot, clock: Callable[[], float]) -> tuple[Any, float]:
    """Run in the worker thread, so the duration leaves out the wait for a free thread."""
    start = clock()
    sample = sampler.sample(snapshot)
    return sample, clock() - start


class SamplerRunner:
    """Schedules every sampler, runs each off the loop, and writes its outcome to the registry."""

    def __init__(
        self,
        registry: Registry,
        samplers: list[Sampler],
        scheduler: Any,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        names = [s.name for s in samplers]
        if len(set(names)) != len(names):
            raise ValueError(f"two samplers share a name (each needs its own job and collector label): {names}")
        self.registry = registry
        self.samplers = list(samplers)
        self.scheduler = scheduler
        """An `apscheduler.schedulers.asyncio.AsyncIOScheduler`, started by the daemon."""
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        """One per sampler name: the first round (`run_once`) and a scheduled job never overlap."""
        self._failing: dict[str, str] = {}
        self._jobs: list[Any] = []

    def start(self, immediately: bool = True) -> None:
        """Add one interval job per sampler; the first run is now, or one interval from now (after
        the daemon awaited `run_once()` itself)."""
        for sampler in self.samplers:
            job = self.scheduler.add_job(
                quiet_when_cancelled(self.run),
                "interval",
                args=[sampler],
                seconds=sampler.interval,
                id=JOB_PREFIX + sampler.name,
                name=f"sample {sampler.name}",
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=datetime.now(UTC) + timedelta(seconds=0 if immediately else sampler.interval),
            )
            self._jobs.append(job)

    async def run_once(self) -> None:
        """Run every sampler once, in order (the process sampler before the GPU one reads it)."""
        for sampler in self.samplers:
            await self.run(sampler)

    async def stop(self) -> None:
        """Remove the jobs and release the samplers in a worker thread (NVML is shut down here, once;
        closing waits for a sample in progress, which must not stall the event loop)."""
        for job in self._jobs:
            try:
                job.remove()
            except Exception:  # already gone (the scheduler was shut down first)
                log.debug("sampler job %s was already removed", job.id)
        self._jobs.clear()
        for sampler in self.samplers:
            try:
                await asyncio.to_thread(sampler.close)
            except Exception:
                log.exception("closing sampler %s failed", sampler.name)

    async def run(self, sampler: Sampler) -> None:
        """Sample once in a worker thread and record the outcome; never raises."""
        async with self._locks.setdefault(sampler.name, asyncio.Lock()):
            snapshot = self.registry.snapshot()
            sample: Any = None
            error: str | None = None
            start = self._clock()
            try:
                sample, duration = await asyncio.to_thread(_timed, sampler, snapshot, self._clock)
            except SamplerUnavailable as exc:  # the sampler has logged it already
                duration, error = self._clock() - start, str(exc)
            except Exception as exc:
                duration, error = self._clock() - start, f"{type(exc).__name__}: {exc}"
                if self._failing.get(sampler.name) != error:  # once per streak (and per new error)
                    log.warning("sampler %s failed: %s", sampler.name, error, exc_info=exc)
                self._failing[sampler.name] = error
            success = error is None
            if success and self._failing.pop(sampler.name, None) is not None:
                log.info("sampler %s works again", sampler.name)
            self.registry.record_collector(sampler.name, success, duration, sample, error)
            try:
                changes = sampler.pressure(sample if success else None)
                if changes:
                    self.registry.record_host_pressure(sampler.name, **changes)
            except Exception:
                log.exception("sampler %s: recording host pressure failed", sampler.name)
