"""Idle unload: models that served nothing through lmwatch for `idle_unload_after` seconds are unloaded.

Unlike LM Studio's idle TTL (JIT loads only), this covers every model, however it was loaded, except
keep_loaded ones and those a request runs on. "Served nothing" counts the requests lmwatch routed;
a model lmwatch has never routed to counts from when lmwatch first saw it loaded. Before unloading,
the model is marked retiring (new requests prefer others) and checked once more for running requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lmwatch.config import BackendConfig
from lmwatch.lifecycle.keep import KeepLoadedReconciler
from lmwatch.lifecycle.loads import Loader, LoadError
from lmwatch.lifecycle.memory import can_load

log = logging.getLogger("lmwatch.lifecycle")


class IdleUnloader:
    def __init__(
        self,
        loader: Loader,
        keep: KeepLoadedReconciler,
        manages: Callable[[BackendConfig], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loader = loader
        self.keep = keep
        self.manages = manages
        self.clock = clock
        self.first_seen: dict[tuple[str, str], float] = {}

    async def sweep(self, now: float | None = None) -> list[tuple[str, str]]:
        """Unload what has been idle too long; returns the (backend, model) pairs unloaded."""
        now = self.clock() if now is None else now
        registry = self.loader.registry
        outcomes = registry.outcomes
        default = self.loader.config.idle_unload_after
        snap = registry.snapshot()
        seen = {(b.name, m.id) for b in snap.backends.values() if b.reachable for m in b.loaded_models}
        for key in set(self.first_seen) - seen:
            del self.first_seen[key]
        due: list[tuple[str, str]] = []
        for backend in snap.backends.values():
            after = backend.config.idle_unload_after or default
            if after is None or not backend.reachable or not self.manages(backend.config) or not can_load(backend):
                continue
            kept = self.keep.kept(backend.config)
            for model in backend.loaded_models:
                key = (backend.name, model.id)
                first = self.first_seen.setdefault(key, now)
                last = max(outcomes.last_used.get(key, 0.0), first)
                busy = outcomes.model_inflight.get(key, 0) or self.loader.loading.get(backend.name) == model.id
                if model.id not in kept and model.id not in backend.retiring and not busy and now - last >= after:
                    due.append(key)
        done = []
        for backend_name, model_id in due:
            registry.set_retiring(backend_name, model_id, True)
            try:
                if outcomes.model_inflight.get((backend_name, model_id), 0):
                    continue
                await self.loader.unload(backend_name, model_id, why="idle")
                done.append((backend_name, model_id))
            except LoadError as exc:
                log.warning("idle unload of %s on %s failed: %s", model_id, backend_name, exc)
            finally:
                registry.set_retiring(backend_name, model_id, False)
        return done
