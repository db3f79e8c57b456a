"""Zero-downtime swap: load NEW, warm it, move new traffic to it, let OLD's requests finish, unload OLD.

While OLD drains it is marked retiring in the registry, so routing tries every other candidate first
(clients that name NEW, an alias listing both, or `auto` move over at once; a request only OLD can
serve still gets OLD, so none fails). OLD is unloaded when its last running request ends, or after
`lifecycle.drain_timeout`. A keep_loaded OLD is replaced by NEW in that backend's list until the next
reload, so keep_loaded does not bring OLD back.
"""

from __future__ import annotations

import time
from typing import Any

from lmwatch.config import KeepLoaded
from lmwatch.lifecycle.keep import KeepLoadedReconciler
from lmwatch.lifecycle.loads import Loader, LoadError, LoadFailure, LoadResult
from lmwatch.lifecycle.memory import fit


class Swapper:
    def __init__(self, loader: Loader, keep: KeepLoadedReconciler) -> None:
        self.loader = loader
        self.keep = keep

    async def swap(self, backend: str, old: str, new: str, context_length: int | None = None) -> dict[str, Any]:
        """Swap `old` for `new` on `backend`; raises LoadError (nothing changed) when NEW cannot be loaded."""
        loader, registry = self.loader, self.loader.registry
        started = time.monotonic()
        snap = registry.snapshot()
        info = snap.backend(backend)
        if info is None:
            raise LoadError(backend, new, LoadFailure.UNREACHABLE, f"no backend named {backend!r}")
        if not self.keep.manages(info.config):
            raise LoadError(backend, new, LoadFailure.NOT_OWNER, f"managed by the lmwatch named {info.config.owner!r}")
        current, wanted = info.model(old), info.model(new)
        if current is None or not current.loaded:
            raise LoadError(backend, old, LoadFailure.NOT_FOUND, f"{old} is not loaded on {backend}")
        if wanted is None:
            raise LoadError(backend, new, LoadFailure.NOT_FOUND, f"{new} is not downloaded on {backend}")
        result: LoadResult | None = None
        if not wanted.loaded:
            estimate = fit(info, snap, new, context_length)
            if estimate.fits is False:
                raise LoadError(
                    backend,
                    new,
                    LoadFailure.OUT_OF_MEMORY,
                    f"{estimate.reason}; a swap without downtime needs room for both models at once",
                )
            async with loader.slot(backend, new, loader.config.load_timeout):
                result = await loader.load(backend, new, why="swap", context_length=context_length)
        outcomes = registry.outcomes
        running = outcomes.model_inflight.get((backend, old), 0)
        registry.set_retiring(backend, old, True)
        try:
            if old in self.keep.kept(info.config):
                entry = next((i for i in self.keep.wanted(info.config) if i.model == old), None)
                ctx = context_length or (entry.context_length if entry else None)
                self.keep.replace(backend, old, KeepLoaded(model=new, context_length=ctx))
            drained = await outcomes.model_drained(backend, old, loader.config.drain_timeout)
            await loader.unload(backend, old, why="swap")
        finally:
            registry.set_retiring(backend, old, False)
        return {
            "backend": backend,
            "old": old,
            "new": new,
            "load_seconds": result.load_seconds if result else None,
            "warm_up_seconds": result.warm_up_seconds if result else None,
            "running_at_switch": running,
            "drained": drained,
            "seconds": round(time.monotonic() - started, 3),
        }
