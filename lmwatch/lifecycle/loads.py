"""Loading and unloading models on a backend: one load per backend at a time, failures said plainly.

A failed load is classified from what the server answered: `out_of_memory` (LM Studio's "insufficient
system resources" guardrail, a CUDA allocation error, or a generic `model_load_failed` for a model
lmwatch's estimate says does not fit, which is how LM Studio hides a CUDA OOM), `not_found`,
`timeout`, `unsupported` (the server cannot load over HTTP), `unreachable` or `failed`. After a
load the model gets one tiny request (warm-up) so the first real request does not pay the cold
start; the load and warm-up times are measured. Every action writes an audit line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lmwatch import backends
from lmwatch.audit import AuditLog
from lmwatch.backends import BackendClient, Flavour, ProbeError
from lmwatch.failures import FailureReason
from lmwatch.lifecycle.memory import fit
from lmwatch.registry import ModelType, Registry, Snapshot
from lmwatch.services import Services
from lmwatch.watcher import Watcher

log = logging.getLogger("lmwatch.lifecycle")

HISTORY = 50
"""Recent lifecycle actions kept for /status."""
REFRESH_ATTEMPTS = 3
_OOM = re.compile(
    r"insufficient system resources|out of memory|\boom\b|cudamalloc|failed to allocate|not enough memory|"
    r"memory allocation",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"not found|model_not_found|invalid model identifier|no such model|unknown model", re.I)


class LoadFailure(StrEnum):
    """Why a load failed; a bounded set, used as the `result` label."""

    OUT_OF_MEMORY = "out_of_memory"
    NOT_FOUND = "not_found"
    TIMEOUT = "timeout"
    UNSUPPORTED = "unsupported"
    UNREACHABLE = "unreachable"
    BUSY = "busy"  # waiting for the backend's load slot took too long, or requests would be cut
    NOT_OWNER = "not_owner"  # another lmwatch manages this backend
    FAILED = "failed"


_WORDS = {
    LoadFailure.OUT_OF_MEMORY: "out of memory",
    LoadFailure.NOT_FOUND: "not found",
    LoadFailure.TIMEOUT: "timeout",
    LoadFailure.UNSUPPORTED: "cannot load",
    LoadFailure.UNREACHABLE: "unreachable",
    LoadFailure.BUSY: "busy",
    LoadFailure.NOT_OWNER: "not the owner",
    LoadFailure.FAILED: "load failed",
}


class LoadError(Exception):
    """A lifecycle action that did not happen; `kind` says why in one word, `message` in a sentence."""

    def __init__(self, backend: str, model: str, kind: LoadFailure, message: str) -> None:
        self.backend = backend
        self.model = model
        self.kind = kind
        self.message = message
        super().__init__(f"{_WORDS[kind]}: {message}")


@dataclass(frozen=True)
class LoadResult:
    backend: str
    model: str
    instance_id: str
    load_seconds: float
    warm_up_seconds: float | None = None
    warm_up_error: str | None = None
    parallel_warning: str | None = None


def classify(exc: ProbeError, snap: Snapshot, backend: str, model: str, context: int | None) -> LoadError:
    """Turn the server's answer to a load into a LoadError that says why."""
    text = exc.message
    if exc.reason is FailureReason.TIMEOUT:
        return LoadError(backend, model, LoadFailure.TIMEOUT, f"the server did not finish loading in time ({text})")
    if exc.reason is FailureReason.CONNECT:
        return LoadError(backend, model, LoadFailure.UNREACHABLE, text)
    if _OOM.search(text):
        return LoadError(backend, model, LoadFailure.OUT_OF_MEMORY, text)
    if _NOT_FOUND.search(text) or "HTTP 404" in text:
        return LoadError(backend, model, LoadFailure.NOT_FOUND, text)
    info = snap.backend(backend)
    if info is not None:
        estimate = fit(info, snap, model, context)
        if estimate.fits is False:
            return LoadError(
                backend,
                model,
                LoadFailure.OUT_OF_MEMORY,
                f"{text} (the server gave no reason; lmwatch's estimate: {estimate.reason})",
            )
    return LoadError(backend, model, LoadFailure.FAILED, text)


class Loader:
    """Runs loads and unloads for the whole fleet; holds the per-backend load slot."""

    def __init__(self, services: Services, watcher: Watcher, audit: AuditLog) -> None:
        self.services = services
        self.registry: Registry = services.registry
        self.watcher = watcher
        self.audit = audit
        self._locks: dict[str, asyncio.Lock] = {}
        self.loading: dict[str, str] = {}
        """backend -> the model being loaded there now."""
        self.waiting: dict[str, int] = {}
        """backend -> requests and actions waiting for its load slot."""
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.last_failure: dict[tuple[str, str], str] = {}
        """(backend, model) -> why its last load failed (cleared by a successful one)."""
        self.metrics = services.metrics.lifecycle

    @property
    def config(self) -> Any:
        return self.services.config.config.lifecycle

    # --- the per-backend load slot ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self, backend: str, model: str, timeout: float | None = None) -> AsyncIterator[None]:
        """Hold `backend`'s one load slot; waiting is bounded by `timeout` and `lifecycle.max_waiting`."""
        lock = self._locks.setdefault(backend, asyncio.Lock())
        if lock.locked() and self.waiting.get(backend, 0) >= self.config.max_waiting:
            raise LoadError(backend, model, LoadFailure.BUSY, f"{self.config.max_waiting} requests already wait")
        self.waiting[backend] = self.waiting.get(backend, 0) + 1
        try:
            await asyncio.wait_for(lock.acquire(), timeout)
        except TimeoutError:
            busy = self.loading.get(backend, "another model")
            raise LoadError(
                backend, model, LoadFailure.BUSY, f"{backend} was still loading {busy} after {timeout:.0f} s"
            ) from None
        finally:
            self.waiting[backend] -= 1
        self.loading[backend] = model
        try:
            yield
        finally:
            self.loading.pop(backend, None)
            lock.release()

    # --- actions ---------------------------------------------------------------------------------

    def loader_of(self, backend: str, model: str) -> tuple[Flavour, BackendClient]:
        info = self.registry.snapshot().backends.get(backend)
        flavour = backends.detected(info.flavour) if info is not None else None
        client = self.watcher.client_of(backend)
        if flavour is None or client is None:
            raise LoadError(backend, model, LoadFailure.UNREACHABLE, f"{backend} has not answered a probe yet")
        if not flavour.supports_load:
            raise LoadError(
                backend,
                model,
                LoadFailure.UNSUPPORTED,
                f"{backend} speaks {flavour.name}, which cannot load models over HTTP "
                "(LM Studio 0.4+ can: /api/v1/models/load)",
            )
        return flavour, client

    async def load(
        self,
        backend: str,
        model: str,
        *,
        why: str,
        context_length: int | None = None,
        parallel: int | None = None,
    ) -> LoadResult:
        """Load `model` on `backend` (the caller holds its slot), wait until it is listed, warm it up."""
        started = time.monotonic()
        try:
            flavour, client = self.loader_of(backend, model)
            try:
                answer = await flavour.load(client, model, context_length, parallel, timeout=self.config.load_timeout)
            except ProbeError as exc:
                raise classify(exc, self.registry.snapshot(), backend, model, context_length) from None
            await self.refresh(backend, lambda s: _loaded(s, backend, model))
        except LoadError as exc:
            await self._failed(exc, why)
            raise
        seconds = time.monotonic() - started
        self.metrics.load_seconds.labels(backend).observe(seconds)
        instance = answer.get("instance_id") if isinstance(answer.get("instance_id"), str) else model
        result = LoadResult(backend, model, str(instance), seconds)
        result = await self._warm_up(client, result)
        current = self.registry.snapshot().backend(backend)
        info = current.model(model) if current is not None else None
        if parallel and info is not None and info.parallel is not None and info.parallel != parallel:
            note = f"asked for {parallel} parallel slots, the server reports {info.parallel}"
            result = LoadResult(**{**result.__dict__, "parallel_warning": note})
        self.last_failure.pop((backend, model), None)
        self.metrics.loads.labels(backend, model, why, "success").inc()
        self._remember("load", backend, model, why, "success", result.__dict__)
        warm = None if result.warm_up_seconds is None else round(result.warm_up_seconds, 3)
        await self._audit("load_model", backend, model, "ok", why, load_seconds=round(seconds, 3), warm_up_seconds=warm)
        log.info("loaded %s on %s (%s) in %.2f s", model, backend, why, seconds)
        return result

    async def unload(self, backend: str, model: str, *, why: str) -> list[str]:
        """Unload every instance of `model` on `backend`; returns the instance ids unloaded."""
        current = self.registry.snapshot().backend(backend)
        info = current.model(model) if current is not None else None
        instances = list(info.instance_ids) if info is not None and info.instance_ids else [model]
        try:
            flavour, client = self.loader_of(backend, model)
            for instance in instances:
                try:
                    await flavour.unload(client, instance)
                except ProbeError as exc:
                    raise LoadError(backend, model, LoadFailure.FAILED, exc.message) from None
            await self.refresh(backend, lambda s: not _loaded(s, backend, model))
        except LoadError as exc:
            self.metrics.unloads.labels(backend, model, why, "failed").inc()
            self._remember("unload", backend, model, why, exc.kind.value, {"message": exc.message})
            await self._audit("unload_model", backend, model, "failed", why, error=exc.message)
            raise
        self.metrics.unloads.labels(backend, model, why, "success").inc()
        self._remember("unload", backend, model, why, "success", {"instances": instances})
        await self._audit("unload_model", backend, model, "ok", why)
        log.info("unloaded %s from %s (%s)", model, backend, why)
        return instances

    async def refresh(self, backend: str, done: Callable[[Snapshot], bool]) -> None:
        """Poll `backend` until the registry shows `done` (a poll already running may predate the change)."""
        info = self.registry.snapshot().backend(backend)
        timeout = info.config.probe_timeout if info is not None else 5.0
        for _ in range(REFRESH_ATTEMPTS):
            await self.watcher.poll(backend)
            if done(self.registry.snapshot()):
                return
            with contextlib.suppress(TimeoutError):
                await self.registry.wait_for(done, timeout=timeout)
                return

    async def _warm_up(self, client: BackendClient, result: LoadResult) -> LoadResult:
        config = self.config
        if not config.warm_up:
            return result
        current = self.registry.snapshot().backend(result.backend)
        info = current.model(result.model) if current is not None else None
        if info is not None and info.model_type is ModelType.EMBEDDINGS:
            path, body = "/v1/embeddings", {"model": result.instance_id, "input": config.warm_up_prompt}
        else:
            path = "/v1/chat/completions"
            body = {
                "model": result.instance_id,
                "messages": [{"role": "user", "content": config.warm_up_prompt}],
                "max_tokens": 1,
                "stream": False,
            }
        started = time.monotonic()
        try:
            await client.post_json(path, body, timeout=config.warm_up_timeout)
        except ProbeError as exc:
            self.metrics.warm_ups.labels(result.backend, "failed").inc()
            log.warning("warm-up of %s on %s failed: %s", result.model, result.backend, exc.message)
            return LoadResult(**{**result.__dict__, "warm_up_error": exc.message})
        seconds = time.monotonic() - started
        self.metrics.warm_ups.labels(result.backend, "success").inc()
        self.metrics.warm_up_seconds.labels(result.backend).observe(seconds)
        return LoadResult(**{**result.__dict__, "warm_up_seconds": seconds})

    async def _failed(self, exc: LoadError, why: str) -> None:
        self.metrics.loads.labels(exc.backend, exc.model, why, exc.kind.value).inc()
        self.last_failure[(exc.backend, exc.model)] = str(exc)
        self._remember("load", exc.backend, exc.model, why, exc.kind.value, {"message": exc.message})
        log.warning("load of %s on %s (%s) failed: %s", exc.model, exc.backend, why, exc)
        await self._audit(
            "load_model", exc.backend, exc.model, "failed", why, failure=exc.kind.value, error=exc.message
        )

    async def _audit(self, action: str, backend: str, model: str, result: str, why: str, **detail: Any) -> None:
        await self.audit.control(
            actor="lifecycle", action=action, target=f"{backend}/{model}", result=result, reason=why, **detail
        )

    def _remember(self, action: str, backend: str, model: str, why: str, result: str, detail: dict[str, Any]) -> None:
        self.history.append(
            {"time": time.time(), "action": action, "backend": backend, "model": model, "reason": why}
            | {"result": result}
            | {k: v for k, v in detail.items() if k not in ("backend", "model")}
        )


def _loaded(snap: Snapshot, backend: str, model: str) -> bool:
    info = snap.backend(backend)
    found = info.model(model) if info is not None else None
    return found is not None and found.loaded
