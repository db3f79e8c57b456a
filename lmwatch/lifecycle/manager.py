"""The lifecycle manager: wires keep_loaded, placement, idle unload and swap to the registry and scheduler.

It reacts to the registry's events (a model unloaded, a backend back up) by reconciling that backend
at once, and checks every backend every `lifecycle.interval` seconds. One reconcile per backend runs
at a time; a request for another while one runs makes it run once more afterwards.

Several lmwatch watching one fleet: each backend is managed by the lmwatch whose
`lifecycle.instance` equals the backend's `owner` (every lmwatch, when `owner` is unset). The others
route to it but never load or unload there, so they do not fight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from lmwatch.audit import AuditLog
from lmwatch.config import BackendConfig
from lmwatch.lifecycle.idle import IdleUnloader
from lmwatch.lifecycle.keep import KeepLoadedReconciler
from lmwatch.lifecycle.loads import Loader
from lmwatch.lifecycle.memory import Fit, fit
from lmwatch.lifecycle.placement import Placer
from lmwatch.lifecycle.swap import Swapper
from lmwatch.registry import Event, Health
from lmwatch.scheduling import quiet_when_cancelled
from lmwatch.services import Services
from lmwatch.watcher import Watcher

log = logging.getLogger("lmwatch.lifecycle")

JOB_ID = "lifecycle"
_TRIGGERS = ("model_unloaded", "backend_added", "backend_health")


class Lifecycle:
    def __init__(self, services: Services, watcher: Watcher, scheduler: AsyncIOScheduler, audit: AuditLog) -> None:
        self.services = services
        self.scheduler = scheduler
        self.loader = Loader(services, watcher, audit)
        self.keep = KeepLoadedReconciler(self.loader, self.manages)
        self.placer = Placer(self.loader, lambda b: self.keep.kept(b.config), self.manages)
        self.idle = IdleUnloader(self.loader, self.keep, self.manages)
        self.swapper = Swapper(self.loader, self.keep)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._unsubscribe: Any = None

    @property
    def instance(self) -> str | None:
        return self.services.config.config.lifecycle.instance

    def manages(self, backend: BackendConfig) -> bool:
        return backend.owner is None or backend.owner == self.instance

    # --- running ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """After the first poll round: reconcile every backend now, then on events and every interval."""
        self._unsubscribe = self.services.registry.subscribe(self._on_event)
        self.scheduler.add_job(
            quiet_when_cancelled(self.tick),
            "interval",
            seconds=self.services.config.config.lifecycle.interval,
            id=JOB_ID,
            name="lifecycle",
            max_instances=1,
            coalesce=True,
        )
        for name in self.services.registry.snapshot().backends:
            self.trigger(name)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(JOB_ID)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def tick(self) -> None:
        for name in self.services.registry.snapshot().backends:
            self.trigger(name)
        try:
            await self.idle.sweep()
        except Exception:  # a bug here must not stop the next tick
            log.exception("idle unload failed")

    def trigger(self, backend: str) -> None:
        """Reconcile `backend` soon (once more after the running reconcile, if one runs)."""
        if backend in self._tasks:
            self._again.add(backend)
            return
        self._tasks[backend] = asyncio.get_running_loop().create_task(self._run(backend), name=f"lifecycle:{backend}")

    async def settle(self) -> None:
        """Wait until no reconcile runs (tests and the CLI's one-shot commands)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _run(self, backend: str) -> None:
        try:
            while True:
                self._again.discard(backend)
                try:
                    await self.keep.reconcile(backend)
                except Exception:  # a bug here must not stop the lifecycle of other backends
                    log.exception("lifecycle of %s failed", backend)
                if backend not in self._again:
                    return
        finally:
            self._tasks.pop(backend, None)

    def _on_event(self, event: Event) -> None:
        if event.kind not in _TRIGGERS:
            return
        if event.kind == "backend_health" and event.detail.get("to") not in (Health.UP.value, Health.DEGRADED.value):
            return
        self.trigger(event.backend)

    # --- reading ---------------------------------------------------------------------------------

    def fit(self, model: str, context_length: int | None = None) -> list[Fit]:
        """Where `model` fits now, per backend that has it downloaded (`lmwatch fit`)."""
        snap = self.services.registry.snapshot()
        return [fit(b, snap, model, context_length) for b in snap.backends.values() if b.model(model) is not None]

    def status_section(self) -> dict[str, Any]:
        """The `/status` section: per backend who manages it, keep_loaded states, the load in progress."""
        snap = self.services.registry.snapshot()
        loader = self.loader
        backends = {}
        for name, info in snap.backends.items():
            backends[name] = {
                "managed": self.manages(info.config),
                "owner": info.config.owner,
                "keep_loaded": self.keep.document(name),
                "loading": loader.loading.get(name),
                "waiting": loader.waiting.get(name, 0),
                "load_failures": {m: why for (b, m), why in loader.last_failure.items() if b == name},
            }
        return {"instance": self.instance, "backends": backends, "recent": list(loader.history)}
