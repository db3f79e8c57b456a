"""`lmwatch profile` inside the daemon: pick the models, measure them one at a time, keep the results.

A model is measured when it has no profile yet, or its profile was taken with another quantization
or loaded context; `force` measures again anyway. A backend serving traffic (requests in flight or
queued) is left alone unless `force` says otherwise: measuring competes with its users for the same
slots and would measure them too. One run at a time; results are saved after every model, so an
interrupted run keeps what it measured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from lmwatch.profiling.measure import MeasureError, Options, Profiler
from lmwatch.profiling.store import ProfileStore, StoreError, encode
from lmwatch.redaction import Redactor
from lmwatch.registry import BackendInfo, ModelInfo, ModelProfile, Registry
from lmwatch.routing.ids import same_model

log = logging.getLogger("lmwatch.profiling")


class ProfileRunning(Exception):
    """Another profile run is in progress."""


class NothingToProfile(Exception):
    """The backend or model asked for is not there (the message says which)."""


@dataclass(frozen=True)
class Result:
    backend: str
    model: str
    outcome: str
    """`measured`, `kept` (a matching profile exists), `skipped` (busy backend) or `failed`."""
    reason: str | None = None
    profile: ModelProfile | None = None

    def document(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "outcome": self.outcome,
            "reason": self.reason,
            "profile": encode(self.profile) if self.profile is not None else None,
        }


class ProfileRunner:
    def __init__(
        self,
        registry: Registry,
        state_dir: Callable[[], Path],
        redactor: Redactor,
        poll_now: Callable[[str | None], None] = lambda name: None,
        profiler: Callable[[aiohttp.ClientSession], Profiler] = Profiler,
    ) -> None:
        self._registry = registry
        self._redactor = redactor
        """The daemon's secrets: a failed measurement's reason may quote what a backend echoed."""
        self._state_dir = state_dir
        self._poll_now = poll_now
        self._profiler = profiler
        self._lock = asyncio.Lock()
        self.save_error: str | None = None
        """Why the last save failed (the profiles stay in memory), for /status."""

    def _store(self) -> ProfileStore:
        return ProfileStore(self._state_dir())

    @property
    def path(self) -> Path:
        return self._store().path

    async def load(self) -> None:
        """Read the stored profiles into the registry (a broken file is logged, never fatal)."""
        try:
            profiles = await asyncio.to_thread(self._store().load)
        except StoreError as exc:
            log.warning("profiles not loaded: %s", exc)
            return
        if profiles:
            self._registry.record_profiles(profiles)
            log.info("loaded %d model profiles from %s", len(profiles), self._store().path)

    async def run(
        self, backend: str | None = None, model: str | None = None, force: bool = False, options: Options | None = None
    ) -> list[Result]:
        options = options or Options()
        if self._lock.locked():
            raise ProfileRunning("a profile run is already in progress; try again when it is done")
        async with self._lock:
            chosen = self._choose(backend, model)
            results = []
            async with aiohttp.ClientSession() as session:
                profiler = self._profiler(session)
                for b, m in chosen:
                    results.append(await self._one(profiler, b, m, force, options))
            for name in {r.backend for r in results if r.outcome in ("measured", "failed")}:
                self._poll_now(name)  # a one-slot server kept its probes waiting: see how it is now
            return results

    def _choose(self, backend: str | None, model: str | None) -> list[tuple[BackendInfo, ModelInfo]]:
        snap = self._registry.snapshot()
        if backend is not None and snap.backend(backend) is None:
            raise NothingToProfile(f"no backend is named {backend!r}")
        chosen = [
            (b, m)
            for b in snap.backends.values()
            if backend in (None, b.name) and b.reachable
            for m in b.models
            if m.loaded and (model is None or model == m.id or same_model(model, m.id, m.quantization))
        ]
        if not chosen:
            where = f"backend {backend!r}" if backend else "any reachable backend"
            raise NothingToProfile(f"no loaded model {'named ' + repr(model) + ' ' if model else ''}on {where}")
        return chosen

    async def _one(
        self, profiler: Profiler, backend: BackendInfo, model: ModelInfo, force: bool, options: Options
    ) -> Result:
        existing = self._registry.snapshot().profiles.get((backend.name, model.id))
        instance = model.instance_ids[0] if model.instance_ids else model.id
        if not force and existing is not None and existing.error is None and _same_load(existing, model, instance):
            return Result(backend.name, model.id, "kept", "already measured with this load (use --force)", existing)
        outcomes = self._registry.outcomes
        busy = outcomes.inflight.get(backend.name, 0) + outcomes.queued.get(backend.name, 0)
        if busy and not force:
            return Result(backend.name, model.id, "skipped", f"serving traffic ({busy} requests); use --force")
        try:
            profile = await profiler.measure(backend, model, options)
        except MeasureError as exc:
            reason = self._redactor.redact(str(exc))
            log.warning("profiling %s on %s failed: %s", model.id, backend.name, reason)
            return Result(backend.name, model.id, "failed", reason)
        self._registry.record_profiles([profile])
        try:
            await asyncio.to_thread(self._store().save, [profile])
            self.save_error = None
        except StoreError as exc:
            self.save_error = str(exc)
            log.warning("profile of %s on %s kept in memory only: %s", model.id, backend.name, exc)
        log.info("profiled %s on %s", model.id, backend.name, extra={"profile": encode(profile)})
        return Result(backend.name, model.id, "measured", None, profile)


def _same_load(profile: ModelProfile, model: ModelInfo, instance: str) -> bool:
    return profile.quantization == model.quantization and profile.context_length == model.context_of(instance)


def profiles_status(registry: Registry, runner: ProfileRunner) -> dict[str, Any]:
    """The `/status` section: where profiles are kept and every profile, in short."""
    return {
        "file": str(runner.path),
        "save_error": runner.save_error,
        "models": [p.summary() for p in registry.snapshot().profiles.values()],
    }
