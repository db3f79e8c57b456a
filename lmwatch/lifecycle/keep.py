"""keep_loaded: the models each backend must have loaded, re-loaded whenever they go away.

A reconcile of one backend compares its `keep_loaded` list with what the registry says is loaded and
loads what is missing, one model at a time through the backend's load slot. A failed load is retried
with exponential backoff (`lifecycle.retry_backoff` doubling up to `max_backoff`), and its reason is
kept for /status. A server that cannot load over HTTP gets one warning, not retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmwatch.config import BackendConfig, KeepLoaded
from lmwatch.lifecycle.loads import Loader, LoadError
from lmwatch.lifecycle.memory import can_load

log = logging.getLogger("lmwatch.lifecycle")


@dataclass
class KeepState:
    """Where one keep_loaded model stands: loaded, loading, waiting, failed, unsupported or not_owner."""

    model: str
    state: str = "pending"
    reason: str = ""
    attempts: int = 0
    """Failed loads in a row."""
    retry_at: float | None = None
    """Unix time of the next try after a failure."""
    warning: str | None = None
    """Something to know about a loaded model (the server ignored the parallel slots asked for)."""
    next_try: float = 0.0

    def document(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "state": self.state,
            "reason": self.reason,
            "attempts": self.attempts,
            "retry_at": self.retry_at,
            "warning": self.warning,
        }


class KeepLoadedReconciler:
    def __init__(
        self,
        loader: Loader,
        manages: Callable[[BackendConfig], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loader = loader
        self.manages = manages
        self.clock = clock
        self.states: dict[str, dict[str, KeepState]] = {}
        self.replaced: dict[str, dict[str, KeepLoaded]] = {}
        """backend -> {old model: new entry}: a swap's change to keep_loaded, until the next reload."""
        self._replaced_for: object = None
        """The backends list those changes were made against: a reload brings a new one."""
        self._warned: set[tuple[str, str]] = set()

    def replace(self, backend: str, old: str, entry: KeepLoaded) -> None:
        """A swap's change: `entry` instead of `old` in `backend`'s keep_loaded, until the next reload."""
        self._current_swaps()
        self._replaced_for = self.loader.services.config.config.backends
        self.replaced.setdefault(backend, {})[old] = entry

    def _current_swaps(self) -> dict[str, dict[str, KeepLoaded]]:
        if self.replaced and self._replaced_for is not self.loader.services.config.config.backends:
            self.replaced.clear()  # the config was reloaded: its keep_loaded lists are in force again
        return self.replaced

    def wanted(self, config: BackendConfig) -> list[KeepLoaded]:
        swaps = self._current_swaps().get(config.name, {})
        items = [swaps.get(item.model, item) for item in config.keep_loaded]
        return list({item.model: item for item in items}.values())

    def kept(self, config: BackendConfig) -> set[str]:
        return {item.model for item in self.wanted(config)}

    async def reconcile(self, backend: str) -> None:
        """Load what `backend` should have loaded and has not (never raises)."""
        loader = self.loader
        info = loader.registry.snapshot().backend(backend)
        if info is None:
            self.states.pop(backend, None)
            return
        items = self.wanted(info.config)
        states = self.states.setdefault(backend, {})
        for gone in set(states) - {i.model for i in items}:
            del states[gone]
        for item in items:
            state = states.setdefault(item.model, KeepState(item.model))
            await self._one(backend, item, state)

    async def _one(self, backend: str, item: KeepLoaded, state: KeepState) -> None:
        info = self.loader.registry.snapshot().backend(backend)
        if info is None:
            return
        if not info.reachable:  # its model list is the last one seen: stale
            state.state, state.reason = "waiting", f"the backend is {info.health.value}"
            return
        model = info.model(item.model)
        if model is not None and model.loaded:
            state.state, state.reason, state.attempts, state.retry_at = "loaded", "", 0, None
            return
        if not self.manages(info.config):
            state.state, state.reason = "not_owner", f"managed by the lmwatch named {info.config.owner!r}"
            return
        if not can_load(info):
            state.state = "unsupported"
            state.reason = (
                f"{backend} speaks {info.flavour}, which cannot load models over HTTP; "
                "keep_loaded needs LM Studio 0.4+ (/api/v1/models/load)"
            )
            if (backend, info.flavour or "") not in self._warned:
                self._warned.add((backend, info.flavour or ""))
                log.warning("backends[%s].keep_loaded: %s; not kept loaded: %s", backend, state.reason, item.model)
            return
        if self.clock() < state.next_try:
            return
        state.state, state.reason = "loading", ""
        try:
            async with self.loader.slot(backend, item.model):
                current = self.loader.registry.snapshot().backend(backend)
                again = current.model(item.model) if current is not None else None
                if again is not None and again.loaded:
                    state.state = "loaded"
                    return
                result = await self.loader.load(
                    backend, item.model, why="keep_loaded", context_length=item.context_length, parallel=item.parallel
                )
        except LoadError as exc:
            state.attempts += 1
            config = self.loader.config
            delay = min(config.max_backoff, config.retry_backoff * 2 ** (state.attempts - 1))
            state.state, state.reason = "failed", str(exc)
            state.next_try = self.clock() + delay
            state.retry_at = time.time() + delay
            return
        state.state, state.reason, state.attempts, state.retry_at, state.next_try = "loaded", "", 0, None, 0.0
        state.warning = result.parallel_warning

    def document(self, backend: str) -> list[dict[str, Any]]:
        return [s.document() for s in self.states.get(backend, {}).values()]
