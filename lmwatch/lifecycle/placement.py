"""Demand placement: a request for a model downloaded but loaded nowhere loads it where it fits best.

Candidates (backends that have the model downloaded) are ordered by: fits in the free memory now,
then fits once idle models are unloaded, then cannot tell, then does not fit; fewer requests in
flight first; more free memory first. The model is loaded with LM Studio's load API, which does not
trigger JIT auto-evict, so no running request is cut. When memory is short, only models with no
request running that are not keep_loaded are unloaded to make room (least recently used first).

Requests for the same model on the same backend share one load; each backend runs one load at a
time; waiting requests count in the backend's queue (`lmwatch_queue_depth`) and wait at most
`lifecycle.load_timeout`. A server that can only load just-in-time (LM Studio 0.3) is sent the request
directly, but only when nothing runs there (its auto-evict could cut it), and holds the load slot
until that request ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from lmwatch.lifecycle.loads import Loader, LoadError, LoadFailure
from lmwatch.lifecycle.memory import Fit, can_load, fit, gib, held
from lmwatch.outcomes import RequestOutcomes
from lmwatch.registry import BackendInfo, Snapshot

if TYPE_CHECKING:
    from lmwatch.routing.select import Target

Release = Callable[[], Awaitable[None]]
_RANK = {True: 0, None: 2, False: 3}


class Placer:
    def __init__(self, loader: Loader, kept: Callable[[BackendInfo], set[str]], manages: Callable[..., bool]) -> None:
        self.loader = loader
        self.kept = kept
        self.manages = manages
        self.outcomes: RequestOutcomes = loader.registry.outcomes
        self._pending: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.decisions = loader.metrics.placements

    # --- ordering --------------------------------------------------------------------------------

    def order(self, targets: Sequence[Target]) -> list[Target]:
        snap = self.loader.registry.snapshot()

        def key(target: Target) -> tuple[int, int, int]:
            backend = snap.backend(target.backend)
            if backend is None:
                return (9, 0, 0)
            estimate = fit(backend, snap, _model(target))
            rank = _RANK[estimate.fits]
            if estimate.fits is False and self.room(backend, snap, _model(target)) is not None:
                rank = 1
            return (rank, self.outcomes.inflight.get(target.backend, 0), -(estimate.free_bytes or 0))

        return sorted(targets, key=key)

    def room(self, backend: BackendInfo, snap: Snapshot, model: str) -> list[str] | None:
        """Idle models to unload so that `model` fits (least recently used first); None = impossible."""
        spare = sorted(
            (m for m in backend.loaded_models if self._evictable(backend, m.id)),
            key=lambda m: self.outcomes.last_used.get((backend.name, m.id), 0.0),
        )
        chosen: list[str] = []
        for candidate in spare:
            chosen.append(candidate.id)
            if fit(backend, snap, model, exclude=frozenset(chosen)).fits:
                return chosen
        return None

    def _evictable(self, backend: BackendInfo, model: str) -> bool:
        return (
            model not in self.kept(backend)
            and model not in backend.retiring
            and not self.outcomes.model_inflight.get((backend.name, model))
        )

    # --- loading ---------------------------------------------------------------------------------

    async def prepare(self, target: Target, timeout: float) -> Release | None:
        backend, model = target.backend, _model(target)
        info = self.loader.registry.snapshot().backend(backend)
        if info is None:
            raise LoadError(backend, model, LoadFailure.UNREACHABLE, f"no backend named {backend!r}")
        if not self.manages(info.config):
            self.decisions.labels(backend, LoadFailure.NOT_OWNER.value).inc()
            raise LoadError(
                backend, model, LoadFailure.NOT_OWNER, f"managed by the lmwatch named {info.config.owner!r}"
            )
        if not can_load(info):
            return await self._just_in_time(info, model, timeout)
        key = (backend, model)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._place(backend, model), name=f"place:{backend}:{model}")
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        self.outcomes.queue_changed(backend, +1)
        try:
            await asyncio.wait_for(asyncio.shield(task), self.loader.config.load_timeout + timeout)
        except TimeoutError:
            raise LoadError(backend, model, LoadFailure.TIMEOUT, "the load did not finish in time") from None
        finally:
            self.outcomes.queue_changed(backend, -1)
        return None

    async def _place(self, backend: str, model: str) -> None:
        try:
            async with self.loader.slot(backend, model, self.loader.config.load_timeout):
                snap = self.loader.registry.snapshot()
                info = snap.backend(backend)
                if info is None:
                    raise LoadError(backend, model, LoadFailure.UNREACHABLE, f"{backend} went away")
                current = info.model(model)
                if current is not None and current.loaded:
                    return
                estimate = fit(info, snap, model)
                if estimate.fits is False:
                    await self._make_room(info, snap, model, estimate)
                await self.loader.load(backend, model, why="demand")
        except LoadError as exc:
            self.decisions.labels(backend, exc.kind.value).inc()
            self.loader.last_failure[(backend, model)] = str(exc)
            raise
        self.decisions.labels(backend, "loaded").inc()

    async def _make_room(self, info: BackendInfo, snap: Snapshot, model: str, estimate: Fit) -> None:
        victims = self.room(info, snap, model)
        if victims is None:
            busy = [
                f"{m.id} ({gib(held(m))}: {self._why_kept(info, m.id)})"
                for m in info.loaded_models
                if not self._evictable(info, m.id)
            ]
            held_by = f"; held by {', '.join(busy)}" if busy else ""
            raise LoadError(info.name, model, LoadFailure.OUT_OF_MEMORY, estimate.reason + held_by)
        for victim in victims:
            await self.loader.unload(info.name, victim, why="make_room")

    def _why_kept(self, info: BackendInfo, model: str) -> str:
        running = self.outcomes.model_inflight.get((info.name, model), 0)
        if running:
            return f"{running} request{'s' if running > 1 else ''} running"
        return "keep_loaded" if model in self.kept(info) else "being swapped out"

    async def _just_in_time(self, info: BackendInfo, model: str, timeout: float) -> Release:
        """A server without a load API: the request loads it; hold the slot until the request ends."""
        running = self.outcomes.inflight.get(info.name, 0)
        if running:
            self.decisions.labels(info.name, LoadFailure.BUSY.value).inc()
            raise LoadError(
                info.name,
                model,
                LoadFailure.BUSY,
                f"{running} requests run on {info.name}; its just-in-time load could evict their model and cut them",
            )
        slot = self.loader.slot(info.name, model, timeout)
        await slot.__aenter__()
        running = self.outcomes.inflight.get(info.name, 0)
        if running:  # requests started while this one waited for the slot
            await slot.__aexit__(None, None, None)
            self.decisions.labels(info.name, LoadFailure.BUSY.value).inc()
            raise LoadError(info.name, model, LoadFailure.BUSY, f"{running} requests started on {info.name} meanwhile")
        self.decisions.labels(info.name, "loaded").inc()

        async def release() -> None:
            with contextlib.suppress(Exception):
                await slot.__aexit__(None, None, None)
            self.loader.watcher.poll_now(info.name)

        return release


def _model(target: Target) -> str:
    return target.info.id if target.info is not None else target.model
